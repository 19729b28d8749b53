# Shared helpers for scripts/serve and scripts/test. Every step checks before
# it acts, so running a script twice installs nothing twice.

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "error: need root (or sudo) to run: $*" >&2; return 1
    fi
}

# ensure_packages PKG… — installs the Debian packages that are missing.
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
}

ensure_rust() {
    command -v cargo >/dev/null || { echo "error: Rust is not installed (https://rustup.rs), then run this again" >&2; exit 1; }
}

pg_ok() { psql "$1" -Atqc 'select 1' >/dev/null 2>&1; }

# ensure_postgres — exports CLINIVOX_TEST_PG_URL pointing at a PostgreSQL the
# tests may create schemas in: the given one, else a local server on
# 127.0.0.1:5432 (started, or installed and set up, if need be).
ensure_postgres() {
    local url="${CLINIVOX_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
    command -v psql >/dev/null || ensure_packages postgresql-client
    if pg_ok "$url"; then export CLINIVOX_TEST_PG_URL="$url"; return 0; fi
    ensure_packages postgresql
    local version
    version=$(ls /etc/postgresql | sort -n | tail -1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || as_root pg_ctlcluster "$version" main start 2>/dev/null || true
    for _ in $(seq 1 20); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
    if pg_ok "$url"; then export CLINIVOX_TEST_PG_URL="$url"; return 0; fi
    # A fresh server: a role and database of our own, with a password.
    local admin=(as_root su postgres -c)
    "${admin[@]}" "psql -Atqc \"SELECT 1 FROM pg_roles WHERE rolname='clinivox_test'\"" | grep -q 1 ||
        "${admin[@]}" "psql -qc \"CREATE ROLE clinivox_test LOGIN PASSWORD 'clinivox_test'\""
    "${admin[@]}" "psql -Atqc \"SELECT 1 FROM pg_database WHERE datname='clinivox_test'\"" | grep -q 1 ||
        "${admin[@]}" "createdb -O clinivox_test clinivox_test"
    url="postgres://clinivox_test:clinivox_test@127.0.0.1:5432/clinivox_test"
    pg_ok "$url" || { echo "error: cannot reach PostgreSQL at $url" >&2; exit 1; }
    export CLINIVOX_TEST_PG_URL="$url"
}

# Drops schemas left by earlier test runs (tests create cvx_t_* schemas).
drop_test_schemas() {
    psql "$CLINIVOX_TEST_PG_URL" -qc "DO \$\$ DECLARE s text; BEGIN
        FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 'cvx\\_t\\_%' LOOP
            EXECUTE format('DROP SCHEMA %I CASCADE', s);
        END LOOP; END \$\$;" >/dev/null 2>&1 || true
}

# leftover_processes MARK — fails, listing and killing them, if processes
# whose environment holds CLINIVOX_TEST_RUN=MARK (started by the tests, in
# any namespace) are still running once the tests have ended.
leftover_processes() {
    local mark="CLINIVOX_TEST_RUN=$1" left=() pid env
    sleep 1 # a test binary's last children are being reaped
    for env in /proc/[0-9]*/environ; do
        pid=${env#/proc/}
        pid=${pid%/environ}
        { tr '\0' '\n' <"$env"; } 2>/dev/null | grep -qxF "$mark" && left+=("$pid")
    done
    [ ${#left[@]} -eq 0 ] && { echo "no process started by the tests is left"; return 0; }
    echo "error: ${#left[@]} process(es) started by the tests are still running:" >&2
    ps -o pid,ppid,etime,args -p "$(IFS=,; echo "${left[*]}")" >&2 || true
    kill -KILL "${left[@]}" 2>/dev/null || true
    return 1
}
