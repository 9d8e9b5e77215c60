//! Trusted metadata kept on disk between runs, so rollback protection survives restarts
//! (TUF 5.2: "the trusted metadata"). Files are written atomically; anything that cannot be
//! read back and verified is ignored and rebuilt from the trusted root, never trusted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// The trusted metadata of one TUF repository, in a directory or in memory. Clones share it:
/// updaters reading different copies of the repository compare what each fetches with what
/// any of them trusted.
#[derive(Debug, Clone)]
pub enum TrustedStore {
    /// Files in a directory, kept between runs.
    Dir(PathBuf),
    /// Kept only as long as the process, by file name.
    Memory(Arc<Mutex<HashMap<String, Vec<u8>>>>),
}

impl Default for TrustedStore {
    fn default() -> Self {
        TrustedStore::in_memory()
    }
}

impl TrustedStore {
    /// Persists into `dir` (created when missing).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        TrustedStore::Dir(dir.into())
    }

    /// Keeps nothing between runs.
    pub fn in_memory() -> Self {
        TrustedStore::Memory(Arc::default())
    }

    /// The bytes stored under `name` (`root.json`, `team-a.json`), if any.
    pub fn load(&self, name: &str) -> Option<Vec<u8>> {
        match self {
            TrustedStore::Dir(dir) => std::fs::read(dir.join(encode_file_name(name))).ok(),
            TrustedStore::Memory(files) => files.lock().expect("not poisoned").get(name).cloned(),
        }
    }

    /// Replaces `name` with `bytes` atomically.
    pub fn store(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = match self {
            TrustedStore::Dir(dir) => dir,
            TrustedStore::Memory(files) => {
                let mut files = files.lock().expect("not poisoned");
                files.insert(name.to_string(), bytes.to_vec());
                return Ok(());
            }
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(encode_file_name(name));
        // A temporary file of its own: verifiers in other processes (containerd runs one per
        // pull) may store the same name at the same time.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
        std::io::Write::write_all(&mut tmp, bytes).map_err(|e| Error::io(tmp.path(), e))?;
        tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        Ok(())
    }

    /// Held while one updater compares what is stored with what it would store, and stores
    /// it: updaters in this process, and in other processes sharing the directory (containerd
    /// runs a verifier per pull beside the long-running service), wait for each other.
    pub fn lock(&self) -> Result<StoreLock> {
        static IN_PROCESS: Mutex<()> = Mutex::new(());
        let in_process = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
        let file = match self {
            TrustedStore::Dir(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                let path = dir.join(".lock");
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                file.lock().map_err(|e| Error::io(&path, e))?;
                Some(file)
            }
            TrustedStore::Memory(_) => None,
        };
        Ok(StoreLock {
            _file: file,
            _in_process: in_process,
        })
    }

    /// Forgets `name` (timestamp and snapshot after their keys rotate, TUF 5.3.11).
    pub fn remove(&self, name: &str) -> Result<()> {
        let dir = match self {
            TrustedStore::Dir(dir) => dir,
            TrustedStore::Memory(files) => {
                files.lock().expect("not poisoned").remove(name);
                return Ok(());
            }
        };
        let path = dir.join(encode_file_name(name));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        }
    }
}

/// See [`TrustedStore::lock`]; released when dropped (the file lock with its file).
#[derive(Debug)]
pub struct StoreLock {
    _file: Option<std::fs::File>,
    _in_process: std::sync::MutexGuard<'static, ()>,
}

/// Percent-encodes everything but `A-Za-z0-9-._~`, as TUF clients name files after role and
/// target names (python-tuf: `quote(name, "")`), so a name can never escape its directory.
pub fn encode_file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_escape() {
        assert_eq!(encode_file_name("team-a.json"), "team-a.json");
        assert_eq!(encode_file_name("../x/y:z"), "..%2Fx%2Fy%3Az");
    }

    #[test]
    fn store_round_trips_and_forgets() {
        let dir = tempfile::tempdir().unwrap();
        for store in [
            TrustedStore::at(dir.path().join("cache")),
            TrustedStore::in_memory(),
        ] {
            assert_eq!(store.load("a/b.json"), None);
            store.clone().store("a/b.json", b"x").unwrap();
            assert_eq!(store.load("a/b.json").as_deref(), Some(&b"x"[..]));
            store.remove("a/b.json").unwrap();
            assert_eq!(store.load("a/b.json"), None);
        }
    }
}
