// The console's live parts: an element with data-live="URL" has its
// [data-key] children refreshed from that JSON every 5 s. No library.
(function () {
  document.querySelectorAll("[data-live]").forEach(function (box) {
    var url = box.getAttribute("data-live");
    function refresh() {
      fetch(url, { credentials: "same-origin" })
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
        .then(function (data) {
          box.querySelectorAll("[data-key]").forEach(function (el) {
            var key = el.getAttribute("data-key");
            var value = key === "active_lines" ? data.active : data[key];
            if (value !== undefined) { el.textContent = String(value); }
          });
        })
        .catch(function () {});
    }
    setInterval(refresh, 5000);
  });
})();
