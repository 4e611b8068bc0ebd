//! Orders, the outbox and idempotency keys in MySQL (MariaDB).
//!
//! [`Store::insert_order`] is the transactional outbox's write side: the
//! order, its lines, its `OrderPlacedEvent` row and (with an
//! Idempotency-Key) the key's final answer commit together or not at all,
//! so an order exists exactly when its event is queued and its key is done.
//! The relay ([`crate::relay`]) is the read side.
//!
//! Tracing: each call is a `mysql` span with its statement (placeholders,
//! never values); the order's transaction is one span listing its
//! statements, so the waterfall shows one bar for "store the order" with
//! its lock waits and commit inside. The readiness ping has no span.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use events::{Customer, OrderLine, OrderPlacedEvent};
use kit::page::{Page, PageRequest};
use rust_decimal::Decimal;
use sqlx::mysql::MySqlPool;
use sqlx::{QueryBuilder, Row};

use kit::telemetry::{db_span, db_transaction_span, traced};

use crate::model::{LineView, OrderView, STATUS_PLACED};

/// Embedded migrations, run at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// `db.system` of this store's spans.
const DB: &str = "mysql";

// The statements, named once: the queries run them and the spans show them.
const INSERT_ORDER: &str = "INSERT INTO orders (order_number, status, customer_id, customer_email, customer_name, total, created_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?)";
/// Start of the multi-row insert of an order's lines (one `(?, ?, ?, ?, ?)` per line follows).
const INSERT_LINES: &str =
    "INSERT INTO order_lines (order_id, line_no, sku_code, price, quantity) ";
/// How the lines' insert appears in a span: one group of placeholders per line.
const INSERT_LINES_SHOWN: &str = "INSERT INTO order_lines (order_id, line_no, sku_code, price, quantity) VALUES (?, ?, ?, ?, ?), ...";
const INSERT_OUTBOX: &str = "INSERT INTO outbox (event_id, topic, message_key, payload, headers, trace_context) VALUES (?, ?, ?, ?, ?, ?)";
const SELECT_ORDER: &str = "SELECT id, order_number, status, customer_id, customer_email, customer_name, total, created_at \
     FROM orders WHERE order_number = ?";
const COUNT_ORDERS: &str = "SELECT COUNT(*) FROM orders WHERE (? IS NULL OR customer_id = ?)";
const SELECT_ORDERS: &str = "SELECT id, order_number, status, customer_id, customer_email, customer_name, total, created_at \
     FROM orders WHERE (? IS NULL OR customer_id = ?) ORDER BY id DESC LIMIT ? OFFSET ?";
/// Start of the lines' query (the ids and the order follow).
const SELECT_LINES: &str =
    "SELECT order_id, sku_code, price, quantity FROM order_lines WHERE order_id IN (";
const SELECT_LINES_SHOWN: &str = "SELECT order_id, sku_code, price, quantity FROM order_lines WHERE order_id IN (?, ...) ORDER BY order_id, line_no";
const CLAIM_KEY: &str = "INSERT INTO idempotency_keys (idempotency_key, request_hash, order_number, state) VALUES (?, ?, ?, 'IN_PROGRESS')";
const SELECT_KEY: &str = "SELECT request_hash, order_number, state, response_status, response_body, updated_at, \
     TIMESTAMPDIFF(MICROSECOND, updated_at, NOW(6)) \
     FROM idempotency_keys WHERE idempotency_key = ?";
const TAKE_OVER_KEY: &str = "UPDATE idempotency_keys SET updated_at = NOW(6) \
     WHERE idempotency_key = ? AND state = 'IN_PROGRESS' AND updated_at = ?";
const FINISH_KEY: &str = "UPDATE idempotency_keys SET state = 'DONE', response_status = ?, response_body = ?, updated_at = NOW(6) \
     WHERE idempotency_key = ?";
const DROP_KEY: &str =
    "DELETE FROM idempotency_keys WHERE idempotency_key = ? AND state = 'IN_PROGRESS'";

/// An order ready to be stored with its event.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub order_number: String,
    pub customer: Customer,
    pub lines: Vec<OrderLine>,
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
    pub event: OrderPlacedEvent,
    /// Trace propagation headers (JSON object) for the outbox row.
    pub trace_context: Option<String>,
}

/// The answer stored for an Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
}

/// The state of an Idempotency-Key row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub request_hash: String,
    pub order_number: String,
    /// `Some` once the first attempt finished.
    pub answer: Option<StoredAnswer>,
    /// The row's `updated_at`, to take over an abandoned attempt atomically.
    pub updated_at: NaiveDateTime,
    /// How long ago the row was last touched, by the database's clock.
    pub idle: Duration,
}

