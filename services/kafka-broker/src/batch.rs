//! Record batches (magic v2) as they travel on the wire and sit in segment files.
//!
//! The broker never decodes records: it checks the 61-byte batch header, the length and the
//! CRC-32C, reads what it needs (last offset delta, timestamps, producer id, epoch and sequence)
//! and rewrites two header fields on append: `baseOffset` and `partitionLeaderEpoch`. Neither is
//! covered by the CRC, which starts at `attributes`.

use bytes::{Bytes, BytesMut};

/// Bytes before the batch's `batchLength` counts: baseOffset (8) and batchLength (4).
pub const LOG_OVERHEAD: usize = 12;
/// The fixed header of a v2 batch, up to and including the record count.
pub const HEADER_LEN: usize = 61;

const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

/// Why bytes are not a record batch this broker stores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{0} bytes cannot hold a record batch header ({HEADER_LEN} bytes)")]
    TooShort(usize),
    #[error("batch length {length} does not match the {available} bytes available")]
    BadLength { length: i64, available: usize },
    #[error("record batch magic {0} is not supported (only v2)")]
    Magic(i8),
    #[error("record batch CRC mismatch (header {header:#010x}, computed {computed:#010x})")]
    Crc { header: u32, computed: u32 },
    #[error("negative last offset delta {0} or record count {1}")]
    Counts(i32, i32),
    #[error("transactional and control batches are not supported")]
    Transactional,
}

/// The header fields of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the first 12 (the whole batch is `batch_length + 12`).
    pub batch_length: i32,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
    pub attributes: i16,
}

impl BatchHeader {
    /// The whole batch's size in bytes.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The sequence of the batch's last record (sequences wrap at `i32::MAX`).
    pub fn last_sequence(&self) -> i32 {
        add_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `seq + n` with Kafka's wrap-around at `i32::MAX`.
pub fn add_sequence(seq: i32, n: i32) -> i32 {
    let sum = i64::from(seq) + i64::from(n);
    if sum > i64::from(i32::MAX) {
        (sum - i64::from(i32::MAX) - 1) as i32
    } else {
        sum as i32
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// Reads a header from the first [`HEADER_LEN`] bytes without checking the CRC (the segment
/// scanner's fast path; [`validate`] checks everything).
pub fn parse_header(b: &[u8]) -> Result<BatchHeader, BatchError> {
    if b.len() < HEADER_LEN {
        return Err(BatchError::TooShort(b.len()));
    }
    let magic = b[MAGIC] as i8;
    if magic != 2 {
        return Err(BatchError::Magic(magic));
    }
    let batch_length = i32_at(b, 8);
    if (batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
        return Err(BatchError::BadLength {
            length: batch_length.into(),
            available: b.len(),
        });
    }
    let header = BatchHeader {
        base_offset: i64_at(b, 0),
        batch_length,
        last_offset_delta: i32_at(b, LAST_OFFSET_DELTA),
        base_timestamp: i64_at(b, BASE_TIMESTAMP),
        max_timestamp: i64_at(b, MAX_TIMESTAMP),
        producer_id: i64_at(b, PRODUCER_ID),
        producer_epoch: i16_at(b, PRODUCER_EPOCH),
        base_sequence: i32_at(b, BASE_SEQUENCE),
        record_count: i32_at(b, RECORD_COUNT),
        attributes: i16_at(b, ATTRIBUTES),
    };
    if header.last_offset_delta < 0 || header.record_count < 0 {
        return Err(BatchError::Counts(
            header.last_offset_delta,
            header.record_count,
        ));
    }
    Ok(header)
}

/// Checks that `b` is exactly one whole batch with a correct CRC and returns its header.
pub fn validate(b: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(b)?;
    if header.total_len() != b.len() {
        return Err(BatchError::BadLength {
            length: header.batch_length.into(),
            available: b.len() - LOG_OVERHEAD.min(b.len()),
        });
    }
    let stored = u32::from_be_bytes(b[CRC..CRC + 4].try_into().unwrap_or([0; 4]));
    let computed = crc32c::crc32c(&b[ATTRIBUTES..]);
    if stored != computed {
        return Err(BatchError::Crc {
            header: stored,
            computed,
        });
    }
    Ok(header)
}

/// Splits a produce request's `records` into whole validated batches.
pub fn split(mut records: &[u8]) -> Result<Vec<(BatchHeader, &[u8])>, BatchError> {
    let mut out = Vec::new();
    while !records.is_empty() {
        let header = parse_header(records)?;
        let len = header.total_len();
        if len > records.len() {
            return Err(BatchError::BadLength {
                length: header.batch_length.into(),
                available: records.len() - LOG_OVERHEAD,
            });
        }
        let (one, rest) = records.split_at(len);
        out.push((validate(one)?, one));
        records = rest;
    }
    Ok(out)
}

/// Whether the batch is transactional (bit 4) or a control batch (bit 5).
pub fn is_transactional_or_control(header: &BatchHeader) -> bool {
    header.attributes & 0x30 != 0
}

/// A copy of `batch` with `baseOffset` and `partitionLeaderEpoch` rewritten (the CRC stays valid).
pub fn with_offset(batch: &[u8], base_offset: i64, leader_epoch: i32) -> Bytes {
    let mut out = BytesMut::from(batch);
    out[0..8].copy_from_slice(&base_offset.to_be_bytes());
    out[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
    out.freeze()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid batch of `count` records (record bodies are opaque to the broker: filler bytes).
    pub(crate) fn batch(producer_id: i64, base_sequence: i32, count: i32, ts: i64) -> Vec<u8> {
        let body = vec![0xabu8; 10 * count.max(1) as usize];
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        let len = (HEADER_LEN - LOG_OVERHEAD + body.len()) as i32;
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(count - 1).to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&producer_id.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&base_sequence.to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&body);
        let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn valid_batch_is_read_and_offsets_rewritten_without_breaking_the_crc() {
        let b = batch(7, 3, 4, 1000);
        let h = validate(&b).unwrap();
        assert_eq!(h.last_offset_delta, 3);
        assert_eq!(h.producer_id, 7);
        assert_eq!(h.last_sequence(), 6);
        let moved = with_offset(&b, 42, 5);
        let h = validate(&moved).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.last_offset(), 45);
        assert_eq!(i32_at(&moved, PARTITION_LEADER_EPOCH), 5);
    }

    #[test]
    fn garbage_is_refused() {
        let mut b = batch(-1, -1, 2, 1);
        assert!(matches!(validate(&b[..30]), Err(BatchError::TooShort(30))));
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(validate(&b), Err(BatchError::Crc { .. })));
        let mut m = batch(-1, -1, 2, 1);
        m[MAGIC] = 1;
        assert!(matches!(validate(&m), Err(BatchError::Magic(1))));
        let mut l = batch(-1, -1, 2, 1);
        l[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(split(&l).is_err());
        l[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(split(&l).is_err());
        assert!(split(&[0u8; 3]).is_err());
    }

    #[test]
    fn two_batches_split() {
        let mut both = batch(-1, -1, 1, 1);
        both.extend(batch(-1, -1, 3, 2));
        let parts = split(&both).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].0.record_count, 3);
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(add_sequence(5, 2), 7);
    }
}
