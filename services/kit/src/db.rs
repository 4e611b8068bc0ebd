//! MySQL (MariaDB) plumbing for the services that own a database
//! (inventory-service, order-service, notification-service): the pool, the
//! first connection with retries, migrations, the readiness check, and what
//! a failed statement means for the caller.
//!
//! Only behind the `mysql` feature, so services without a database do not
//! link sqlx. Each service keeps its statements and transactions; what is
//! here is what they would otherwise each write again.
//!
//! Two ways to start, because the services want different things from a
//! database that is down at start:
//! - [`connect`]: wait for it (retrying with back-off up to a deadline) and
//!   migrate, so the service starts only with a usable schema;
//! - [`connect_lazy`]: start at once, not ready, and connect on first use
//!   (the service migrates later itself, retrying while it waits).

use std::time::Duration;

use backoff::Backoff;
use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlDatabaseError, MySqlPool, MySqlPoolOptions};

use crate::error::Problem;
use crate::health::Health;

/// How long a statement waits for a pooled connection in a pool made by
/// [`connect`] before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Ceiling of the first wait between connection attempts in [`connect`]; it
/// doubles up to [`MAX_RETRY_WAIT`], each wait drawn below it ([`Backoff`]).
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(100);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(2);

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection before the deadline (or a URL that can never work).
    #[error("connecting to the {database} database")]
    Connect {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    /// Connected, but the schema could not be brought up to date.
    #[error("running the {database} database migrations")]
    Migrate {
        database: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// Opens a pool of at most `max_connections` to `url` and runs `migrator`.
///
/// The database may start after the service (one `platform up`, or a
/// restart of MariaDB), so failed attempts are retried with back-off until
/// `connect_timeout` has passed. `database` names it in logs and errors.
pub async fn connect(
    database: &str,
    url: &str,
    max_connections: u32,
    connect_timeout: Duration,
    migrator: &Migrator,
) -> Result<MySqlPool, DbError> {
    let deadline = tokio::time::Instant::now() + connect_timeout;
    let mut backoff = Backoff::new(FIRST_RETRY_WAIT, MAX_RETRY_WAIT);
    let pool = loop {
        let wait = backoff.next_wait();
        match pool_options(max_connections, ACQUIRE_TIMEOUT)
            .connect(url)
            .await
        {
            Ok(pool) => break pool,
            Err(e) if tokio::time::Instant::now() + wait < deadline => {
                tracing::warn!(error = %e, database, "database not reachable yet; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(source) => {
                return Err(DbError::Connect {
                    database: database.to_string(),
                    source,
                });
            }
        }
    };
    migrator
        .run(&pool)
        .await
        .map_err(|source| DbError::Migrate {
            database: database.to_string(),
            source,
        })?;
    Ok(pool)
}

/// A pool that connects on first use, so the service can start (not ready)
/// while the database is down. `acquire_timeout` bounds how long a
/// statement waits for a connection during an outage. Fails only on a URL
/// that is not a MySQL connection URL.
pub fn connect_lazy(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<MySqlPool, sqlx::Error> {
    pool_options(max_connections, acquire_timeout).connect_lazy(url)
}

/// A pooled connection idle at least this long is pinged before it is
/// handed out; busier ones are not (see [`pool_options`]).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// sqlx pings a connection when it goes back to the pool, and by default
/// again every time it is taken out: two round trips per use on top of the
/// statements. The second ping only tells something about a connection
/// that sat idle, which the server may have dropped or lost in a restart
/// meanwhile, so only those are pinged (a failed ping discards the
/// connection and the pool hands out another). A connection that breaks
/// between its release and its next use within the second fails that use,
/// as it could fail right after a ping anyway.
fn pool_options(max_connections: u32, acquire_timeout: Duration) -> MySqlPoolOptions {
    MySqlPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Whether the database answers (a protocol-level ping on a pooled connection).
pub async fn ping(pool: &MySqlPool) -> Result<(), sqlx::Error> {
    pool.acquire().await?.ping().await
}

/// Adds the `db` readiness check: the instance is not ready while its
/// database does not answer.
pub fn add_health_check(health: &Health, pool: &MySqlPool) {
    let pool = pool.clone();
    health.add_check("db", move || {
        let pool = pool.clone();
        async move { ping(&pool).await.map_err(|e| e.to_string()) }
    });
}

/// Whether `e` means the database itself is unavailable now (unreachable,
/// refusing logins, read-only, shutting down, overloaded, schema missing),
/// rather than this statement being wrong: every statement would fail the
/// same way, so callers answer 503 or wait instead of blaming the request.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(_) => mysql_error_number(e).is_some_and(|n| {
            matches!(
                n,
                1040 // too many connections
                    | 1044 | 1045 | 1142 // access denied (database, login, table)
                    | 1053 // server shutdown in progress
                    | 1146 // table does not exist (schema not migrated)
                    | 1290 | 1836 // read-only server
                    | 1927 // connection killed
                    | 2002 | 2003 | 2006 | 2013 // cannot connect, server gone, lost connection
            )
        }),
        _ => false,
    }
}

/// A unique-key violation (MySQL 1062): the row already exists.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// A deadlock (1213) or lock-wait timeout (1205): the server rolled the
/// transaction back, and running it again may well succeed.
pub fn is_deadlock(e: &sqlx::Error) -> bool {
    mysql_error_number(e).is_some_and(|n| matches!(n, 1213 | 1205))
}

/// The server's error number, when `e` is an error the server sent.
fn mysql_error_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()?
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(MySqlDatabaseError::number)
}

/// The answer to a failed statement against the `database` database
/// (e.g. "inventory"): 503 when it is unavailable, 500 otherwise; the cause
/// is logged, never sent (see [`Problem::store_failure`]).
pub fn problem(database: &str, e: &sqlx::Error) -> Problem {
    Problem::store_failure(&format!("{database} database"), is_unavailable(e), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connection-level failures are outages; a statement's own errors are not.
    #[test]
    fn classifies_connection_failures_as_unavailable() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::Io(std::io::Error::other(
            "reset"
        ))));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::Decode("bad value".into())));
        assert!(!is_deadlock(&sqlx::Error::PoolTimedOut));
        assert!(!is_unique_violation(&sqlx::Error::RowNotFound));
    }

    /// An outage answers 503 naming the database, anything else a bare 500.
    #[test]
    fn problem_status_follows_the_classification() {
        let p = problem("inventory", &sqlx::Error::PoolClosed);
        assert_eq!(p.status, 503);
        assert_eq!(
            p.detail.as_deref(),
            Some("the inventory database is unavailable; try again shortly")
        );
        let p = problem("inventory", &sqlx::Error::RowNotFound);
        assert_eq!(p.status, 500);
        assert!(!format!("{p:?}").contains("no rows"), "{p:?}");
    }
}
