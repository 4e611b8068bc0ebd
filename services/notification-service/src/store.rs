//! The store of sent notifications: MySQL/MariaDB through sqlx, database `notifications`.
//!
//! Idempotency lives here: `event_id` has a unique key and [`NotificationStore::insert`] is a
//! plain `INSERT` whose unique violation means "already sent" ([`Stored::Duplicate`]), so a
//! redelivered event never produces a second row, whichever instance handles it and however
//! many times. (`INSERT IGNORE` would also silence data errors, which must reach the retry
//! and dead-letter logic instead.)
//!
//! [`StoreError::is_outage`] tells the consumer whether a failure is the database being
//! unreachable, which no message can be handled through (the consumer waits), or a failure
//! of this message (counted towards dead-lettering).
//!
//! Tracing: every write and read is a `mysql` span with its statement (placeholders, never
//! values). A batch written with one statement gets one span per message, each a child of
//! that message's consumer span, so the trace of every order shows its notification's write
//! (they share the same start and end: the statement they share). Migrations and the
//! readiness ping (`kit::db`'s) have no span.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kit::page::{Page, PageRequest};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::mysql::MySqlPool;

use kit::telemetry::{db_span, db_transaction_span, traced};
use tracing::Instrument;

use crate::email::Email;

/// The schema, embedded at compile time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// `db.system` of this store's spans.
const DB: &str = "mysql";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrating the notifications schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the database itself is unavailable (see [`kit::db::is_unavailable`]): every
    /// message would fail the same way.
    pub fn is_outage(&self) -> bool {
        match self {
            StoreError::Sql(e) => kit::db::is_unavailable(e),
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => {
                kit::db::is_unavailable(e)
            }
            StoreError::Migrate(_) => false,
        }
    }
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new notification row: send it.
    New,
    /// The event id was already stored: it was sent before.
    Duplicate,
}

/// A stored notification, as `GET /api/notifications` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: u64,
    pub event_id: String,
    pub order_number: String,
    pub customer_id: String,
    pub recipient: Option<String>,
    pub subject: String,
    pub body: String,
    /// Decimal as a string, like every amount on the platform.
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub occurred_at: DateTime<Utc>,
    pub sent_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: u64,
    event_id: String,
    order_number: String,
    customer_id: String,
    recipient: Option<String>,
    subject: String,
    body: String,
    total: Decimal,
    source_topic: String,
    source_partition: i32,
    source_offset: i64,
    occurred_at: DateTime<Utc>,
    sent_at: DateTime<Utc>,
}

impl From<Row> for Notification {
    fn from(r: Row) -> Notification {
        Notification {
            id: r.id,
            event_id: r.event_id,
            order_number: r.order_number,
            customer_id: r.customer_id,
            recipient: r.recipient,
            subject: r.subject,
            body: r.body,
            // DECIMAL(19,4) reads back with four decimals; show the amount as it was sent.
            total: r.total.normalize(),
            source_topic: r.source_topic,
            source_partition: r.source_partition,
            source_offset: r.source_offset,
            occurred_at: r.occurred_at,
            sent_at: r.sent_at,
        }
    }
}

/// Start of every notification `INSERT`: the columns, in the order the binds follow.
macro_rules! insert_into {
    () => {
        "INSERT INTO notifications (event_id, order_number, customer_id, recipient, subject, \
         body, total, source_topic, source_partition, source_offset, occurred_at, sent_at) "
    };
}
const INSERT_INTO: &str = insert_into!();
/// The single-row `INSERT`.
const INSERT_ONE: &str = concat!(
    insert_into!(),
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
);
/// The multi-row `INSERT` as a span shows it.
const INSERT_MANY_SHOWN: &str = concat!(
    insert_into!(),
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), ..."
);
const COUNT: &str = "SELECT COUNT(*) FROM notifications \
     WHERE (? IS NULL OR order_number = ?) AND (? IS NULL OR customer_id = ?)";
const SELECT_PAGE: &str = "SELECT id, event_id, order_number, customer_id, recipient, subject, body, total, \
     source_topic, source_partition, source_offset, occurred_at, sent_at \
     FROM notifications WHERE (? IS NULL OR order_number = ?) AND (? IS NULL OR customer_id = ?) \
     ORDER BY id DESC LIMIT ? OFFSET ?";
const SELECT_ONE: &str = "SELECT id, event_id, order_number, customer_id, recipient, subject, body, total, \
     source_topic, source_partition, source_offset, occurred_at, sent_at \
     FROM notifications WHERE id = ?";
const COUNT_EVENT: &str = "SELECT COUNT(*) FROM notifications WHERE event_id = ?";

/// The single-row `INSERT` with its binds.
fn insert_query(email: &Email) -> sqlx::query::Query<'_, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    sqlx::query(INSERT_ONE)
        .bind(email.event_id.hyphenated().to_string())
        .bind(&email.order_number)
        .bind(&email.customer_id)
        .bind(&email.recipient)
        .bind(&email.subject)
        .bind(&email.body)
        .bind(email.total)
        .bind(&email.origin.topic)
        .bind(email.origin.partition)
        .bind(email.origin.offset)
        .bind(email.occurred_at)
        .bind(Utc::now())
}

/// A unique violation on `event_id` is a duplicate, not an error.
fn stored(
    result: Result<sqlx::mysql::MySqlQueryResult, sqlx::Error>,
) -> Result<Stored, StoreError> {
    match result {
        Ok(_) => Ok(Stored::New),
        Err(e) if kit::db::is_unique_violation(&e) => Ok(Stored::Duplicate),
        Err(e) => Err(e.into()),
    }
}

