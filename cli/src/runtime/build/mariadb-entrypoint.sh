#!/bin/sh
# platform's MariaDB entrypoint (runs as PID 1 in the image built by `platform build mariadb`).
#
# First start: initialises the data directory on the named volume. Every start: when the wanted
# databases and users (MARIADB_DATABASES) differ from what was last provisioned, starts a
# private server without networking, creates them, and stops it; then execs the real server, so
# dependants that wait for TCP 3306 only ever see a fully provisioned database.
#
# MARIADB_DATABASES: entries `database:user:password`, separated by spaces or commas; each user
# gets all privileges on its own database only.
# MARIADB_ROOT_PASSWORD (optional): also allow root over TCP with this password.
set -eu

DATADIR=/var/lib/mysql
RUNDIR=/run/mysqld
SOCKET="$RUNDIR/mysqld.sock"
MARKER="$DATADIR/.platform-provisioned"

log() { echo "platform-entrypoint: $*" >&2; }

mkdir -p "$RUNDIR"
chown mysql:mysql "$RUNDIR" "$DATADIR"

if [ ! -d "$DATADIR/mysql" ]; then
    log "initialising $DATADIR"
    mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
        --auth-root-authentication-method=socket >/dev/null
fi

# The version prefix re-provisions existing volumes when this script's SQL changes.
wanted=$(printf 'v2|%s|%s' "${MARIADB_DATABASES:-}" "${MARIADB_ROOT_PASSWORD:-}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$MARKER" 2>/dev/null || true)" != "$wanted" ]; then
    log "provisioning databases and users"
    mariadbd --user=mysql --datadir="$DATADIR" --skip-networking --socket="$SOCKET" &
    pid=$!
    tries=0
    until mariadb-admin --socket="$SOCKET" ping >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -gt 600 ] || ! kill -0 "$pid" 2>/dev/null; then
            log "the provisioning server did not start"
            exit 1
        fi
        sleep 0.1
    done
    # The health check's user: no password, no privileges, only from inside the container, so
    # `mariadb-admin ping` does not fill the log with access-denied warnings.
    sql="CREATE USER IF NOT EXISTS 'healthcheck'@'127.0.0.1';"
    for entry in $(printf '%s' "${MARIADB_DATABASES:-}" | tr ',' ' '); do
        db=${entry%%:*}
        rest=${entry#*:}
        user=${rest%%:*}
        pass=${rest#*:}
        if [ "$db" = "$entry" ] || [ "$user" = "$rest" ]; then
            log "bad MARIADB_DATABASES entry '$entry': write database:user:password"
            exit 1
        fi
        case "$db$user" in
            *[!A-Za-z0-9_]*)
                log "database and user names may hold letters, digits and _ only: '$entry'"
                exit 1
                ;;
        esac
        pass=$(printf '%s' "$pass" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")
        sql="$sql
CREATE DATABASE IF NOT EXISTS \`$db\`;
CREATE USER IF NOT EXISTS '$user'@'%' IDENTIFIED BY '$pass';
ALTER USER '$user'@'%' IDENTIFIED BY '$pass';
GRANT ALL PRIVILEGES ON \`$db\`.* TO '$user'@'%';"
    done
    if [ -n "${MARIADB_ROOT_PASSWORD:-}" ]; then
        rootpass=$(printf '%s' "$MARIADB_ROOT_PASSWORD" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")
        sql="$sql
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$rootpass';
ALTER USER 'root'@'%' IDENTIFIED BY '$rootpass';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    fi
    printf '%s\nFLUSH PRIVILEGES;\n' "$sql" | mariadb --socket="$SOCKET" -uroot
    mariadb-admin --socket="$SOCKET" shutdown
    wait "$pid" || true
    printf '%s' "$wanted" >"$MARKER"
    log "provisioned"
fi

exec mariadbd --user=mysql --datadir="$DATADIR" --socket="$SOCKET" \
    --bind-address=0.0.0.0 --port=3306 --skip-name-resolve "$@"