/// What claiming an Idempotency-Key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new and now ours.
    Fresh,
    /// The key exists.
    Existing(KeyRow),
}

/// The service's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: MySqlPool,
}

impl Store {
    /// Connects (retrying until `connect_timeout`, as the database may start
    /// after the service) and runs the migrations.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Result<Store, kit::db::DbError> {
        let pool =
            kit::db::connect("orders", url, max_connections, connect_timeout, &MIGRATOR).await?;
        Ok(Store { pool })
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Writes the order, its lines, its outbox row and (with `key`) the
    /// key's final answer in one transaction.
    pub async fn insert_order(
        &self,
        order: &NewOrder,
        key: Option<(&str, &StoredAnswer)>,
    ) -> Result<(), sqlx::Error> {
        let statements: &[&str] = match key {
            Some(_) => &[INSERT_ORDER, INSERT_LINES_SHOWN, INSERT_OUTBOX, FINISH_KEY],
            None => &[INSERT_ORDER, INSERT_LINES_SHOWN, INSERT_OUTBOX],
        };
        let span = db_transaction_span(DB, "TRANSACTION place order", statements);
        traced(span, self.insert_order_tx(order, key)).await
    }

    async fn insert_order_tx(
        &self,
        order: &NewOrder,
        key: Option<(&str, &StoredAnswer)>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let id = sqlx::query(INSERT_ORDER)
            .bind(&order.order_number)
            .bind(STATUS_PLACED)
            .bind(&order.customer.id)
            .bind(&order.customer.email)
            .bind(&order.customer.name)
            .bind(order.total)
            .bind(order.created_at.naive_utc())
            .execute(&mut *tx)
            .await?
            .last_insert_id();

        let mut lines = QueryBuilder::new(INSERT_LINES);
        lines.push_values(order.lines.iter().enumerate(), |mut b, (i, l)| {
            b.push_bind(id as i64)
                .push_bind(i as i32)
                .push_bind(&l.sku_code)
                .push_bind(l.price)
                .push_bind(l.quantity);
        });
        lines.build().execute(&mut *tx).await?;

        let headers = serde_json::json!({
            events::headers::EVENT_TYPE: events::EVENT_TYPE,
            events::headers::SCHEMA_VERSION: order.event.schema_version.to_string(),
            events::headers::CONTENT_TYPE: "application/json",
        });
        sqlx::query(INSERT_OUTBOX)
            .bind(order.event.event_id.to_string())
            .bind(events::ORDER_PLACED_TOPIC)
            .bind(&order.order_number)
            .bind(String::from_utf8_lossy(&order.event.encode()).into_owned())
            .bind(headers.to_string())
            .bind(&order.trace_context)
            .execute(&mut *tx)
            .await?;

        if let Some((key, answer)) = key {
            finish_key(&mut tx, key, answer).await?;
        }
        tx.commit().await
    }

    /// An order by number.
    pub async fn order(&self, order_number: &str) -> Result<Option<OrderView>, sqlx::Error> {
        let query = sqlx::query(SELECT_ORDER)
            .bind(order_number)
            .fetch_optional(&self.pool);
        let row = traced(db_span(DB, "SELECT orders", SELECT_ORDER), query).await?;
        let Some(row) = row else { return Ok(None) };
        let mut views = self.with_lines(vec![row]).await?;
        Ok(views.pop())
    }

    /// A page of orders, newest first; only `customer`'s when given.
    pub async fn orders(
        &self,
        req: PageRequest,
        customer: Option<&str>,
    ) -> Result<Page<OrderView>, sqlx::Error> {
        let count = sqlx::query_scalar(COUNT_ORDERS)
            .bind(customer)
            .bind(customer)
            .fetch_one(&self.pool);
        let total: i64 = traced(db_span(DB, "SELECT orders", COUNT_ORDERS), count).await?;
        let query = sqlx::query(SELECT_ORDERS)
            .bind(customer)
            .bind(customer)
            .bind(req.size as i64)
            .bind(req.offset() as i64)
            .fetch_all(&self.pool);
        let rows = traced(db_span(DB, "SELECT orders", SELECT_ORDERS), query).await?;
        let items = self.with_lines(rows).await?;
        Ok(Page::new(items, req, total.max(0) as u64))
    }

