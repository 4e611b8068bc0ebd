//! Topics, their partitions (log + idempotent-producer state + append notification) and the
//! committed offsets of consumer groups, all under one data directory:
//!
//! ```text
//! <data>/topics.json            name -> {id, partitions}, rewritten atomically on create/delete
//! <data>/offsets.json           group -> topic -> partition -> {offset, metadata}, same
//! <data>/logs/<topic>-<n>/      one partition's segments (see crate::log)
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::batch::{self, BatchHeader};
use crate::log::{LogOptions, PartitionLog};

/// The idempotent producer's dedupe window: Kafka keeps the last five batches per producer and
/// partition (`max.in.flight.requests.per.connection` is at most 5 with idempotence).
const PRODUCER_WINDOW: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

#[derive(Debug, Default)]
struct ProducerBatches {
    epoch: i16,
    /// (first sequence, last sequence, base offset), oldest first.
    batches: VecDeque<(i32, i32, i64)>,
}

/// A partition's mutable state, under one lock so that dedupe and append are atomic.
#[derive(Debug)]
pub struct PartitionState {
    pub log: PartitionLog,
    producers: HashMap<i64, ProducerBatches>,
}

/// One partition.
#[derive(Debug)]
pub struct Partition {
    pub index: i32,
    pub state: Mutex<PartitionState>,
    /// Woken (notify_waiters) after every append: long-polling fetches wait on it.
    pub appended: Notify,
}

/// One topic.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: Vec<Arc<Partition>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TopicMeta {
    id: uuid::Uuid,
    partitions: i32,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    #[serde(default)]
    pub metadata: Option<String>,
}

type Offsets = BTreeMap<String, BTreeMap<String, BTreeMap<i32, Committed>>>;

/// Why an append was refused (a Kafka error code for the producer).
pub type AppendError = ResponseError;

/// The broker's storage.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    opts: LogOptions,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    offsets: Mutex<Offsets>,
    next_producer_id: AtomicI64,
}

