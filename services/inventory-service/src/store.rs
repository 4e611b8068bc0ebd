//! Stock and reservations in MySQL (MariaDB).
//!
//! Correctness rests on the database, not on this process, so that any
//! number of instances can run side by side:
//! - a reservation takes each SKU with one conditional
//!   `UPDATE inventory SET quantity = quantity - ? WHERE sku_code = ? AND quantity >= ?`
//!   inside one transaction with the reservation row: all lines or none,
//!   and the row lock the UPDATE takes serialises concurrent takers of the
//!   same SKU, so stock is never oversold; the CHECK constraint forbids a
//!   negative quantity whatever happens;
//! - SKUs are taken in sorted order, so two reservations of the same SKUs
//!   lock them in the same order and cannot deadlock each other (a
//!   deadlock the server reports anyway is retried);
//! - the reservation row's primary key (the order number) makes a repeat
//!   idempotent: a second request for the same order waits for the first
//!   one's transaction on that key and then reads its outcome.
//!
//! Tracing: each transaction is one `mysql` span (`TRANSACTION reserve`,
//! `TRANSACTION release`) listing the statements it may run; a statement
//! on its own gets its own span. Statements are shown with placeholders,
//! never values. The readiness ping has no span (probes are not traced).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlPool;
use sqlx::{MySql, Row, Transaction};

use kit::db::{is_deadlock, is_unique_violation};
use kit::telemetry::{db_span, db_transaction_span, traced};

use crate::error::{ApiError, Shortage};

/// Embedded migrations, run at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// `db.system` of this store's spans.
const DB: &str = "mysql";

// The statements, named once: the queries run them and the trace spans
// show them (placeholders only, never values).
const SET_STOCK: &str = "INSERT INTO inventory (sku_code, quantity) VALUES (?, ?) \
     ON DUPLICATE KEY UPDATE quantity = VALUES(quantity)";
const SELECT_STOCK: &str = "SELECT quantity FROM inventory WHERE sku_code = ?";
const CLAIM_ORDER: &str = "INSERT INTO reservations (order_number, status) VALUES (?, ?)";
const TAKE_STOCK: &str =
    "UPDATE inventory SET quantity = quantity - ? WHERE sku_code = ? AND quantity >= ?";
const INSERT_LINE: &str =
    "INSERT INTO reservation_lines (order_number, sku_code, quantity) VALUES (?, ?, ?)";
const INSERT_REJECTION: &str =
    "INSERT INTO reservations (order_number, status, detail) VALUES (?, ?, ?)";
const SELECT_RESERVATION: &str = "SELECT status, detail FROM reservations WHERE order_number = ?";
const SELECT_LINES: &str =
    "SELECT sku_code, quantity FROM reservation_lines WHERE order_number = ? ORDER BY sku_code";
const LOCK_RESERVATION: &str = "SELECT status FROM reservations WHERE order_number = ? FOR UPDATE";
const INSERT_RELEASED: &str =
    "INSERT INTO reservations (order_number, status, released_at) VALUES (?, ?, NOW(6))";
const GIVE_BACK: &str = "UPDATE inventory SET quantity = quantity + ? WHERE sku_code = ?";
const MARK_RELEASED: &str =
    "UPDATE reservations SET status = ?, released_at = NOW(6) WHERE order_number = ?";

/// How often a transaction the server chose as a deadlock victim is retried.
const DEADLOCK_RETRIES: usize = 5;

/// One line of a reservation request (quantities summed per SKU).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub sku_code: String,
    pub quantity: u64,
}

/// The state of an order's reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Reserved,
    Rejected,
    Released,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Reserved => "RESERVED",
            Status::Rejected => "REJECTED",
            Status::Released => "RELEASED",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        match s {
            "RESERVED" => Some(Status::Reserved),
            "REJECTED" => Some(Status::Rejected),
            "RELEASED" => Some(Status::Released),
            _ => None,
        }
    }
}

/// What a reservation request led to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub order_number: String,
    pub status: Status,
    /// The reserved lines (empty unless the stock was taken at some point).
    pub lines: Vec<Line>,
    /// REJECTED only: the SKUs that were short.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insufficient: Vec<Shortage>,
}

/// Result of [`Store::reserve`]: whether this call created the reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub reservation: Reservation,
    pub created: bool,
}

/// Stock of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stock {
    pub sku_code: String,
    pub quantity: u64,
}

