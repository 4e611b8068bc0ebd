//! One partition's log: append-only segment files of record batches, as received, each with a
//! sparse offset index.
//!
//! Layout of a partition directory: `<base offset, 20 digits>.log` holds whole batches back to
//! back (the wire format: baseOffset, batchLength, the rest); `<base>.index` holds 16-byte entries
//! (batch base offset, byte position) written every `index_interval_bytes` of log. A segment rolls
//! when the next batch would take it past `segment_bytes`.
//!
//! Recovery on open: sealed segments load their index (rebuilt from batch headers when missing
//! or torn); the active (last) segment is read completely, every batch's length and CRC checked,
//! and a torn or corrupt tail is truncated away (it is what a crash mid-write leaves). Nothing is
//! ever deleted by age or size (no retention: a development stand-in).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_LEN};

/// When appended batches are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every append, before the producer is answered.
    Always,
    /// By a background task at this interval (a crash of the machine loses at most that much).
    Interval(std::time::Duration),
    /// Never explicitly: the kernel writes the page cache back (a killed broker loses nothing, a
    /// crashed machine may). Apache Kafka's default too.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => {
                let ms = other
                    .strip_suffix("ms")
                    .and_then(|n| n.parse::<u64>().ok())
                    .or_else(|| {
                        other
                            .strip_suffix('s')
                            .and_then(|n| n.parse::<u64>().ok())
                            .map(|s| s * 1000)
                    })
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| {
                        format!("`{other}`: expected always, never or an interval like 1s / 200ms")
                    })?;
                Ok(FsyncPolicy::Interval(std::time::Duration::from_millis(ms)))
            }
        }
    }
}

/// Sizes of segments and index spacing.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    pub segment_bytes: u64,
    pub index_interval_bytes: u64,
    pub fsync: FsyncPolicy,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 * 1024 * 1024,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Never,
        }
    }
}

const INDEX_ENTRY: usize = 16;

#[derive(Debug)]
struct Segment {
    base: i64,
    file: File,
    index_file: File,
    size: u64,
    /// (batch base offset, position), ascending.
    index: Vec<(i64, u64)>,
    bytes_since_index: u64,
}

/// What recovery found in the active segment: its batches' headers, oldest first (the producer
/// state is rebuilt from them).
pub type Recovered = Vec<BatchHeader>;

/// A partition's log.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    opts: LogOptions,
    segments: Vec<Segment>,
    next_offset: i64,
    dirty: bool,
}

fn seg_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