/// A legal topic name (Kafka's rule: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`).
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("syncing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

impl Store {
    /// Opens the data directory, recovering every partition's log.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir.join("logs"))
            .map_err(io(format!("creating {}", dir.display())))?;
        let metas: BTreeMap<String, TopicMeta> = read_json(&dir.join("topics.json"))?;
        let offsets: Offsets = read_json(&dir.join("offsets.json"))?;
        let store = Store {
            dir: dir.to_path_buf(),
            opts,
            topics: RwLock::new(BTreeMap::new()),
            offsets: Mutex::new(offsets),
            // Unique across restarts without persisting: a millisecond clock, then a counter.
            next_producer_id: AtomicI64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_millis() as i64),
            ),
        };
        for (name, meta) in metas {
            let topic = store.open_topic(&name, meta.id, meta.partitions)?;
            store.topics.write().insert(name, topic);
        }
        Ok(store)
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.dir.join("logs").join(format!("{topic}-{index}"))
    }

    fn open_topic(&self, name: &str, id: uuid::Uuid, count: i32) -> Result<Arc<Topic>, StoreError> {
        let mut partitions = Vec::with_capacity(count.max(0) as usize);
        for index in 0..count {
            let dir = self.partition_dir(name, index);
            let (log, recovered) = PartitionLog::open(&dir, self.opts)
                .map_err(io(format!("opening {}", dir.display())))?;
            let mut producers: HashMap<i64, ProducerBatches> = HashMap::new();
            for h in recovered.iter().filter(|h| h.producer_id >= 0) {
                let p = producers.entry(h.producer_id).or_default();
                if h.producer_epoch != p.epoch {
                    p.batches.clear();
                    p.epoch = h.producer_epoch;
                }
                p.batches
                    .push_back((h.base_sequence, h.last_sequence(), h.base_offset));
                if p.batches.len() > PRODUCER_WINDOW {
                    p.batches.pop_front();
                }
            }
            partitions.push(Arc::new(Partition {
                index,
                state: Mutex::new(PartitionState { log, producers }),
                appended: Notify::new(),
            }));
        }
        Ok(Arc::new(Topic {
            name: name.to_string(),
            id,
            partitions,
        }))
    }

    fn save_topics(&self, topics: &BTreeMap<String, Arc<Topic>>) -> Result<(), StoreError> {
        let metas: BTreeMap<&String, TopicMeta> = topics
            .iter()
            .map(|(n, t)| {
                (
                    n,
                    TopicMeta {
                        id: t.id,
                        partitions: t.partitions.len() as i32,
                    },
                )
            })
            .collect();
        let bytes = serde_json::to_vec_pretty(&metas).map_err(|source| StoreError::Json {
            path: self.dir.join("topics.json"),
            source,
        })?;
        write_atomically(&self.dir.join("topics.json"), &bytes)
    }

    /// The topic, if it exists.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// Creates a topic; `Ok(None)` when it already exists.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
    ) -> Result<Option<Arc<Topic>>, StoreError> {
        let mut topics = self.topics.write();
        if topics.contains_key(name) {
            return Ok(None);
        }
        // Leftovers of a deleted topic with this name must not come back.
        for index in 0..partitions {
            let _ = std::fs::remove_dir_all(self.partition_dir(name, index));
        }
        let topic = self.open_topic(name, uuid::Uuid::new_v4(), partitions)?;
        topics.insert(name.to_string(), topic.clone());
        self.save_topics(&topics)?;
        tracing::info!(topic = name, partitions, "topic created");
        Ok(Some(topic))
    }

    /// Deletes a topic, its logs and its committed offsets; false when it does not exist.
    pub fn delete_topic(&self, name: &str) -> Result<bool, StoreError> {
        let mut topics = self.topics.write();
        let Some(topic) = topics.remove(name) else {
            return Ok(false);
        };
        self.save_topics(&topics)?;
        drop(topics);
        for p in &topic.partitions {
            // Wake waiting fetches: they will find the topic gone.
            p.appended.notify_waiters();
            let dir = self.partition_dir(name, p.index);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted topic's log");
            }
        }
        let mut offsets = self.offsets.lock();
        for group in offsets.values_mut() {
            group.remove(name);
        }
        self.save_offsets(&offsets)?;
        tracing::info!(topic = name, "topic deleted");
        Ok(true)
    }

    /// Appends one produce request's batches to a partition, applying the idempotent producer's
    /// sequence rules. Returns the base offset of the first batch (for a duplicate: its original).
    pub fn append(&self, partition: &Partition, records: &[u8]) -> Result<i64, AppendError> {
        let batches = batch::split(records).map_err(|e| {
            tracing::warn!(error = %e, "refusing a produced record batch");
            match e {
                batch::BatchError::Crc { .. } => ResponseError::CorruptMessage,
                _ => ResponseError::InvalidRecord,
            }
        })?;
        // Produce v3+ carries exactly one batch per partition.
        let [(header, raw)] = batches.as_slice() else {
            return Err(ResponseError::InvalidRecord);
        };
        if batch::is_transactional_or_control(header) {
            return Err(ResponseError::InvalidRecord);
        }
        let mut state = partition.state.lock();
        if header.producer_id >= 0
            && let Some(dup) = check_sequence(&state.producers, header)?
        {
            return Ok(dup);
        }
        let base = state.log.append(header, raw).map_err(|e| {
            tracing::error!(dir = %state.log.dir().display(), error = %e, "append failed");
            ResponseError::KafkaStorageError
        })?;
        if header.producer_id >= 0 {
            let p = state.producers.entry(header.producer_id).or_default();
            if p.epoch != header.producer_epoch {
                p.epoch = header.producer_epoch;
                p.batches.clear();
            }
            p.batches
                .push_back((header.base_sequence, header.last_sequence(), base));
            if p.batches.len() > PRODUCER_WINDOW {
                p.batches.pop_front();
            }
        }
        drop(state);
        partition.appended.notify_waiters();
        Ok(base)
    }

    /// A new producer id for InitProducerId.
    pub fn new_producer_id(&self) -> i64 {
        self.next_producer_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Forces every partition's pending appends to disk (the interval fsync policy).
    pub fn flush_all(&self) {
        for topic in self.topics() {
            for p in &topic.partitions {
                let mut state = p.state.lock();
                if let Err(e) = state.log.flush() {
                    tracing::error!(dir = %state.log.dir().display(), error = %e, "fsync failed");
                }
            }
        }
    }

    fn save_offsets(&self, offsets: &Offsets) -> Result<(), StoreError> {
        let path = self.dir.join("offsets.json");
        let bytes = serde_json::to_vec(offsets).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomically(&path, &bytes)
    }

    /// Stores committed offsets of `group`: (topic, partition, offset, metadata).
    pub fn commit(
        &self,
        group: &str,
        commits: &[(String, i32, Committed)],
    ) -> Result<(), StoreError> {
        let mut offsets = self.offsets.lock();
        let g = offsets.entry(group.to_string()).or_default();
        for (topic, partition, c) in commits {
            g.entry(topic.clone())
                .or_default()
                .insert(*partition, c.clone());
        }
        self.save_offsets(&offsets)
    }

    /// A group's committed offset for one partition.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        self.offsets
            .lock()
            .get(group)?
            .get(topic)?
            .get(&partition)
            .cloned()
    }

    /// Every committed offset of a group: topic -> partition -> offset.
    pub fn committed_all(&self, group: &str) -> BTreeMap<String, BTreeMap<i32, Committed>> {
        self.offsets.lock().get(group).cloned().unwrap_or_default()
    }

    /// Groups that have committed offsets.
    pub fn groups_with_offsets(&self) -> Vec<String> {
        self.offsets.lock().keys().cloned().collect()
    }

    /// Reads from a partition (see [`PartitionLog::read`]): (records, high watermark, log start).
    pub fn read(
        partition: &Partition,
        offset: i64,
        max_bytes: usize,
    ) -> std::io::Result<(Bytes, i64, i64)> {
        let state = partition.state.lock();
        let records = state.log.read(offset, max_bytes)?;
        Ok((records, state.log.next_offset(), state.log.start_offset()))
    }
}