    /// Turns order rows into views, loading their lines in one query.
    async fn with_lines(
        &self,
        rows: Vec<sqlx::mysql::MySqlRow>,
    ) -> Result<Vec<OrderView>, sqlx::Error> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.get::<i64, _>(0)).collect();
        let mut q = QueryBuilder::new(SELECT_LINES);
        let mut sep = q.separated(", ");
        for id in &ids {
            sep.push_bind(*id);
        }
        q.push(") ORDER BY order_id, line_no");
        let mut lines: HashMap<i64, Vec<LineView>> = HashMap::new();
        let query = q.build().fetch_all(&self.pool);
        for r in traced(db_span(DB, "SELECT order_lines", SELECT_LINES_SHOWN), query).await? {
            lines.entry(r.get(0)).or_default().push(LineView {
                sku_code: r.get(1),
                price: r.get(2),
                quantity: r.get::<i32, _>(3).max(0) as u32,
            });
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                let id: i64 = r.get(0);
                let created: NaiveDateTime = r.get(7);
                OrderView {
                    order_number: r.get(1),
                    status: r.get(2),
                    customer: Customer {
                        id: r.get(3),
                        email: r.get(4),
                        name: r.get(5),
                    },
                    lines: lines.remove(&id).unwrap_or_default(),
                    total: r.get(6),
                    created_at: created.and_utc(),
                }
            })
            .collect())
    }

    /// Inserts the key as in progress, or reports the existing row.
    pub async fn claim_key(
        &self,
        key: &str,
        request_hash: &str,
        order_number: &str,
    ) -> Result<Claim, sqlx::Error> {
        let query = sqlx::query(CLAIM_KEY)
            .bind(key)
            .bind(request_hash)
            .bind(order_number)
            .execute(&self.pool);
        let inserted = traced(db_span(DB, "INSERT idempotency_keys", CLAIM_KEY), query).await;
        match inserted {
            Ok(_) => Ok(Claim::Fresh),
            Err(e) if kit::db::is_unique_violation(&e) => {
                match self.key(key).await? {
                    Some(row) => Ok(Claim::Existing(row)),
                    // Dropped between our insert and read: try again once.
                    None => Box::pin(self.claim_key(key, request_hash, order_number)).await,
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The row of an Idempotency-Key.
    pub async fn key(&self, key: &str) -> Result<Option<KeyRow>, sqlx::Error> {
        let query = sqlx::query(SELECT_KEY).bind(key).fetch_optional(&self.pool);
        let row = traced(db_span(DB, "SELECT idempotency_keys", SELECT_KEY), query).await?;
        Ok(row.map(|r| {
            let state: String = r.get(2);
            let status: Option<i16> = r.get(3);
            let body: Option<String> = r.get(4);
            let answer = match (state.as_str(), status, body) {
                ("DONE", Some(status), Some(body)) => Some(StoredAnswer {
                    status: status as u16,
                    body,
                }),
                _ => None,
            };
            let idle: i64 = r.get(6);
            KeyRow {
                request_hash: r.get(0),
                order_number: r.get(1),
                answer,
                updated_at: r.get(5),
                idle: Duration::from_micros(idle.max(0) as u64),
            }
        }))
    }

    /// Takes over an abandoned in-progress key (its holder crashed), if no
    /// one else did first. Returns whether this caller now holds it.
    pub async fn take_over_key(&self, key: &str, seen: NaiveDateTime) -> Result<bool, sqlx::Error> {
        let query = sqlx::query(TAKE_OVER_KEY)
            .bind(key)
            .bind(seen)
            .execute(&self.pool);
        let r = traced(db_span(DB, "UPDATE idempotency_keys", TAKE_OVER_KEY), query).await?;
        Ok(r.rows_affected() == 1)
    }

    /// Stores the final answer of a key whose request created no order (out of stock).
    pub async fn finish_key(&self, key: &str, answer: &StoredAnswer) -> Result<(), sqlx::Error> {
        let span = db_transaction_span(DB, "TRANSACTION finish key", &[FINISH_KEY]);
        traced(span, async {
            let mut tx = self.pool.begin().await?;
            finish_key(&mut tx, key, answer).await?;
            tx.commit().await
        })
        .await
    }

    /// Forgets a key whose request failed in a way worth retrying (the
    /// dependency was unavailable) or was refused as bad input.
    pub async fn drop_key(&self, key: &str) -> Result<(), sqlx::Error> {
        let query = sqlx::query(DROP_KEY).bind(key).execute(&self.pool);
        traced(db_span(DB, "DELETE idempotency_keys", DROP_KEY), query)
            .await
            .map(|_| ())
    }
}

async fn finish_key(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    key: &str,
    answer: &StoredAnswer,
) -> Result<(), sqlx::Error> {
    sqlx::query(FINISH_KEY)
        .bind(answer.status as i16)
        .bind(&answer.body)
        .bind(key)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}
