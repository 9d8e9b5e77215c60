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
        std::fs::read(self.dir.as_ref()?.join(name)).ok()
    }

    /// Replaces `name` with `bytes` atomically.
    pub fn store(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        let path = dir.join(name);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// Forgets `name` (timestamp and snapshot after their keys rotate, TUF 5.3.11).
    pub fn remove(&self, name: &str) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        }
    }
}
