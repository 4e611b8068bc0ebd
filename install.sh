#!/usr/bin/env bash
# install.sh: prepares this machine for the platform and builds it.
#
# Idempotent: every step checks first and skips what is already in place, so re-running it is fast.
# Needs Debian 12 (apt), a Rust toolchain (cargo, Rust 1.95+) and root or sudo for the apt step.
# Network use: Debian packages, crates.io and PyPI only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="$ROOT/.tools"
# The Kafka-API broker of the dev stack and the tests (nisshi, tansu's successor), and tansu, the
# broker it replaced, kept for the old-versus-new benchmark only.
NISSHI_VERSION="0.6.0"
TANSU_VERSION="0.6.0"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/platform"
NEXTEST_VERSION="0.9.143"
VENV="$TOOLS/venv"
# Imports that prove the venv is complete (module names differ from package names).
PY_CHECK='import py_eureka_client.eureka_client, keycloak, jwt, jwt.algorithms, opentelemetry.sdk, opentelemetry.exporter.zipkin.json, confluent_kafka, kafka, kubernetes_validate'

# Debian packages a new machine needs, and why.
APT_PACKAGES=(
    mariadb-server mariadb-client   # MariaDB for tests (testkit starts its own mariadbd) and the stack
    cmake build-essential pkg-config # rdkafka's static librdkafka build, C parts of other crates
    libcurl4-openssl-dev            # librdkafka 2.12 includes curl/curl.h even with curl support off
    libssl-dev                      # TLS for rdkafka and the HTTP clients
    debootstrap                     # builds the MariaDB Docker image without a registry
    nginx-light wrk hyperfine       # benchmarks: baseline proxy, load generator, command timing
    tmux                            # the dashboard's end-to-end test drives it in a real terminal
    iproute2                        # tc (netem, tbf) and ip for network faults, run in a container's namespace
    util-linux                      # nsenter: enters a container's network namespace from the host
    iptables                        # packet loss where the kernel has no netem (statistic match)
    python3 python3-venv            # third-party protocol clients in .tools/venv
)

# Third-party clients the tests use to prove protocol compatibility, pinned to released versions.
PY_REQUIREMENTS=(
    "py-eureka-client==0.13.3"                   # Eureka registration and discovery
    "python-keycloak==7.1.1"                     # OIDC / Keycloak token flows
    "PyJWT[crypto]==2.15.1"                      # JWT validation against our JWKS
    "opentelemetry-sdk==1.45.1"                  # spans ...
    "opentelemetry-exporter-zipkin-json==1.45.1" # ... exported in Zipkin's JSON format
    "confluent-kafka==2.16.1"                    # librdkafka's Python client against the broker
    "kafka-python==3.0.12"                       # a pure-Python Kafka client against the broker
    "kubernetes-validate==1.37.0"                # Kubernetes' OpenAPI schemas (offline) for render kubernetes
)

BUILD=1
APT=1
WITH_TANSU=0

usage() {
    cat <<EOF
Usage: ./install.sh [--no-build] [--no-apt] [--with-tansu] [--help]

Prepares this machine for the platform, then builds it:
  1. Debian packages: ${APT_PACKAGES[*]}
     (skipped when all are installed; services they ship are not left running)
  2. cargo-nextest (the test runner), if cargo has none
  3. the broker, nisshi $NISSHI_VERSION, into .tools/bin/nisshi: from the machine cache
     $CACHE_DIR/nisshi-$NISSHI_VERSION/, else a prebuilt copy reporting "nisshi $NISSHI_VERSION"
     (\$NISSHI_PREBUILT, ../shared/bin/nisshi, /work/shared/bin/nisshi), else
     cargo install --locked nisshi --version $NISSHI_VERSION --no-default-features --features libsql
     (about 49 minutes on 2 cores). tansu $TANSU_VERSION (the old broker, for the benchmark that
     compares the two) the same way into .tools/bin/tansu when a cached or prebuilt copy exists;
     built from crates.io (about 13 minutes) only with --with-tansu.
  4. Python venv .tools/venv with pinned third-party clients for compatibility tests
  5. cargo build --workspace --release (the Docker images use the release binaries)

Options:
  --no-build    skip step 5
  --no-apt      skip step 1 (for machines where packages are managed elsewhere)
  --with-tansu  build tansu from crates.io when no copy of it is at hand
  -h, --help    show this help
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --no-apt) APT=0 ;;
        --with-tansu) WITH_TANSU=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