fn open_rw(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

impl PartitionLog {
    /// Opens (and recovers) the log in `dir`, creating it when missing.
    pub fn open(dir: &Path, opts: LogOptions) -> std::io::Result<(PartitionLog, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let mut bases: Vec<i64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse::<i64>().ok()
            })
            .collect();
        bases.sort_unstable();
        if bases.is_empty() {
            bases.push(0);
        }
        let mut segments = Vec::with_capacity(bases.len());
        let mut recovered = Vec::new();
        let mut next_offset = 0;
        let last = bases.len() - 1;
        for (i, base) in bases.into_iter().enumerate() {
            let file = open_rw(&dir.join(seg_name(base, "log")))?;
            let index_path = dir.join(seg_name(base, "index"));
            let mut seg = Segment {
                base,
                size: file.metadata()?.len(),
                file,
                index_file: open_rw(&index_path)?,
                index: Vec::new(),
                bytes_since_index: 0,
            };
            if i == last {
                let (headers, end) = scan(&seg.file, seg.size, true)?;
                if end < seg.size {
                    tracing::warn!(
                        dir = %dir.display(),
                        segment = base,
                        kept = end,
                        dropped = seg.size - end,
                        "truncating a torn or corrupt tail of the active segment"
                    );
                    seg.file.set_len(end)?;
                    seg.size = end;
                }
                next_offset = headers.last().map_or(base, |h| h.last_offset() + 1);
                seg.rebuild_index(&headers, opts.index_interval_bytes)?;
                recovered = headers;
            } else if !seg.load_index()? {
                let (headers, _) = scan(&seg.file, seg.size, false)?;
                seg.rebuild_index(&headers, opts.index_interval_bytes)?;
            }
            segments.push(seg);
        }
        Ok((
            PartitionLog {
                dir: dir.to_path_buf(),
                opts,
                segments,
                next_offset,
                dirty: false,
            },
            recovered,
        ))
    }

    /// The offset the next record gets: the high watermark (one replica).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// The first offset still in the log.
    pub fn start_offset(&self) -> i64 {
        self.segments.first().map_or(0, |s| s.base)
    }

    /// Appends one validated batch, rewriting its base offset and leader epoch; returns its base
    /// offset.
    pub fn append(&mut self, header: &BatchHeader, raw: &[u8]) -> std::io::Result<i64> {
        let base = self.next_offset;
        let bytes = batch::with_offset(raw, base, 0);
        let len = bytes.len() as u64;
        let active_size = self.segments.last().map_or(0, |s| s.size);
        if active_size > 0 && active_size + len > self.opts.segment_bytes {
            self.roll(base)?;
        }
        let interval = self.opts.index_interval_bytes;
        let seg = self.segments.last_mut().expect("a log has a segment");
        seg.file.write_all(&bytes)?;
        if seg.index.is_empty() || seg.bytes_since_index >= interval {
            seg.add_index(base, seg.size)?;
        }
        seg.size += len;
        seg.bytes_since_index += len;
        self.next_offset = base + i64::from(header.last_offset_delta) + 1;
        match self.opts.fsync {
            FsyncPolicy::Always => seg.file.sync_data()?,
            _ => self.dirty = true,
        }
        Ok(base)
    }

    /// Forces appended data to disk if any is pending.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.dirty {
            for seg in self.segments.iter().rev().take(2) {
                seg.file.sync_data()?;
                seg.index_file.sync_data()?;
            }
            self.dirty = false;
        }
        Ok(())
    }

    fn roll(&mut self, base: i64) -> std::io::Result<()> {
        if let Some(seg) = self.segments.last() {
            seg.file.sync_data()?;
            seg.index_file.sync_data()?;
        }
        let file = open_rw(&self.dir.join(seg_name(base, "log")))?;
        let index_file = open_rw(&self.dir.join(seg_name(base, "index")))?;
        index_file.set_len(0)?;
        file.set_len(0)?;
        self.segments.push(Segment {
            base,
            file,
            index_file,
            size: 0,
            index: Vec::new(),
            bytes_since_index: 0,
        });
        Ok(())
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` in total; the first batch is
    /// returned even when it alone is larger (so a consumer always makes progress). Empty when
    /// `offset` is at the end of the log.
    pub fn read(&self, offset: i64, max_bytes: usize) -> std::io::Result<Bytes> {
        if offset >= self.next_offset {
            return Ok(Bytes::new());
        }
        let i = match self.segments.partition_point(|s| s.base <= offset) {
            0 => 0,
            n => n - 1,
        };
        for seg in &self.segments[i..] {
            let start_pos = seg.position_for(offset);
            let mut pos = start_pos;
            let mut first = None;
            let mut end = pos;
            let mut head = [0u8; HEADER_LEN];
            while pos + HEADER_LEN as u64 <= seg.size {
                seg.file.read_exact_at(&mut head, pos)?;
                let Ok(h) = batch::parse_header(&head) else {
                    break;
                };
                let next = pos + h.total_len() as u64;
                if next > seg.size {
                    break;
                }
                if first.is_none() {
                    if h.last_offset() < offset {
                        pos = next;
                        continue;
                    }
                    first = Some(pos);
                } else if (next - first.unwrap_or(pos)) as usize > max_bytes {
                    break;
                }
                end = next;
                pos = next;
                if (end - first.unwrap_or(end)) as usize >= max_bytes {
                    break;
                }
            }
            if let Some(from) = first {
                let mut buf = vec![0u8; (end - from) as usize];
                seg.file.read_exact_at(&mut buf, from)?;
                return Ok(Bytes::from(buf));
            }
        }
        Ok(Bytes::new())
    }

    /// The base offset of the first batch whose max timestamp is at least `ts` (batch
    /// granularity), or `None` when no batch is that late.
    pub fn offset_for_timestamp(&self, ts: i64) -> std::io::Result<Option<i64>> {
        for seg in &self.segments {
            let (headers, _) = scan(&seg.file, seg.size, false)?;
            if let Some(h) = headers.iter().find(|h| h.max_timestamp >= ts) {
                return Ok(Some(h.base_offset.max(self.start_offset())));
            }
        }
        Ok(None)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Segment {
    fn position_for(&self, offset: i64) -> u64 {
        match self.index.partition_point(|(o, _)| *o <= offset) {
            0 => 0,
            n => self.index[n - 1].1,
        }
    }

    fn add_index(&mut self, offset: i64, pos: u64) -> std::io::Result<()> {
        let mut entry = [0u8; INDEX_ENTRY];
        entry[..8].copy_from_slice(&offset.to_be_bytes());
        entry[8..].copy_from_slice(&pos.to_be_bytes());
        self.index_file.write_all(&entry)?;
        self.index.push((offset, pos));
        self.bytes_since_index = 0;
        Ok(())
    }

    fn rebuild_index(&mut self, headers: &[BatchHeader], interval: u64) -> std::io::Result<()> {
        self.index_file.set_len(0)?;
        self.index.clear();
        self.bytes_since_index = 0;
        let mut pos = 0;
        for h in headers {
            if self.index.is_empty() || self.bytes_since_index >= interval {
                self.add_index(h.base_offset, pos)?;
            }
            pos += h.total_len() as u64;
            self.bytes_since_index += h.total_len() as u64;
        }
        Ok(())
    }

    /// Loads the index file; false when it is missing, torn or points past the log.
    fn load_index(&mut self) -> std::io::Result<bool> {
        let len = self.index_file.metadata()?.len() as usize;
        if len == 0 || !len.is_multiple_of(INDEX_ENTRY) {
            return Ok(self.size == 0 && len == 0);
        }
        let mut raw = vec![0u8; len];
        self.index_file.read_exact_at(&mut raw, 0)?;
        let mut index = Vec::with_capacity(len / INDEX_ENTRY);
        for chunk in raw.chunks_exact(INDEX_ENTRY) {
            let off = i64::from_be_bytes(chunk[..8].try_into().unwrap_or([0; 8]));
            let pos = u64::from_be_bytes(chunk[8..].try_into().unwrap_or([0; 8]));
            if pos >= self.size || index.last().is_some_and(|(o, p)| *o >= off || *p >= pos) {
                return Ok(false);
            }
            index.push((off, pos));
        }
        self.index = index;
        Ok(true)
    }
}

/// Reads batch headers from the start of a segment until `size` or the first invalid batch;
/// returns them and the end of the last valid batch. With `verify`, each batch is read whole
/// and its CRC checked.
fn scan(file: &File, size: u64, verify: bool) -> std::io::Result<(Vec<BatchHeader>, u64)> {
    let mut headers = Vec::new();
    let mut pos = 0u64;
    let mut head = [0u8; HEADER_LEN];
    while pos + HEADER_LEN as u64 <= size {
        file.read_exact_at(&mut head, pos)?;
        let Ok(h) = batch::parse_header(&head) else {
            break;
        };
        let next = pos + h.total_len() as u64;
        if next > size {
            break;
        }
        if verify {
            let mut whole = vec![0u8; h.total_len()];
            file.read_exact_at(&mut whole, pos)?;
            if batch::validate(&whole).is_err() {
                break;
            }
        }
        if headers
            .last()
            .is_some_and(|p: &BatchHeader| h.base_offset <= p.last_offset())
        {
            break;
        }
        headers.push(h);
        pos = next;
    }
    Ok((headers, pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::batch;

    fn opts(segment_bytes: u64) -> LogOptions {
        LogOptions {
            segment_bytes,
            index_interval_bytes: 100,
            fsync: FsyncPolicy::Never,
        }
    }

    fn append(log: &mut PartitionLog, count: i32) -> i64 {
        let b = batch(-1, -1, count, 1000 + log.next_offset());
        let h = batch::validate(&b).unwrap();
        log.append(&h, &b).unwrap()
    }

    #[test]
    fn appends_assign_offsets_and_reads_return_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(append(&mut log, 3), 0);
        assert_eq!(append(&mut log, 2), 3);
        assert_eq!(log.next_offset(), 5);
        // Offset 4 is inside the second batch: that batch comes back whole.
        let got = log.read(4, 1 << 20).unwrap();
        let h = batch::validate(&got).unwrap();
        assert_eq!((h.base_offset, h.last_offset()), (3, 4));
        // Too small a limit still returns the first batch.
        let got = log.read(0, 1).unwrap();
        assert_eq!(batch::validate(&got).unwrap().base_offset, 0);
        assert!(log.read(5, 100).unwrap().is_empty());
        let both = log.read(0, 1 << 20).unwrap();
        assert_eq!(batch::split(&both).unwrap().len(), 2);
    }

    #[test]
    fn segments_roll_and_survive_reopen_with_a_torn_tail_truncated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = PartitionLog::open(dir.path(), opts(300)).unwrap();
            for _ in 0..10 {
                append(&mut log, 2);
            }
            assert!(log.segments.len() > 2, "{}", log.segments.len());
        }
        // A torn write at the end of the active segment.
        let mut logs: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        let active = logs.last().unwrap();
        let mut f = OpenOptions::new().append(true).open(active).unwrap();
        f.write_all(&batch(-1, -1, 5, 1)[..40]).unwrap();
        drop(f);
        let (mut log, recovered) = PartitionLog::open(dir.path(), opts(300)).unwrap();
        assert_eq!(log.next_offset(), 20);
        assert!(!recovered.is_empty());
        for offset in 0..20 {
            let got = log.read(offset, 1).unwrap();
            let h = batch::validate(&got).unwrap();
            assert!(h.base_offset <= offset && offset <= h.last_offset());
        }
        assert_eq!(append(&mut log, 1), 20);
        assert_eq!(log.offset_for_timestamp(1010).unwrap(), Some(10));
        assert_eq!(log.offset_for_timestamp(99_999).unwrap(), None);
    }

    #[test]
    fn fsync_policies_parse() {
        assert_eq!("always".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Always));
        assert_eq!(
            "250ms".parse::<FsyncPolicy>(),
            Ok(FsyncPolicy::Interval(std::time::Duration::from_millis(250)))
        );
        assert_eq!(
            "2s".parse::<FsyncPolicy>(),
            Ok(FsyncPolicy::Interval(std::time::Duration::from_secs(2)))
        );
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        assert!("0s".parse::<FsyncPolicy>().is_err());
    }
}