/// What one reservation transaction ended with.
enum Attempt {
    /// Reserved and committed.
    Done(Reserved),
    /// Rolled back: these SKUs were short (the rejection is stored next).
    Short(Vec<Shortage>),
    /// Rolled back: the order already has a reservation (read next).
    Exists,
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
        let pool = kit::db::connect(
            "inventory",
            url,
            max_connections,
            connect_timeout,
            &MIGRATOR,
        )
        .await?;
        Ok(Store { pool })
    }

    /// The connection pool (for the health check and tests).
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Sets the stock of a SKU, creating it if needed.
    pub async fn set_stock(&self, sku: &str, quantity: u64) -> Result<Stock, ApiError> {
        let query = sqlx::query(SET_STOCK)
            .bind(sku)
            .bind(quantity as i64)
            .execute(&self.pool);
        traced(db_span(DB, "INSERT inventory", SET_STOCK), query).await?;
        Ok(Stock {
            sku_code: sku.to_string(),
            quantity,
        })
    }

    /// The stock of a SKU, if the SKU is known.
    pub async fn stock(&self, sku: &str) -> Result<Option<Stock>, ApiError> {
        let query = sqlx::query(SELECT_STOCK)
            .bind(sku)
            .fetch_optional(&self.pool);
        let row = traced(db_span(DB, "SELECT inventory", SELECT_STOCK), query).await?;
        Ok(row.map(|r| Stock {
            sku_code: sku.to_string(),
            quantity: r.get::<i32, _>(0).max(0) as u64,
        }))
    }

    /// The seed's check: whether at least `quantity` of `sku` is in stock
    /// (an unknown SKU is not in stock).
    pub async fn is_in_stock(&self, sku: &str, quantity: u64) -> Result<bool, ApiError> {
        Ok(self
            .stock(sku)
            .await?
            .is_some_and(|s| s.quantity >= quantity))
    }

    /// Reserves every line of an order, or none (see the module docs).
    pub async fn reserve(&self, order_number: &str, lines: &[Line]) -> Result<Reserved, ApiError> {
        let wanted = merge_lines(lines);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let span = db_transaction_span(
                DB,
                "TRANSACTION reserve",
                &[CLAIM_ORDER, TAKE_STOCK, SELECT_STOCK, INSERT_LINE],
            );
            match traced(span, self.try_reserve(order_number, &wanted)).await {
                Err(ApiError::Db(e)) if is_deadlock(&e) && attempt < DEADLOCK_RETRIES => {
                    tracing::debug!(order_number, attempt, "deadlock on reserve; retrying");
                }
                // The follow-ups run after the transaction ended, in spans of their own.
                Ok(Attempt::Done(reserved)) => return Ok(reserved),
                Ok(Attempt::Short(short)) => {
                    return self.store_rejection(order_number, short).await;
                }
                Ok(Attempt::Exists) => return self.existing(order_number).await,
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_reserve(
        &self,
        order_number: &str,
        wanted: &BTreeMap<String, u64>,
    ) -> Result<Attempt, ApiError> {
        let mut tx = self.pool.begin().await?;
        // Claim the order number first: a concurrent request for the same
        // order blocks here until this transaction ends.
        let claimed = sqlx::query(CLAIM_ORDER)
            .bind(order_number)
            .bind(Status::Reserved.as_str())
            .execute(&mut *tx)
            .await;
        if let Err(e) = claimed {
            if is_unique_violation(&e) {
                tx.rollback().await?;
                return Ok(Attempt::Exists);
            }
            return Err(e.into());
        }

        let mut unknown = Vec::new();
        let mut short = Vec::new();
        for (sku, qty) in wanted {
            let taken = sqlx::query(TAKE_STOCK)
                .bind(*qty as i64)
                .bind(sku)
                .bind(*qty as i64)
                .execute(&mut *tx)
                .await?;
            if taken.rows_affected() == 1 {
                continue;
            }
            let available: Option<i32> = sqlx::query_scalar(SELECT_STOCK)
                .bind(sku)
                .fetch_optional(&mut *tx)
                .await?;
            match available {
                None => unknown.push(sku.clone()),
                Some(a) => short.push(Shortage {
                    sku_code: sku.clone(),
                    requested: *qty,
                    available: a.max(0) as u64,
                }),
            }
        }

        if !unknown.is_empty() {
            // Bad input: nothing is stored, not even a rejection.
            tx.rollback().await?;
            return Err(ApiError::UnknownSkus(unknown));
        }
        if !short.is_empty() {
            tx.rollback().await?;
            return Ok(Attempt::Short(short));
        }

        for (sku, qty) in wanted {
            sqlx::query(INSERT_LINE)
                .bind(order_number)
                .bind(sku)
                .bind(*qty as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Attempt::Done(Reserved {
            reservation: Reservation {
                order_number: order_number.to_string(),
                status: Status::Reserved,
                lines: to_lines(wanted),
                insufficient: Vec::new(),
            },
            created: true,
        }))
    }

    /// Remembers that an order was refused for lack of stock, so that a
    /// repeat gets the same answer.
    async fn store_rejection(
        &self,
        order_number: &str,
        short: Vec<Shortage>,
    ) -> Result<Reserved, ApiError> {
        let detail = serde_json::to_string(&short).unwrap_or_default();
        let query = sqlx::query(INSERT_REJECTION)
            .bind(order_number)
            .bind(Status::Rejected.as_str())
            .bind(detail)
            .execute(&self.pool);
        let stored = traced(db_span(DB, "INSERT reservations", INSERT_REJECTION), query).await;
        match stored {
            Ok(_) => Ok(Reserved {
                reservation: Reservation {
                    order_number: order_number.to_string(),
                    status: Status::Rejected,
                    lines: Vec::new(),
                    insufficient: short,
                },
                created: true,
            }),
            // A concurrent request for the same order finished first.
            Err(e) if is_unique_violation(&e) => self.existing(order_number).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The stored outcome of an order's reservation, as a repeat sees it.
    async fn existing(&self, order_number: &str) -> Result<Reserved, ApiError> {
        let reservation = self.reservation(order_number).await?.ok_or_else(|| {
            ApiError::NotFound(format!("no reservation for order {order_number}"))
        })?;
        Ok(Reserved {
            reservation,
            created: false,
        })
    }

    /// The reservation of an order, if any.
    pub async fn reservation(&self, order_number: &str) -> Result<Option<Reservation>, ApiError> {
        let query = sqlx::query(SELECT_RESERVATION)
            .bind(order_number)
            .fetch_optional(&self.pool);
        let row = traced(
            db_span(DB, "SELECT reservations", SELECT_RESERVATION),
            query,
        )
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let status: String = row.get(0);
        let detail: Option<String> = row.get(1);
        let status = Status::parse(&status).ok_or_else(|| {
            ApiError::Db(sqlx::Error::Decode(
                format!("unknown reservation status {status}").into(),
            ))
        })?;
        let query = sqlx::query(SELECT_LINES)
            .bind(order_number)
            .fetch_all(&self.pool);
        let lines = traced(db_span(DB, "SELECT reservation_lines", SELECT_LINES), query)
            .await?
            .into_iter()
            .map(|r| Line {
                sku_code: r.get(0),
                quantity: r.get::<i32, _>(1).max(0) as u64,
            })
            .collect();
        let insufficient = detail
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or_default();
        Ok(Some(Reservation {
            order_number: order_number.to_string(),
            status,
            lines,
            insufficient,
        }))
    }

    /// Gives a reservation's stock back (compensation). Idempotent; an
    /// unknown order number is recorded as released so a reservation that
    /// arrives later (a request that overtook its own timeout) cannot take
    /// stock for a cancelled order. Returns the reservation after the call
    /// and whether this call gave stock back.
    pub async fn release(&self, order_number: &str) -> Result<(Reservation, bool), ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let span = db_transaction_span(
                DB,
                "TRANSACTION release",
                &[
                    LOCK_RESERVATION,
                    INSERT_RELEASED,
                    SELECT_LINES,
                    GIVE_BACK,
                    MARK_RELEASED,
                ],
            );
            match traced(span, self.try_release(order_number)).await {
                Err(ApiError::Db(e))
                    if (is_deadlock(&e) || is_unique_violation(&e))
                        && attempt < DEADLOCK_RETRIES =>
                {
                    tracing::debug!(order_number, attempt, "conflict on release; retrying");
                }
                Ok(gave_back) => {
                    let reservation = self.reservation(order_number).await?.ok_or_else(|| {
                        ApiError::NotFound(format!("no reservation for order {order_number}"))
                    })?;
                    return Ok((reservation, gave_back));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The release transaction; returns whether it gave stock back.
    async fn try_release(&self, order_number: &str) -> Result<bool, ApiError> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> = sqlx::query_scalar(LOCK_RESERVATION)
            .bind(order_number)
            .fetch_optional(&mut *tx)
            .await?;
        let gave_back = match status.as_deref().and_then(Status::parse) {
            None => {
                sqlx::query(INSERT_RELEASED)
                    .bind(order_number)
                    .bind(Status::Released.as_str())
                    .execute(&mut *tx)
                    .await?;
                false
            }
            Some(Status::Reserved) => {
                give_back(&mut tx, order_number).await?;
                true
            }
            Some(Status::Rejected | Status::Released) => false,
        };
        tx.commit().await?;
        Ok(gave_back)
    }
}

/// Adds a reservation's lines back to stock and marks it released.
async fn give_back(tx: &mut Transaction<'_, MySql>, order_number: &str) -> Result<(), ApiError> {
    let lines: Vec<(String, i32)> = sqlx::query_as(SELECT_LINES)
        .bind(order_number)
        .fetch_all(&mut **tx)
        .await?;
    for (sku, qty) in lines {
        sqlx::query(GIVE_BACK)
            .bind(qty)
            .bind(sku)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(MARK_RELEASED)
        .bind(Status::Released.as_str())
        .bind(order_number)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sums the quantities per SKU, sorted by SKU (the lock order).
pub fn merge_lines(lines: &[Line]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l.sku_code.clone()).or_insert(0) += l.quantity;
    }
    m
}

fn to_lines(m: &BTreeMap<String, u64>) -> Vec<Line> {
    m.iter()
        .map(|(s, q)| Line {
            sku_code: s.clone(),
            quantity: *q,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of the same SKU are summed and the result is sorted, which is the lock order.
    #[test]
    fn merges_and_sorts() {
        let m = merge_lines(&[
            Line {
                sku_code: "b".into(),
                quantity: 1,
            },
            Line {
                sku_code: "a".into(),
                quantity: 2,
            },
            Line {
                sku_code: "b".into(),
                quantity: 3,
            },
        ]);
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            [("a".into(), 2), ("b".into(), 4)]
        );
    }
}