/// The idempotent producer's rules for one batch: `Ok(Some(offset))` for a duplicate of one of
/// the last five batches (acknowledged with its original offset), `Ok(None)` to append, an error
/// for a stale epoch or a sequence gap.
fn check_sequence(
    producers: &HashMap<i64, ProducerBatches>,
    h: &BatchHeader,
) -> Result<Option<i64>, AppendError> {
    let Some(p) = producers.get(&h.producer_id) else {
        // Unknown producer (new, or its state predates the active segment): accept.
        return Ok(None);
    };
    if h.producer_epoch < p.epoch {
        return Err(ResponseError::InvalidProducerEpoch);
    }
    if h.producer_epoch > p.epoch {
        return if h.base_sequence == 0 {
            Ok(None)
        } else {
            Err(ResponseError::OutOfOrderSequenceNumber)
        };
    }
    if let Some((_, _, offset)) = p
        .batches
        .iter()
        .find(|(first, last, _)| *first == h.base_sequence && *last == h.last_sequence())
    {
        return Ok(Some(*offset));
    }
    match p.batches.back() {
        Some((_, last, _)) if batch::add_sequence(*last, 1) != h.base_sequence => {
            Err(ResponseError::OutOfOrderSequenceNumber)
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::batch;

    fn store(dir: &Path) -> Store {
        Store::open(dir, LogOptions::default()).unwrap()
    }

    #[test]
    fn idempotent_producer_dedupes_retries_and_refuses_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let t = s.create_topic("t", 1).unwrap().unwrap();
        let p = &t.partitions[0];
        assert_eq!(s.append(p, &batch(9, 0, 2, 1)).unwrap(), 0);
        assert_eq!(s.append(p, &batch(9, 2, 3, 1)).unwrap(), 2);
        // A retry of the first batch: its original offset, nothing appended.
        assert_eq!(s.append(p, &batch(9, 0, 2, 1)).unwrap(), 0);
        assert_eq!(p.state.lock().log.next_offset(), 5);
        // A gap.
        assert_eq!(
            s.append(p, &batch(9, 9, 1, 1)).unwrap_err(),
            ResponseError::OutOfOrderSequenceNumber
        );
        // Non-idempotent batches are never deduped.
        assert_eq!(s.append(p, &batch(-1, -1, 1, 1)).unwrap(), 5);
        assert_eq!(s.append(p, &batch(-1, -1, 1, 1)).unwrap(), 6);
        // Garbage.
        assert!(s.append(p, b"not a batch at all").is_err());
        // The producer state comes back after a restart.
        drop((t, s));
        let s = store(dir.path());
        let t = s.topic("t").unwrap();
        assert_eq!(s.append(&t.partitions[0], &batch(9, 2, 3, 1)).unwrap(), 2);
        assert_eq!(s.append(&t.partitions[0], &batch(9, 5, 1, 1)).unwrap(), 7);
    }

    #[test]
    fn topics_and_offsets_persist_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = store(dir.path());
            assert!(s.create_topic("a", 3).unwrap().is_some());
            assert!(s.create_topic("a", 3).unwrap().is_none());
            s.commit(
                "g",
                &[(
                    "a".into(),
                    1,
                    Committed {
                        offset: 7,
                        metadata: None,
                    },
                )],
            )
            .unwrap();
        }
        let s = store(dir.path());
        assert_eq!(s.topic("a").unwrap().partitions.len(), 3);
        assert_eq!(s.committed("g", "a", 1).unwrap().offset, 7);
        assert!(s.delete_topic("a").unwrap());
        assert!(!s.delete_topic("a").unwrap());
        assert!(s.committed("g", "a", 1).is_none());
        assert!(s.topic("a").is_none());
    }

    #[test]
    fn topic_names() {
        assert!(valid_topic_name("order-placed"));
        assert!(valid_topic_name("a.b_c-1"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name(".."));
        assert!(!valid_topic_name("a/b"));
        assert!(!valid_topic_name(&"x".repeat(250)));
    }
}
