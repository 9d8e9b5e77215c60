//! Trusted metadata kept on disk between runs, so rollback protection survives restarts
//! (TUF 5.2: "the trusted metadata"). Files are written atomically; anything that cannot be
//! read back and verified is ignored and rebuilt from the trusted root, never trusted.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// A directory of trusted metadata for one metadata repository, or nothing (memory only).
#[derive(Debug, Clone, Default)]
pub struct TrustedStore {
    dir: Option<PathBuf>,
}

impl TrustedStore {
    /// Persists into `dir` (created when missing).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        TrustedStore {
            dir: Some(dir.into()),
        }
    }

    /// Keeps nothing between runs.
    pub fn in_memory() -> Self {
        TrustedStore { dir: None }
    }

    /// The bytes stored under `name` (`root.json`, `team-a.json`), if any.
    pub fn load(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.as_ref()?.join(encode_file_name(name))).ok()
    }

    /// Replaces `name` with `bytes` atomically.
    pub fn store(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
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

    /// Forgets `name` (timestamp and snapshot after their keys rotate, TUF 5.3.11).
    pub fn remove(&self, name: &str) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let path = dir.join(encode_file_name(name));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        }
    }
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
        let store = TrustedStore::at(dir.path().join("cache"));
        assert_eq!(store.load("a/b.json"), None);
        store.store("a/b.json", b"x").unwrap();
        assert_eq!(store.load("a/b.json").as_deref(), Some(&b"x"[..]));
        store.remove("a/b.json").unwrap();
        assert_eq!(store.load("a/b.json"), None);
    }
}
