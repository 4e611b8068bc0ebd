//! The consumer of `order-placed`: at-least-once, idempotent, never blocked by a poison
//! message.
//!
//! # Delivery
//! Group `notification-service`, `enable.auto.commit=false`. Messages are handled in
//! arrival order, in batches of what has already arrived (up to `--batch-size`, never
//! waiting to fill one): the batch's notifications are stored in one transaction, so a
//! burst costs one database commit rather than one per message. An offset is committed only
//! after its message was handled: its notification stored (or found already stored), or the
//! message written to the dead-letter topic and acknowledged by the broker. A crash anywhere
//! before the commit redelivers the message, and the unique `event_id` key turns the
//! redelivery into a counted duplicate instead of a second notification (see
//! [`crate::store`]).
//!
//! # Poison messages and failures
//! - Undecodable (`events::decode` fails: garbage, wrong shape, a schema version newer than
//!   this consumer reads): straight to the DLT, `dlt-attempts: 1`.
//! - Handling fails for this message (the database refuses its data, a deadlock...): retried
//!   with exponential back-off, and after `--max-attempts` failures written to the DLT with
//!   the last error. Its partition then moves on.
//! - The database is unreachable (an outage, see `StoreError::is_outage`): the consumer
//!   waits and retries the same message with capped back-off, without counting attempts,
//!   and readiness turns DOWN. This is a decision: an outage is not a property of the
//!   message, and dead-lettering during one would send every healthy order's notification
//!   to the DLT, to be replayed by hand. "Never blocks its partition" is about one bad
//!   message holding up the good ones behind it; during an outage no message can be
//!   handled, whatever is done with the current one, and consumption resumes by itself
//!   when the database returns. Lag shows the wait.
//! - The DLT write fails (broker down): the offset is not committed and the write is
//!   retried; a message is never dropped.
//!
//! Shutdown during a retry leaves the message uncommitted; it is redelivered on restart.

pub mod kafka;
pub mod state;
pub mod watchdog;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kit::backoff::Backoff;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use futures::FutureExt;

use crate::email::{self, Email, Origin};
use crate::store::{NotificationStore, Stored};
use kafka::{DeadLetters, OrderConsumer};
use state::{ConsumerState, DeadLetterReason};
use watchdog::{BrokerView, Observation, Verdict, Watchdog};

/// Makes a new Kafka consumer (the first one, and each rebuild).
pub type ConsumerFactory =
    Box<dyn Fn() -> rdkafka::error::KafkaResult<OrderConsumer> + Send + Sync + 'static>;

/// How long closing a consumer (leaving the group, final commit) may block a rebuild before
/// it is left to finish on its own: a broker that does not answer would hold it for minutes.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The consumer's settings (from the service's [`crate::Config`]).
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub topic: String,
    /// Handling attempts of one message before it is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Ceiling of the first wait between attempts; doubles each time up to
    /// `retry_backoff_max` (each wait is drawn below it: `kit::backoff`).
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// How often the lag is measured for `/metrics` and the watchdog looks at the consumer.
    pub lag_interval: Duration,
    /// How long the consumer may stay stuck before it is rebuilt (see [`watchdog`]).
    pub stall_timeout: Duration,
    /// Most messages handled (and stored in one transaction) at once.
    pub batch_size: usize,
}

/// A received message with its origin and its processing span (a child of the
/// publisher's trace when the message carries one).
struct Received {
    message: OwnedMessage,
    origin: Origin,
    span: tracing::Span,
}

impl Received {
    fn new(message: OwnedMessage) -> Received {
        let origin = Origin {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
        };
        let span = tracing::info_span!(
            "order-placed process",
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.destination.name = origin.topic.as_str(),
            messaging.kafka.partition = origin.partition,
            messaging.kafka.offset = origin.offset,
            order_number = tracing::field::Empty,
            event_id = tracing::field::Empty,
        );
        kit::telemetry::set_parent(
            &span,
            kit::telemetry::context_from_map(&kafka::text_headers(&message)),
        );
        Received {
            message,
            origin,
            span,
        }
    }
}

/// Shutdown arrived while a message was still unhandled: it stays uncommitted.
#[derive(Debug)]
struct Stopped;