START=$SECONDS
step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root for: $* (run as root or install sudo)"
    fi
}

installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }

# ---------------------------------------------------------------------------------------------
step "1/5 Debian packages"
if [ "$APT" -eq 0 ]; then
    info "skipped (--no-apt)"
else
    command -v dpkg-query >/dev/null 2>&1 || die "dpkg not found: this script expects Debian 12"
    missing=()
    for package in "${APT_PACKAGES[@]}"; do
        installed "$package" || missing+=("$package")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        info "all ${#APT_PACKAGES[@]} packages already installed"
    else
        info "installing: ${missing[*]}"
        # Debian starts a package's service on installation. Tests start their own MariaDB and the
        # stack its own nginx, so forbid service starts during this install (policy-rc.d exit 101),
        # unless the machine already has its own policy.
        policy=/usr/sbin/policy-rc.d
        added_policy=0
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\n# added by install.sh during apt-get install\nexit 101\n' |
                as_root tee "$policy" >/dev/null
            as_root chmod 755 "$policy"
            added_policy=1
            trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
        fi
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}"
        if [ "$added_policy" -eq 1 ]; then
            as_root rm -f "$policy"
            trap - EXIT
        fi
        # Where systemd runs, keep the freshly installed services from starting at boot too.
        if [ -d /run/systemd/system ]; then
            case " ${missing[*]} " in *" mariadb-server "*)
                as_root systemctl disable --now mariadb >/dev/null 2>&1 || true ;;
            esac
            case " ${missing[*]} " in *" nginx-light "*)
                as_root systemctl disable --now nginx >/dev/null 2>&1 || true ;;
            esac
        fi
    fi
    if pgrep -x mariadbd >/dev/null 2>&1 && [ -e /run/mysqld/mysqld.pid ]; then
        info "note: a system MariaDB is running; tests do not use it (they start their own)"
    fi
fi
# The same lookup as testkit: $TESTKIT_MARIADBD, /usr/sbin/mariadbd (not on a user's PATH), $PATH.
if [ -n "${TESTKIT_MARIADBD:-}" ]; then
    mariadbd_path="$TESTKIT_MARIADBD"
elif [ -x /usr/sbin/mariadbd ]; then
    mariadbd_path=/usr/sbin/mariadbd
else
    mariadbd_path="$(command -v mariadbd || true)"
fi
[ -n "$mariadbd_path" ] && [ -x "$mariadbd_path" ] ||
    die "mariadbd not found (package mariadb-server; or set TESTKIT_MARIADBD)"
info "mariadbd: $("$mariadbd_path" --version)"

# ---------------------------------------------------------------------------------------------
step "2/5 Rust toolchain and cargo-nextest"
command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust 1.95 or newer (rustup) and re-run"
info "$(cargo --version)"
if cargo nextest --version >/dev/null 2>&1; then
    info "$(cargo nextest --version 2>/dev/null | head -n1) already installed"
else
    info "installing cargo-nextest $NEXTEST_VERSION (a few minutes)"
    cargo install --locked cargo-nextest --version "$NEXTEST_VERSION"
fi

# ---------------------------------------------------------------------------------------------
step "3/5 Kafka-API brokers: nisshi $NISSHI_VERSION (and tansu $TANSU_VERSION for benchmarks)"
mkdir -p "$TOOLS/bin"
# True when $1 is an executable reporting exactly "$2" (e.g. "nisshi 0.6.0").
reports() { [ -x "$1" ] && [ "$("$1" --version 2>/dev/null)" = "$2" ]; }

