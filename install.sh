#!/usr/bin/env bash
# install.sh: prepares this machine for the platform and builds it.
#
# Idempotent: every step checks first and skips what is already in place, so re-running it is fast.
# Needs Debian 12 (apt), a Rust toolchain (cargo, Rust 1.95+) and root or sudo for the apt step.
# Network use: Debian packages, crates.io and PyPI only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="$ROOT/.tools"
TANSU_VERSION="0.6.0"
TANSU_BIN="$TOOLS/bin/tansu"
TANSU_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/platform/tansu-$TANSU_VERSION/tansu"
NEXTEST_VERSION="0.9.143"
VENV="$TOOLS/venv"
# Imports that prove the venv is complete (module names differ from package names).
PY_CHECK='import py_eureka_client.eureka_client, keycloak, jwt, jwt.algorithms, opentelemetry.sdk, opentelemetry.exporter.zipkin.json'

# Debian packages a new machine needs, and why.
APT_PACKAGES=(
    mariadb-server mariadb-client   # MariaDB for tests (testkit starts its own mariadbd) and the stack
    cmake build-essential pkg-config # rdkafka's static librdkafka build, C parts of other crates
    libcurl4-openssl-dev            # librdkafka 2.12 includes curl/curl.h even with curl support off
    libssl-dev                      # TLS for rdkafka and the HTTP clients
    debootstrap                     # builds the MariaDB Docker image without a registry
    nginx-light wrk hyperfine       # benchmarks: baseline proxy, load generator, command timing
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
)

BUILD=1
APT=1

usage() {
    cat <<EOF
Usage: ./install.sh [--no-build] [--no-apt] [--help]

Prepares this machine for the platform, then builds it:
  1. Debian packages: ${APT_PACKAGES[*]}
     (skipped when all are installed; services they ship are not left running)
  2. cargo-nextest (the test runner), if cargo has none
  3. tansu $TANSU_VERSION into .tools/bin/tansu: from the machine cache
     ${TANSU_CACHE}, else a prebuilt copy reporting $TANSU_VERSION
     (\$TANSU_PREBUILT, ../shared/bin/tansu, /work/shared/bin/tansu), else
     cargo install --locked tansu --version $TANSU_VERSION --features libsql (about 13 minutes)
  4. Python venv .tools/venv with pinned third-party clients for compatibility tests
  5. cargo build --workspace --release (the Docker images use the release binaries)

Options:
  --no-build   skip step 5
  --no-apt     skip step 1 (for machines where packages are managed elsewhere)
  -h, --help   show this help
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --no-apt) APT=0 ;;
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
step "3/5 tansu $TANSU_VERSION"
# True when $1 is an executable tansu reporting exactly the pinned version.
tansu_ok() { [ -x "$1" ] && [ "$("$1" --version 2>/dev/null)" = "tansu $TANSU_VERSION" ]; }
mkdir -p "$TOOLS/bin"
if tansu_ok "$TANSU_BIN"; then
    info "already installed at $TANSU_BIN"
elif tansu_ok "$TANSU_CACHE"; then
    info "copying from the machine cache $TANSU_CACHE"
    install -m 755 "$TANSU_CACHE" "$TANSU_BIN"
else
    prebuilt=""
    for candidate in "${TANSU_PREBUILT:-}" "$ROOT/../shared/bin/tansu" /work/shared/bin/tansu; do
        if [ -n "$candidate" ] && tansu_ok "$candidate"; then
            prebuilt="$candidate"
            break
        fi
    done
    if [ -n "$prebuilt" ]; then
        info "copying the prebuilt $prebuilt (same crate, saves a 13-minute build)"
        install -m 755 "$prebuilt" "$TANSU_BIN"
    else
        info "building from crates.io: cargo install --locked tansu --version $TANSU_VERSION --features libsql (about 13 minutes)"
        cargo install --locked tansu --version "$TANSU_VERSION" --features libsql --root "$TOOLS"
    fi
fi
tansu_ok "$TANSU_BIN" || die "$TANSU_BIN does not run or does not report tansu $TANSU_VERSION"
if ! cmp -s "$TANSU_BIN" "$TANSU_CACHE" 2>/dev/null; then
    mkdir -p "$(dirname "$TANSU_CACHE")"
    install -m 755 "$TANSU_BIN" "$TANSU_CACHE.tmp.$$"
    mv -f "$TANSU_CACHE.tmp.$$" "$TANSU_CACHE"
    info "cached for other checkouts at $TANSU_CACHE"
fi
info "$("$TANSU_BIN" --version) at $TANSU_BIN"

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

printf '\n==> done in %ss: tansu at %s, Python clients in %s\n' "$((SECONDS - START))" "$TANSU_BIN" "$VENV"