/// The consumer loop and what it needs.
pub struct Worker {
    /// The current consumer; only this worker holds it, so dropping it closes it (leaving
    /// the group). Replaced by a new one when the watchdog asks for a rebuild.
    consumer: Arc<OrderConsumer>,
    factory: ConsumerFactory,
    /// Reads topic metadata from the broker (shared with the [`Monitor`]).
    broker: Arc<kafka_lag::BrokerClient>,
    /// Rebuild requests from the [`Monitor`], with their reason.
    rebuilds: tokio::sync::mpsc::Receiver<String>,
    dead_letters: DeadLetters,
    store: NotificationStore,
    state: Arc<ConsumerState>,
    options: ConsumerOptions,
    shutdown: CancellationToken,
    /// Next offset to commit per partition, for the final synchronous commit at shutdown.
    handled: HashMap<(String, i32), i64>,
}

impl Worker {
    /// Builds the first consumer with `factory` (a configuration error fails here, at start).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        factory: ConsumerFactory,
        broker: Arc<kafka_lag::BrokerClient>,
        rebuilds: tokio::sync::mpsc::Receiver<String>,
        dead_letters: DeadLetters,
        store: NotificationStore,
        state: Arc<ConsumerState>,
        options: ConsumerOptions,
        shutdown: CancellationToken,
    ) -> rdkafka::error::KafkaResult<Worker> {
        Ok(Worker {
            consumer: Arc::new(factory()?),
            factory,
            broker,
            rebuilds,
            dead_letters,
            store,
            state,
            options,
            shutdown,
            handled: HashMap::new(),
        })
    }

    /// Migrates the schema (waiting for the database), subscribes, then handles messages
    /// in batches until shutdown; finally commits synchronously and closes the consumer.
    pub async fn run(mut self) {
        if self.prepare().await.is_err() {
            self.close().await;
            return;
        }
        loop {
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                Some(reason) = self.rebuilds.recv() => {
                    self.rebuild(&reason).await;
                    continue;
                }
                m = self.consumer.recv() => m.map(|m| m.detach()),
            };
            let mut batch = Vec::new();
            match first {
                Ok(m) => batch.push(Received::new(m)),
                Err(e) => {
                    tracing::warn!(error = %e, "receiving from Kafka failed");
                    continue;
                }
            }
            // Whatever else has already arrived joins the batch; nothing waits for it.
            while batch.len() < self.options.batch_size {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(Received::new(m.detach())),
                    Some(Err(e)) => tracing::warn!(error = %e, "receiving from Kafka failed"),
                    None => break,
                }
            }
            self.state
                .received
                .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.state.set_busy(true);
            let handled = self.handle_batch(&batch).await;
            self.state.set_busy(false);
            match handled {
                Ok(()) => self.commit(&batch),
                Err(Stopped) => break,
            }
        }
        self.close().await;
    }

    /// Replaces the consumer with a new one: what was handled is committed and the old one
    /// closed (it leaves the group, so the new member's join starts a new generation), then
    /// the new one subscribes. Messages handled but not committed are redelivered and
    /// deduplicated, as after any restart.
    async fn rebuild(&mut self, reason: &str) {
        tracing::warn!(reason, group = %self.state.group, "rebuilding the Kafka consumer");
        let fresh = match (self.factory)() {
            Ok(c) => Arc::new(c),
            Err(e) => {
                // Only a configuration error fails here, and the first consumer was built with
                // the same settings: keep the old one and let the watchdog ask again.
                tracing::error!(error = %e, "cannot create a new Kafka consumer; keeping the old one");
                return;
            }
        };
        let old = std::mem::replace(&mut self.consumer, fresh);
        let last = self.last_commits();
        self.handled.clear();
        self.state.clear_assignment();
        let closing = tokio::task::spawn_blocking(move || close_consumer(old, last));
        if tokio::time::timeout(CLOSE_WAIT, closing).await.is_err() {
            tracing::warn!("the old consumer is still closing; going on without it");
        }
        if let Err(e) = self.consumer.subscribe(&[self.options.topic.as_str()]) {
            tracing::error!(error = %e, topic = %self.options.topic, "cannot subscribe the new consumer");
        }
        self.state.rebuilt(reason);
        tracing::info!(group = %self.state.group, "Kafka consumer rebuilt; joining the group");
    }

    /// Offsets handled on the partitions still assigned, for a final commit.
    fn last_commits(&self) -> Vec<(String, i32, i64)> {
        let assigned = self.state.assignment().unwrap_or_default();
        self.handled
            .iter()
            .filter(|(tp, _)| assigned.contains(tp))
            .map(|((t, p), next)| (t.clone(), *p, *next))
            .collect()
    }

    /// Runs the migrations (retrying while the database is unreachable), makes sure the
    /// dead-letter topic exists and subscribes.
    async fn prepare(&mut self) -> Result<(), Stopped> {
        let mut backoff = Backoff::new(self.options.retry_backoff, self.options.retry_backoff_max);
        loop {
            match self.store.migrate().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot migrate the notifications schema yet; retrying");
                    self.state.set_waiting_for_db(Some(e.to_string()));
                    self.pause(backoff.next_wait()).await?;
                }
            }
        }
        self.state.set_waiting_for_db(None);
        // The DLT gets as many partitions as the source, so dead letters keep their key's
        // partition order. Failure is not fatal: the first dead letter tries again.
        let partitions = match self.broker.topic(&self.options.topic).await {
            Ok(t) if !t.partitions.is_empty() => t.partitions.len() as i32,
            _ => 1,
        };
        if let Err(e) = self.dead_letters.ensure_topic(partitions).await {
            tracing::warn!(error = %e, topic = self.dead_letters.topic(), "cannot create the dead-letter topic yet");
        }
        if let Err(e) = self.consumer.subscribe(&[self.options.topic.as_str()]) {
            // Only an invalid topic name fails here; configuration validation prevents it.
            tracing::error!(error = %e, topic = %self.options.topic, "cannot subscribe");
            return Err(Stopped);
        }
        tracing::info!(topic = %self.options.topic, group = %self.state.group, "consuming");
        Ok(())
    }

    /// Handles a batch: dead-letters what cannot be decoded, stores the notifications of
    /// the rest in one transaction, and falls back to one message at a time when that
    /// transaction fails for another reason than an outage, so a failing message gets its
    /// own attempts and the others are not held back. `Err(Stopped)` only at shutdown.
    async fn handle_batch(&self, batch: &[Received]) -> Result<(), Stopped> {
        let mut pending: Vec<(&Received, Email)> = Vec::with_capacity(batch.len());
        for r in batch {
            let payload = r.message.payload().unwrap_or_default();
            match events::decode(payload) {
                Ok(event) => {
                    r.span.record("order_number", event.order_number.as_str());
                    // As `&str`: a `Display` field costs a `format!` in the OpenTelemetry layer.
                    let mut id = uuid::Uuid::encode_buffer();
                    r.span.record(
                        "event_id",
                        &*event.event_id.hyphenated().encode_lower(&mut id),
                    );
                    pending.push((r, email::render(&event, r.origin.clone())));
                }
                Err(e) => {
                    r.span.in_scope(
                        || tracing::warn!(error = %e, "undecodable message; dead-lettering it"),
                    );
                    self.dead_letter(r, &e.to_string(), 1, DeadLetterReason::Undecodable)
                        .instrument(r.span.clone())
                        .await?;
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        let emails: Vec<&Email> = pending.iter().map(|(_, e)| e).collect();
        let traces: Vec<tracing::Span> = pending.iter().map(|(r, _)| r.span.clone()).collect();
        let mut backoff = Backoff::new(self.options.retry_backoff, self.options.retry_backoff_max);
        let first_failure = loop {
            match self.store.insert_batch(&emails, &traces).await {
                Ok(results) => {
                    self.state.set_waiting_for_db(None);
                    for ((r, email), stored) in pending.iter().zip(results) {
                        r.span.in_scope(|| self.notified(email, stored));
                    }
                    return Ok(());
                }
                Err(e) if e.is_outage() => self.wait_for_database(&e, &mut backoff).await?,
                Err(e) => break e,
            }
        };
        if let [(r, email)] = pending.as_slice() {
            // One message: that failure was its first attempt.
            return self
                .store_one(r, email, 1, first_failure.to_string())
                .instrument(r.span.clone())
                .await;
        }
        tracing::warn!(error = %first_failure, size = pending.len(), "batch failed; handling its messages one by one");
        for (r, email) in &pending {
            self.store_one(r, email, 0, String::new())
                .instrument(r.span.clone())
                .await?;
        }
        Ok(())
    }

    /// Stores one message's notification, with up to `--max-attempts` attempts (`failures`
    /// already made, the last failing with `last_error`), then dead-letters it.
    async fn store_one(
        &self,
        r: &Received,
        email: &Email,
        mut failures: u32,
        mut last_error: String,
    ) -> Result<(), Stopped> {
        let mut backoff = Backoff::new(self.options.retry_backoff, self.options.retry_backoff_max);
        loop {
            if failures >= self.options.max_attempts {
                tracing::warn!(error = %last_error, attempts = failures, "handling failed too often; dead-lettering");
                return self
                    .dead_letter(
                        r,
                        &format!("handling failed: {last_error}"),
                        failures,
                        DeadLetterReason::Failed,
                    )
                    .await;
            }
            if failures > 0 {
                ConsumerState::count(&self.state.retries);
                let wait = backoff.next_wait();
                tracing::warn!(error = %last_error, attempts = failures, ?wait, "handling failed; retrying");
                self.pause(wait).await?;
            }
            match self.store.insert(email).await {
                Ok(stored) => {
                    self.state.set_waiting_for_db(None);
                    self.notified(email, stored);
                    return Ok(());
                }
                // Not this message's fault: wait for the database, attempts unchanged.
                Err(e) if e.is_outage() => self.wait_for_database(&e, &mut backoff).await?,
                Err(e) => {
                    failures += 1;
                    last_error = e.to_string();
                }
            }
        }
    }

    /// Counts and logs a stored (sent) or duplicate notification.
    fn notified(&self, email: &Email, stored: Stored) {
        match stored {
            Stored::New => {
                ConsumerState::count(&self.state.sent);
                tracing::info!(
                    to = email.recipient.as_deref().unwrap_or("(no address)"),
                    customer = %email.customer_id,
                    subject = %email.subject,
                    body = %email.body,
                    "notification sent"
                );
            }
            Stored::Duplicate => {
                ConsumerState::count(&self.state.duplicates);
                tracing::info!("event already notified; duplicate skipped");
            }
        }
    }

    /// Records an outage and waits before the next try.
    async fn wait_for_database(
        &self,
        error: &crate::store::StoreError,
        backoff: &mut Backoff,
    ) -> Result<(), Stopped> {
        ConsumerState::count(&self.state.retries);
        let wait = backoff.next_wait();
        tracing::warn!(%error, ?wait, "notifications database unavailable; waiting");
        self.state.set_waiting_for_db(Some(error.to_string()));
        self.pause(wait).await
    }

    /// Writes the message to the DLT, retrying until the broker acknowledges it.
    async fn dead_letter(
        &self,
        r: &Received,
        error: &str,
        attempts: u32,
        reason: DeadLetterReason,
    ) -> Result<(), Stopped> {
        let mut backoff = Backoff::new(self.options.retry_backoff, self.options.retry_backoff_max);
        loop {
            match self
                .dead_letters
                .send(&r.message, &r.origin, error, attempts)
                .await
            {
                Ok((partition, offset)) => {
                    self.state.dead_lettered(reason);
                    tracing::warn!(
                        reason = reason.as_str(),
                        dlt = self.dead_letters.topic(),
                        dlt_partition = partition,
                        dlt_offset = offset,
                        error,
                        "message dead-lettered"
                    );
                    return Ok(());
                }
                Err(e) => {
                    ConsumerState::count(&self.state.retries);
                    let wait = backoff.next_wait();
                    tracing::error!(error = %e, ?wait, "cannot write the dead letter; the message stays uncommitted");
                    self.pause(wait).await?;
                }
            }
        }
    }

    /// Commits past the batch, per partition, without waiting for the broker (a lost commit
    /// only means a deduplicated redelivery).
    fn commit(&mut self, batch: &[Received]) {
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        for r in batch {
            ConsumerState::count(&self.state.handled);
            let key = (r.origin.topic.clone(), r.origin.partition);
            let offset = next.entry(key).or_insert(0);
            *offset = (*offset).max(r.origin.offset + 1);
        }
        let offsets: Vec<(&str, i32, i64)> = next
            .iter()
            .map(|((t, p), o)| (t.as_str(), *p, *o))
            .collect();
        if let Err(e) = kafka::commit(&self.consumer, &offsets, false) {
            ConsumerState::count(&self.state.commit_failures);
            tracing::warn!(error = %e, "offset commit could not be queued");
        }
        self.handled.extend(next);
    }

    /// Waits `wait`, or returns `Stopped` at shutdown.
    async fn pause(&self, wait: Duration) -> Result<(), Stopped> {
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = self.shutdown.cancelled() => Err(Stopped),
        }
    }

    /// Commits what was handled on the partitions still assigned, synchronously, then
    /// closes the consumer (leaving the group) on the blocking pool.
    async fn close(self) {
        let last = self.last_commits();
        let consumer = self.consumer;
        let closed = tokio::task::spawn_blocking(move || close_consumer(consumer, last)).await;
        if let Err(e) = closed {
            tracing::warn!(error = %e, "closing the consumer failed");
        }
        tracing::info!("consumer stopped");
    }
}

/// Commits `last` synchronously (best effort), then drops the consumer, which closes it: it
/// leaves the group, so its partitions move to another member at once. Blocking.
fn close_consumer(consumer: Arc<OrderConsumer>, last: Vec<(String, i32, i64)>) {
    if !last.is_empty() {
        let refs: Vec<(&str, i32, i64)> =
            last.iter().map(|(t, p, o)| (t.as_str(), *p, *o)).collect();
        if let Err(e) = kafka::commit(&consumer, &refs, true) {
            tracing::warn!(error = %e, "final offset commit failed; the last messages will be redelivered and deduplicated");
        }
    }
    drop(consumer);
}

/// Measures the group's lag from the broker (for `/metrics`, `/admin/consumer` and readiness)
/// and runs the [`watchdog`], asking the worker for a rebuild when the consumer is stuck.
#[derive(Clone, Debug)]
pub struct Monitor {
    /// Reads from the broker itself (kafka-lag), independent of the consumer it judges.
    broker: Arc<kafka_lag::BrokerClient>,
    /// Where measurements and verdicts are stored for `/metrics` and `/admin/consumer`.
    state: Arc<ConsumerState>,
}

impl Monitor {
    pub fn new(broker: Arc<kafka_lag::BrokerClient>, state: Arc<ConsumerState>) -> Monitor {
        Monitor { broker, state }
    }

    /// The broker client (shared with the worker's topic look-ups).
    pub fn broker(&self) -> &Arc<kafka_lag::BrokerClient> {
        &self.broker
    }

    /// Measures now and stores the result in the state; returns the broker's view for the
    /// watchdog, or why it could not be read.
    pub async fn refresh(&self) -> Result<BrokerView, String> {
        let topic = self.state.topic.as_str();
        match self.broker.group_lag(&self.state.group, &[topic]).await {
            Ok(lag) => {
                self.state.set_lag(&lag);
                let own: Vec<i32> = self
                    .state
                    .assignment()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(t, _)| t == topic)
                    .map(|(_, p)| p)
                    .collect();
                let on_topic = lag.partitions.iter().filter(|p| p.topic == topic);
                Ok(BrokerView {
                    partitions: on_topic.clone().count(),
                    topic_lag: on_topic.clone().map(|p| p.lag).sum(),
                    committed: on_topic.clone().filter_map(|p| p.committed).sum(),
                    own_lag: on_topic
                        .filter(|p| own.contains(&p.partition))
                        .map(|p| p.lag)
                        .sum(),
                })
            }
            Err(e) => {
                let why = e.to_string();
                self.state.set_lag_error(why.clone());
                Err(why)
            }
        }
    }

    /// Measures and judges every `interval` until shutdown; a verdict of rebuild is sent to
    /// the worker over `rebuilds`.
    pub async fn run(
        self,
        interval: Duration,
        stall: Duration,
        rebuilds: tokio::sync::mpsc::Sender<String>,
        shutdown: CancellationToken,
    ) {
        let mut watchdog = Watchdog::new(stall, Instant::now());
        let mut last_status = "ok";
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let broker = self.refresh().await;
            let assignment = self.state.assignment();
            let observation = Observation {
                now: Instant::now(),
                joined: assignment.is_some(),
                assigned: assignment
                    .unwrap_or_default()
                    .iter()
                    .filter(|(t, _)| *t == self.state.topic)
                    .count(),
                broker,
                received: self
                    .state
                    .received
                    .load(std::sync::atomic::Ordering::Relaxed),
                busy: self.state.is_busy(),
            };
            let verdict = watchdog.observe(&observation);
            if verdict.status() != last_status {
                match &verdict {
                    Verdict::Suspect(reason) => {
                        tracing::warn!(reason, "the Kafka consumer looks stuck")
                    }
                    Verdict::Unreachable(reason) => {
                        tracing::warn!(reason, "the broker does not answer")
                    }
                    Verdict::Ok => tracing::info!("the Kafka consumer works again"),
                    Verdict::Rebuild(_) => {}
                }
                last_status = verdict.status();
            }
            self.state.set_health(verdict.status(), verdict.reason());
            if let Verdict::Rebuild(reason) = verdict
                && rebuilds.try_send(reason).is_ok()
            {
                watchdog.rebuilt(Instant::now());
            }
        }
    }

    /// Readiness of the Kafka side: the group was joined, the broker answers, and the
    /// watchdog finds nothing wrong.
    pub async fn check(&self) -> Result<(), String> {
        if self.state.assignment().is_none() {
            return Err(format!(
                "not yet a member of consumer group {}",
                self.state.group
            ));
        }
        if let Some(error) = self.state.lag().error {
            return Err(format!("broker unreachable: {error}"));
        }
        let health = self.state.health();
        match health.status.as_str() {
            "ok" => Ok(()),
            status => Err(format!(
                "consumer {status} since {}: {}",
                health.since.to_rfc3339(),
                health.reason.unwrap_or_default()
            )),
        }
    }
}
