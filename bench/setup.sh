#!/usr/bin/env bash
# The benchmark suite's baseline databases: a private PostgreSQL cluster and a private Redis,
# both on 127.0.0.1 only, on free ports, with all their files under STATE_DIR.
#
#   bench/setup.sh start STATE_DIR   install postgresql and redis-server (apt-get) when missing,
#                                    start both, write STATE_DIR/env (PG_DSN, REDIS_URL), print it
#   bench/setup.sh stop STATE_DIR    stop exactly what `start` started; safe to run twice
#
# Ports: PG_PORT and REDIS_PORT when set, else free ones picked with python3, else 25432/26379.
# Never touches a system-wide PostgreSQL or Redis (no systemctl, no service, no pg_ctlcluster):
# the packages' own clusters and services are left as they are.
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user (which
# the Debian package creates). When that user cannot reach STATE_DIR (a 0700 temporary directory
# of root's, say), the cluster lives in a directory of its own under TMPDIR instead, linked from
# STATE_DIR/pg, and `stop` removes it.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop STATE_DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
ACTION=$1
STATE_DIR=$2
case $ACTION in start | stop) ;; *) usage ;; esac

if [ "$(id -u)" = 0 ]; then
    SUDO=()
    AS_PG=(runuser -u postgres --)
else
    SUDO=(sudo)
    AS_PG=()
fi

log() { echo "setup.sh: $*" >&2; }

pg_bindir() {
    local found
    found=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
        sort -V | tail -n 1 || true)
    if [ -n "$found" ]; then
        dirname "$found"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