# install_broker NAME VERSION MINUTES REQUIRED CARGO_ARGS...
# Puts NAME VERSION at .tools/bin/NAME: already there, else the machine cache (shared by every
# checkout), else a prebuilt copy, else (when REQUIRED is 1) cargo install from crates.io.
# Whatever was installed is cached for other checkouts. Returns 1 when skipped.
install_broker() {
    local name="$1" version="$2" minutes="$3" required="$4"
    shift 4
    local bin="$TOOLS/bin/$name" cache="$CACHE_DIR/$name-$version/$name" line="$name $version"
    local prebuilt_var
    prebuilt_var="$(printf '%s_PREBUILT' "$name" | tr '[:lower:]' '[:upper:]')"
    if reports "$bin" "$line"; then
        info "$line already installed at $bin"
    elif reports "$cache" "$line"; then
        info "$line: copying from the machine cache $cache"
        install -m 755 "$cache" "$bin"
    else
        local prebuilt="" candidate
        for candidate in "${!prebuilt_var:-}" "$ROOT/../shared/bin/$name" "/work/shared/bin/$name"; do
            if [ -n "$candidate" ] && reports "$candidate" "$line"; then
                prebuilt="$candidate"
                break
            fi
        done
        if [ -n "$prebuilt" ]; then
            info "$line: copying the prebuilt $prebuilt (same crate, saves a $minutes-minute build)"
            install -m 755 "$prebuilt" "$bin"
        elif [ "$required" -eq 1 ]; then
            info "$line: building from crates.io: cargo install --locked $name --version $version $* (about $minutes minutes)"
            cargo install --locked "$name" --version "$version" "$@" --root "$TOOLS"
        else
            info "$line: no cached or prebuilt copy; skipped (only the broker benchmark uses it; --with-tansu builds it)"
            return 1
        fi
    fi
    reports "$bin" "$line" || die "$bin does not run or does not report $line"
    if ! cmp -s "$bin" "$cache" 2>/dev/null; then
        mkdir -p "$(dirname "$cache")"
        install -m 755 "$bin" "$cache.tmp.$$"
        mv -f "$cache.tmp.$$" "$cache"
        info "cached for other checkouts at $cache"
    fi
    info "$("$bin" --version) at $bin"
}
install_broker nisshi "$NISSHI_VERSION" 49 1 --no-default-features --features libsql
install_broker tansu "$TANSU_VERSION" 13 "$WITH_TANSU" --features libsql || true

# ---------------------------------------------------------------------------------------------
step "4/5 Python clients in .tools/venv"
python=/usr/bin/python3
[ -x "$python" ] || python="$(command -v python3 || true)"
[ -n "$python" ] || die "python3 not found (Debian package python3)"
stamp="$VENV/.installed-requirements"
wanted="$(printf '%s\n' "${PY_REQUIREMENTS[@]}")"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] &&
    "$VENV/bin/python" -c "$PY_CHECK" 2>/dev/null; then
    info "already installed: ${PY_REQUIREMENTS[*]}"
else
    if [ ! -x "$VENV/bin/python" ]; then
        info "creating $VENV with $("$python" --version)"
        "$python" -m venv "$VENV"
    fi
    info "installing ${PY_REQUIREMENTS[*]}"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
    "$VENV/bin/python" -c "$PY_CHECK"
    printf '%s\n' "$wanted" >"$stamp"
fi

# ---------------------------------------------------------------------------------------------
step "5/5 Build"
if [ "$BUILD" -eq 0 ]; then
    info "skipped (--no-build)"
else
    info "cargo build --workspace --release"
    (cd "$ROOT" && cargo build --workspace --release)
fi

# Hook: once the CLI has `platform up`, the set-up-and-run step goes here, e.g.
#   "$ROOT/target/release/platform" up
# (added by the CLI work; install.sh stops at building today).

printf '\n==> done in %ss: nisshi at %s, Python clients in %s\n' "$((SECONDS - START))" "$TOOLS/bin/nisshi" "$VENV"
