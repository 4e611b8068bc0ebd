//! A Docker build context held in memory: files with their modes, hashed for the image tag and
//! written as the tar stream the build API takes. Hashing the exact bytes sent means an
//! unchanged binary always yields the same tag, so it is never rebuilt.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

/// One file or directory of a build context.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Relative path inside the context, `/`-separated.
    path: String,
    /// `None` for a directory.
    data: Option<Vec<u8>>,
    mode: u32,
    /// Owner recorded in the tar (Docker's `ADD` of a tar keeps it; `COPY` does not).
    owner: u32,
}

/// A build context: a set of paths and their bytes.
#[derive(Debug, Clone, Default)]
pub struct Context {
    entries: Vec<Entry>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file with these bytes and mode.
    pub fn add_bytes(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) {
        self.entries.retain(|e| e.path != path);
        self.entries.push(Entry {
            path: path.to_string(),
            data: Some(data.into()),
            mode,
            owner: 0,
        });
    }

    /// Adds a host file's contents (following symlinks) under `path`, keeping its mode.
    pub fn add_file(&mut self, path: &str, source: &Path) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let data = std::fs::read(source)?;
        let mode = std::fs::metadata(source)?.permissions().mode() & 0o7777;
        self.add_bytes(path, data, mode);
        Ok(())
    }

    /// Adds an (empty) directory owned by root.
    pub fn add_dir(&mut self, path: &str, mode: u32) {
        self.add_dir_owned(path, mode, 0);
    }

    /// Adds an (empty) directory owned by `owner` (uid and gid).
    pub fn add_dir_owned(&mut self, path: &str, mode: u32, owner: u32) {
        self.entries.retain(|e| e.path != path);
        self.entries.push(Entry {
            path: path.to_string(),
            data: None,
            mode,
            owner,
        });
    }

    /// The bytes of the file at `path`, if there is one.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| e.path == path)
            .and_then(|e| e.data.as_deref())
    }

    /// Total bytes of file data.
    pub fn size(&self) -> usize {
        self.entries
            .iter()
            .filter_map(|e| e.data.as_ref())
            .map(Vec::len)
            .sum()
    }

    /// SHA-256 (hex) over `salt` and every entry's path, mode and bytes, in path order.
    pub fn content_hash(&self, salt: &str) -> String {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let mut h = Sha256::new();
        h.update(salt.as_bytes());
        h.update([0]);
        for e in entries {
            h.update(e.path.as_bytes());
            h.update([0]);
            h.update(e.mode.to_le_bytes());
            h.update(e.owner.to_le_bytes());
            match &e.data {
                Some(d) => {
                    h.update((d.len() as u64).to_le_bytes());
                    h.update(d);
                }
                None => h.update(b"dir"),
            }
        }
        hex(&h.finalize())
    }

    /// The context as an uncompressed tar archive (parents before children).
    pub fn to_tar(&self) -> io::Result<Vec<u8>> {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let mut builder = tar::Builder::new(Vec::new());
        let mut made_dirs: Vec<String> = Vec::new();
        for e in entries {
            // Parent directories first, so the builder sees a well-formed tree.
            let mut parent = String::new();
            let parts: Vec<&str> = e.path.split('/').collect();
            for part in &parts[..parts.len().saturating_sub(1)] {
                if !parent.is_empty() {
                    parent.push('/');
                }
                parent.push_str(part);
                if !made_dirs.contains(&parent) && !self.entries.iter().any(|x| x.path == parent) {
                    append_dir(&mut builder, &parent, 0o755, 0)?;
                    made_dirs.push(parent.clone());
                }
            }
            match &e.data {
                Some(data) => {
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(data.len() as u64);
                    header.set_mode(e.mode);
                    header.set_uid(u64::from(e.owner));
                    header.set_gid(u64::from(e.owner));
                    header.set_mtime(0);
                    header.set_cksum();
                    builder.append_data(&mut header, &e.path, data.as_slice())?;
                }
                None => {
                    append_dir(&mut builder, &e.path, e.mode, e.owner)?;
                    made_dirs.push(e.path.clone());
                }
            }
        }
        builder.into_inner()
    }
}

fn append_dir(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    mode: u32,
    owner: u32,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(mode);
    header.set_uid(u64::from(owner));
    header.set_gid(u64::from(owner));
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, format!("{path}/"), io::empty())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash depends on content, mode and salt but not on insertion order.
    #[test]
    fn hash_is_content_addressed() {
        let mut a = Context::new();
        a.add_bytes("Dockerfile", "FROM scratch\n", 0o644);
        a.add_bytes("rootfs/app/x", vec![1, 2, 3], 0o755);
        let mut b = Context::new();
        b.add_bytes("rootfs/app/x", vec![1, 2, 3], 0o755);
        b.add_bytes("Dockerfile", "FROM scratch\n", 0o644);
        assert_eq!(a.content_hash("s"), b.content_hash("s"));
        assert_ne!(a.content_hash("s"), a.content_hash("t"));
        b.add_bytes("rootfs/app/x", vec![1, 2, 4], 0o755);
        assert_ne!(a.content_hash("s"), b.content_hash("s"));
        let mut c = a.clone();
        c.add_bytes("rootfs/app/x", vec![1, 2, 3], 0o644);
        assert_ne!(a.content_hash("s"), c.content_hash("s"));
    }

    /// The tar holds parent directories, files with their modes, and explicit directories.
    #[test]
    fn tar_round_trips() {
        let mut ctx = Context::new();
        ctx.add_bytes("rootfs/app/bin", b"ELF".to_vec(), 0o755);
        ctx.add_dir("rootfs/tmp", 0o1777);
        ctx.add_dir_owned("rootfs/data", 0o755, 65532);
        let tar = ctx.to_tar().unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let h = entry.header();
            seen.push((path, h.mode().unwrap(), h.uid().unwrap()));
        }
        assert_eq!(
            seen,
            vec![
                ("rootfs/".to_string(), 0o755, 0),
                ("rootfs/app/".to_string(), 0o755, 0),
                ("rootfs/app/bin".to_string(), 0o755, 0),
                ("rootfs/data/".to_string(), 0o755, 65532),
                ("rootfs/tmp/".to_string(), 0o1777, 0),
            ]
        );
    }
}