/// The notifications table behind a connection pool; cheap to clone.
#[derive(Debug, Clone)]
pub struct NotificationStore {
    pool: MySqlPool,
}

impl NotificationStore {
    /// A pool that connects on first use, so the service starts (not ready) while the
    /// database is down. `acquire_timeout` bounds how long an operation waits for a
    /// connection during an outage.
    pub fn connect_lazy(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<NotificationStore, StoreError> {
        let pool = kit::db::connect_lazy(url, max_connections, acquire_timeout)?;
        Ok(NotificationStore { pool })
    }

    /// Applies the embedded migrations (serialised across instances by sqlx's lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Stores `email` unless its event id is already stored.
    pub async fn insert(&self, email: &Email) -> Result<Stored, StoreError> {
        let span = db_span(DB, "INSERT notifications", INSERT_ONE);
        traced(span, async {
            stored(insert_query(email).execute(&self.pool).await)
        })
        .await
    }

    /// Stores several notifications at once, each unless its event id is already stored.
    ///
    /// The usual case, no duplicate, is one multi-row `INSERT`: one round trip and one
    /// commit for a whole burst. A statement is atomic, so when any row is a duplicate
    /// nothing was inserted, and the batch is redone row by row in one transaction where
    /// duplicates are told apart. There, any failure other than a duplicate rolls the whole
    /// batch back: InnoDB undoes only the failed statement on a duplicate key, but a
    /// deadlock undoes the transaction, and continuing after it would lose rows silently.
    ///
    /// `traces` holds the span of each email's message, in order: each gets a database span
    /// of its own for the shared statement (see the module docs).
    pub async fn insert_batch(
        &self,
        emails: &[&Email],
        traces: &[tracing::Span],
    ) -> Result<Vec<Stored>, StoreError> {
        if let [one] = emails {
            let parent = traces
                .first()
                .cloned()
                .unwrap_or_else(tracing::Span::current);
            return Ok(vec![self.insert(one).instrument(parent).await?]);
        }
        let spans: Vec<tracing::Span> = traces
            .iter()
            .map(|parent| {
                parent.in_scope(|| {
                    db_transaction_span(
                        DB,
                        "INSERT notifications (batch)",
                        &[INSERT_MANY_SHOWN, INSERT_ONE],
                    )
                })
            })
            .collect();
        let result = self.insert_many(emails).await;
        if result.is_err() {
            spans.iter().for_each(kit::telemetry::mark_error);
        }
        result
    }

    /// The multi-row insert, and the row-by-row transaction after a duplicate.
    async fn insert_many(&self, emails: &[&Email]) -> Result<Vec<Stored>, StoreError> {
        let now = Utc::now();
        let mut insert = sqlx::QueryBuilder::<sqlx::MySql>::new(INSERT_INTO);
        insert.push_values(emails, |mut row, email| {
            row.push_bind(email.event_id.hyphenated().to_string())
                .push_bind(&email.order_number)
                .push_bind(&email.customer_id)
                .push_bind(&email.recipient)
                .push_bind(&email.subject)
                .push_bind(&email.body)
                .push_bind(email.total)
                .push_bind(&email.origin.topic)
                .push_bind(email.origin.partition)
                .push_bind(email.origin.offset)
                .push_bind(email.occurred_at)
                .push_bind(now);
        });
        match insert.build().execute(&self.pool).await {
            Ok(_) => return Ok(vec![Stored::New; emails.len()]),
            Err(e) if kit::db::is_unique_violation(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(emails.len());
        for email in emails {
            out.push(stored(insert_query(email).execute(&mut *tx).await)?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// One page of notifications, newest first, optionally for one order
    /// and only `customer`'s when given.
    pub async fn list(
        &self,
        order_number: Option<&str>,
        customer: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<Notification>, StoreError> {
        let count = sqlx::query_scalar(COUNT)
            .bind(order_number)
            .bind(order_number)
            .bind(customer)
            .bind(customer)
            .fetch_one(&self.pool);
        let total: i64 = traced(db_span(DB, "SELECT notifications", COUNT), count).await?;
        let query = sqlx::query_as(SELECT_PAGE)
            .bind(order_number)
            .bind(order_number)
            .bind(customer)
            .bind(customer)
            .bind(page.size)
            .bind(page.offset())
            .fetch_all(&self.pool);
        let rows: Vec<Row> =
            traced(db_span(DB, "SELECT notifications", SELECT_PAGE), query).await?;
        let items = rows.into_iter().map(Notification::from).collect();
        Ok(Page::new(items, page, u64::try_from(total).unwrap_or(0)))
    }

    /// One notification by id.
    pub async fn get(&self, id: u64) -> Result<Option<Notification>, StoreError> {
        let query = sqlx::query_as(SELECT_ONE)
            .bind(id)
            .fetch_optional(&self.pool);
        let row: Option<Row> =
            traced(db_span(DB, "SELECT notifications", SELECT_ONE), query).await?;
        Ok(row.map(Notification::from))
    }

    /// How many notifications exist for `event_id` (0 or 1; tests use it).
    pub async fn count_for_event(&self, event_id: uuid::Uuid) -> Result<u64, StoreError> {
        let query = sqlx::query_scalar(COUNT_EVENT)
            .bind(event_id.hyphenated().to_string())
            .fetch_one(&self.pool);
        let n: i64 = traced(db_span(DB, "SELECT notifications", COUNT_EVENT), query).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The pool, for closing at shutdown.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }
}