install_missing() {
    local packages=()
    [ -n "$(pg_bindir)" ] || packages+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
    command -v redis-cli >/dev/null 2>&1 || packages+=(redis-tools)
    [ ${#packages[@]} -eq 0 ] && return
    log "installing ${packages[*]} (apt-get)"
    # The packages' own services are not wanted (a system Redis would take port 6379, Ray's
    # default): policy-rc.d keeps the packages from starting them, for this install only.
    local policy=/usr/sbin/policy-rc.d had_policy=0
    [ -e "$policy" ] && had_policy=1
    [ $had_policy = 1 ] || printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    [ $had_policy = 1 ] || "${SUDO[@]}" chmod +x "$policy"
    # Without package lists (a fresh image) the first try fails: update once, then try again.
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${packages[@]}" >&2; then
        "${SUDO[@]}" apt-get update -q >&2
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${packages[@]}" >&2
    fi
    [ $had_policy = 1 ] || "${SUDO[@]}" rm -f "$policy"
}

free_port() {
    # A port below the kernel's ephemeral range, which Ray's processes draw from all the time.
    python3 - "$1" <<'EOF' 2>/dev/null || echo "$1"
import random, socket, sys
for _ in range(200):
    port = random.randrange(20000, 32000)
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
else:
    print(sys.argv[1])
EOF
}

# The directory that holds the cluster's files (pg/, pgsock/, pg.log): STATE_DIR itself, or,
# as root when the postgres user cannot reach it, the private directory STATE_DIR/pg points into.
pg_base() {
    if [ -f "$STATE_DIR/pg.external" ]; then
        cat "$STATE_DIR/pg.external"
    else
        echo "$STATE_DIR"
    fi
}

start_postgres() {
    local bindir=$1 port=$2 base data sock
    if [ ${#AS_PG[@]} -gt 0 ] && [ ! -f "$STATE_DIR/pg.external" ] && [ ! -d "$STATE_DIR/pg" ] &&
        ! "${AS_PG[@]}" test -x "$STATE_DIR"; then
        base=$(mktemp -d "${TMPDIR:-/tmp}/bench-pg.XXXXXX")
        chown postgres: "$base"
        echo "$base" >"$STATE_DIR/pg.external"
        ln -sfn "$base/pg" "$STATE_DIR/pg"
        ln -sfn "$base/pgsock" "$STATE_DIR/pgsock"
        ln -sfn "$base/pg.log" "$STATE_DIR/pg.log"
    fi
    base=$(pg_base)
    data=$base/pg
    sock=$base/pgsock
    if [ ${#AS_PG[@]} -gt 0 ] && [ "$base" = "$STATE_DIR" ]; then
        mkdir -p "$data" "$sock"
        chown postgres: "$data" "$sock"
        chmod 0700 "$data"
        touch "$base/pg.log"
        chown postgres: "$base/pg.log"
    else
        "${AS_PG[@]}" mkdir -p "$data" "$sock"
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        "${AS_PG[@]}" "$bindir/initdb" -D "$data" -U postgres -E UTF8 --auth-local=trust \
            --auth-host=trust --no-instructions >/dev/null
    fi
    if "${AS_PG[@]}" "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1; then
        log "PostgreSQL already runs in $data: stop it first"
        return 1
    fi
    "${AS_PG[@]}" "$bindir/pg_ctl" start -D "$data" -l "$base/pg.log" -w -t 60 \
        -o "-k $sock -p $port -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200" \
        >/dev/null
    if ! "$bindir/psql" -h "$sock" -p "$port" -U postgres -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = 'bench'" | grep -q 1; then
        "$bindir/createdb" -h "$sock" -p "$port" -U postgres bench
    fi
}

start_redis() {
    local port=$1 dir=$STATE_DIR/redis
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
    for _ in $(seq 100); do
        [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null || true)" = PONG ] && return
        sleep 0.1
    done
    log "redis-server did not answer on port $port; see $dir/redis.log"
    return 1
}

stop_postgres() {
    local bindir base data
    base=$(pg_base)
    data=$base/pg
    [ -f "$data/PG_VERSION" ] || return 0
    bindir=$(pg_bindir)
    if [ -n "$bindir" ] && "${AS_PG[@]}" "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1; then
        "${AS_PG[@]}" "$bindir/pg_ctl" stop -D "$data" -m fast -w -t 60 >/dev/null
    fi
    if [ -f "$STATE_DIR/pg.external" ]; then
        rm -rf "$base"
        rm -f "$STATE_DIR/pg" "$STATE_DIR/pgsock" "$STATE_DIR/pg.log" "$STATE_DIR/pg.external"
    fi
}

stop_redis() {
    local pidfile=$STATE_DIR/redis/redis.pid pid port=""
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    # Only the redis-server that `start` launched: the pid from its pidfile, still a redis-server.
    if [ -n "$pid" ] && grep -qs redis "/proc/$pid/comm"; then
        if [ -f "$STATE_DIR/env" ]; then
            port=$(sed -n 's#^REDIS_URL=redis://127.0.0.1:\([0-9]*\)/.*#\1#p' "$STATE_DIR/env")
        fi
        if [ -z "$port" ] || ! redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1; then
            kill "$pid" 2>/dev/null || true
        fi
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "redis-server $pid did not stop"
            return 1
        fi
    fi
    rm -f "$pidfile"
}

case $ACTION in
start)
    mkdir -p "$STATE_DIR"
    STATE_DIR=$(cd "$STATE_DIR" && pwd -P)
    install_missing
    BINDIR=$(pg_bindir)
    [ -n "$BINDIR" ] || {
        log "initdb not found after installing postgresql"
        exit 1
    }
    PG_PORT=${PG_PORT:-$(free_port 25432)}
    REDIS_PORT=${REDIS_PORT:-$(free_port 26379)}
    while [ "$REDIS_PORT" = "$PG_PORT" ]; do REDIS_PORT=$(free_port 26379); done
    start_postgres "$BINDIR" "$PG_PORT"
    start_redis "$REDIS_PORT"
    {
        echo "PG_DSN=postgresql://postgres@127.0.0.1:$PG_PORT/bench"
        echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    } >"$STATE_DIR/env"
    cat "$STATE_DIR/env"
    ;;
stop)
    [ -d "$STATE_DIR" ] || exit 0
    STATE_DIR=$(cd "$STATE_DIR" && pwd -P)
    status=0
    stop_redis || status=1
    stop_postgres || status=1
    exit $status
    ;;
esac
