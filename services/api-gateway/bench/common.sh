# Shared by run.sh and instructions.sh (sourced, not run): a work directory removed at exit,
# processes started in the background and killed at exit, free ports, waiting for HTTP, and
# the registry and identity provider every gateway benchmark starts first.
#
# Needs ROOT and BIN set by the caller; sets WORK, PIDS, REG, IDP, ISSUER and COMMON.

WORK=$(mktemp -d "/tmp/gateway-${BENCH_NAME:-bench}.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() { # url [seconds]
    local deadline=$((SECONDS + ${2:-60}))
    until curl -sf -o /dev/null "$1"; do
        if ((SECONDS > deadline)); then echo "timed out waiting for $1" >&2; exit 1; fi
        sleep 0.1
    done
}
start() { # name command... ; logs to $WORK/name.log, pid in $WORK/name.pid
    local name=$1; shift
    "$@" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    echo "$pid" >"$WORK/$name.pid"
}

# The registry and the identity provider (serving keycloak/realm.json) on free loopback ports;
# COMMON holds the options every kit service of the benchmark gets.
start_registry_and_idp() {
    REG=$(free_port); IDP=$(free_port)
    COMMON=(--bind 127.0.0.1 --advertise-host 127.0.0.1 --registry-url "http://127.0.0.1:$REG" --admin-token bench)
    start registry "$BIN/discovery-server" --port "$REG" --bind 127.0.0.1 --admin-token bench
    wait_http "http://127.0.0.1:$REG/health/ready"
    start idp "$BIN/identity-provider" --port "$IDP" "${COMMON[@]}" --no-register \
        --realm-file "$ROOT/keycloak/realm.json" --issuer-base-url "http://127.0.0.1:$IDP"
    wait_http "http://127.0.0.1:$IDP/realms/platform/.well-known/openid-configuration"
    ISSUER="http://127.0.0.1:$IDP/realms/platform"
}

# An access token (password grant of the public client).
token() { # username password
    curl -sf -d grant_type=password -d client_id=platform-cli -d "username=$1" -d "password=$2" \
        "$ISSUER/protocol/openid-connect/token" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# $WORK/routes.toml with the benchmark's two routes to bench-service: /api/bench/** needs a
# token with role user, /api/public/** is public.
bench_routes() {
    cat >"$WORK/routes.toml" <<EOF
[[routes]]
id = "bench"
uri = "lb://bench-service"
predicates = ["Path=/api/bench/**"]
filters = ["StripPrefix=2"]
roles = ["user"]

[[routes]]
id = "bench-public"
uri = "lb://bench-service"
predicates = ["Path=/api/public/**"]
filters = ["StripPrefix=2"]
public = true
EOF
}
