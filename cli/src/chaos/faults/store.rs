//! Where fault records live between processes: one JSON file per fault in a directory per stack,
//! `$PLATFORM_STATE_DIR/stacks/<stack>/faults/` (default `$XDG_STATE_HOME/platform`, else
//! `~/.local/state/platform`).
//!
//! Keyed by stack name on the machine, not by checkout, because the stack's containers are: two
//! checkouts (or a stack file in a temporary directory, as the end-to-end tests use) that operate
//! stack `dev` see the same faults, and `platform down --stack NAME` finds them without the file.
//!
//! Writes are atomic (a temporary file renamed over the record), and changes that must not
//! interleave with the supervisor's decision to exit take [`Store::lock`] (an exclusive `flock`
//! on `faults/.lock`). The supervisor holds `supervisor.lock` for as long as it runs, so "is a
//! supervisor running?" is "is that lock taken?" — a crashed supervisor's lock is released by
//! the kernel.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::FaultError;
use super::record::FaultRecord;

/// Overrides where fault state is kept.
pub const STATE_DIR_ENV: &str = "PLATFORM_STATE_DIR";

/// The fault records of one stack.
#[derive(Debug, Clone)]
pub struct Store {
    /// `<state>/stacks/<stack>`.
    dir: PathBuf,
}

/// An exclusive lock on a store's records (released when dropped).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// The platform's state directory (see the module docs).
pub fn state_root() -> PathBuf {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("platform");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/platform"),
        None => std::env::temp_dir().join("platform-state"),
    }
}

fn io_error(action: &str, path: &Path, e: std::io::Error) -> FaultError {
    FaultError::State {
        message: format!("cannot {action} {}: {e}", path.display()),
    }
}

impl Store {
    /// The store of `stack` under [`state_root`].
    pub fn for_stack(stack: &str) -> Store {
        Store::at(state_root().join("stacks").join(stack))
    }

    /// A store in `dir` (tests use temporary directories).
    pub fn at(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// The stack's state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn faults_dir(&self) -> PathBuf {
        self.dir.join("faults")
    }

    fn ensure_dir(&self) -> Result<PathBuf, FaultError> {
        let d = self.faults_dir();
        std::fs::create_dir_all(&d).map_err(|e| io_error("create", &d, e))?;
        Ok(d)
    }

    /// The file that holds record `id`.
    fn path_of(&self, id: &str) -> PathBuf {
        self.faults_dir().join(format!("{id}.json"))
    }

    /// Takes the store's exclusive lock, waiting for another holder to finish.
    pub fn lock(&self) -> Result<StoreLock, FaultError> {
        let path = self.ensure_dir()?.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        file.lock().map_err(|e| io_error("lock", &path, e))?;
        Ok(StoreLock { _file: file })
    }

    /// Writes `record` atomically (a new file or a replacement).
    pub fn save(&self, record: &FaultRecord) -> Result<(), FaultError> {
        let dir = self.ensure_dir()?;
        let path = self.path_of(&record.id);
        let tmp = dir.join(format!(".{}.tmp", record.id));
        let mut stored = record.clone();
        stored.remaining_ms = None;
        let text = serde_json::to_vec_pretty(&stored).map_err(|e| FaultError::State {
            message: format!("cannot encode fault {}: {e}", record.id),
        })?;
        let mut f = File::create(&tmp).map_err(|e| io_error("create", &tmp, e))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_error("rename", &path, e))
    }

    /// Every record, oldest first. A file that does not parse is an error naming it (it is
    /// never silently dropped: it may be a fault that still needs reverting).
    pub fn load_all(&self) -> Result<Vec<FaultRecord>, FaultError> {
        let dir = self.faults_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("read", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| io_error("read", &dir, e))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let text = match std::fs::read(&path) {
                Ok(t) => t,
                // Removed between the listing and the read (healed meanwhile).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("read", &path, e)),
            };
            let record: FaultRecord =
                serde_json::from_slice(&text).map_err(|e| FaultError::State {
                    message: format!(
                        "fault record {} is unreadable ({e}); inspect it, revert by hand and remove it",
                        path.display()
                    ),
                })?;
            out.push(record);
        }
        out.sort_by(|a, b| (a.started, &a.id).cmp(&(b.started, &b.id)));
        Ok(out)
    }

    /// The record `id`, if there is one.
    pub fn get(&self, id: &str) -> Result<Option<FaultRecord>, FaultError> {
        Ok(self.load_all()?.into_iter().find(|r| r.id == id))
    }

    /// Deletes record `id`; a missing one is fine (someone else finished it).
    pub fn remove(&self, id: &str) -> Result<(), FaultError> {
        let path = self.path_of(id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", &path, e)),
            _ => Ok(()),
        }
    }

    /// The supervisor's lock file.
    pub fn supervisor_lock_path(&self) -> PathBuf {
        self.dir.join("supervisor.lock")
    }

    /// The supervisor's log.
    pub fn supervisor_log_path(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }

    /// Tries to take the supervisor lock: `Some` when no supervisor holds it.
    pub fn try_supervisor_lock(&self) -> Result<Option<File>, FaultError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io_error("create", &self.dir, e))?;
        let path = self.supervisor_lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io_error("lock", &path, e)),
        }
    }

    /// True while a supervisor process holds the lock.
    pub fn supervisor_running(&self) -> Result<bool, FaultError> {
        Ok(self.try_supervisor_lock()?.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::record;
    use super::*;

    /// Records survive the process that wrote them (a fresh `Store` on the same directory
    /// reads them back), come back oldest first, and removing one leaves the others.
    #[test]
    fn records_persist_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = chrono::Utc::now();
        let store = Store::at(dir.path());
        assert!(store.load_all().unwrap().is_empty());
        store
            .save(&record("f-b", t0 + chrono::Duration::seconds(1), 30))
            .unwrap();
        store.save(&record("f-a", t0, 30)).unwrap();
        let again = Store::at(dir.path());
        let ids: Vec<String> = again
            .load_all()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["f-a", "f-b"]);
        again.remove("f-a").unwrap();
        again.remove("f-a").unwrap();
        assert_eq!(store.get("f-b").unwrap().unwrap().id, "f-b");
        assert!(store.get("f-a").unwrap().is_none());
    }

    /// A damaged record is an error naming the file, never skipped.
    #[test]
    fn damaged_records_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        store.save(&record("f-a", chrono::Utc::now(), 30)).unwrap();
        std::fs::write(dir.path().join("faults/f-x.json"), b"{not json").unwrap();
        let err = store.load_all().unwrap_err().to_string();
        assert!(err.contains("f-x.json"), "{err}");
    }

    /// Only one holder gets the supervisor lock at a time; it frees when dropped.
    #[test]
    fn one_supervisor_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let held = store.try_supervisor_lock().unwrap();
        assert!(held.is_some());
        assert!(store.supervisor_running().unwrap());
        drop(held);
        assert!(!store.supervisor_running().unwrap());
    }
}
