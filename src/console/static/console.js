// The console's live parts: an element with data-live="URL" has its
// [data-key] children refreshed from that JSON every 5 s, and its
// [data-rows=KEY] table bodies rebuilt from that key's list of rows (text
// only, never HTML). No library.
(function () {
  var COLUMNS = ["time", "direction", "language", "doing", "since"];
  function cell(tr, text, href) {
    var td = document.createElement("td");
    if (href) {
      var a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text;
    }
    tr.appendChild(td);
  }
  function rebuild(body, rows) {
    while (body.firstChild) { body.removeChild(body.firstChild); }
    if (rows.length === 0) {
      var tr = document.createElement("tr");
      var td = document.createElement("td");
      td.colSpan = COLUMNS.length;
      td.textContent = body.getAttribute("data-empty") || "";
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-call", row.id || "");
      COLUMNS.forEach(function (key, i) {
        var href = i === 0 && row.id ? "/console/calls/" + encodeURIComponent(row.id) : null;
        cell(tr, String(row[key] === undefined ? "" : row[key]), href);
      });
      body.appendChild(tr);
    });
  }
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
          box.querySelectorAll("[data-rows]").forEach(function (body) {
            var rows = data[body.getAttribute("data-rows")];
            if (Array.isArray(rows)) { rebuild(body, rows); }
          });
        })
        .catch(function () {});
    }
    setInterval(refresh, 5000);
  });
})();
