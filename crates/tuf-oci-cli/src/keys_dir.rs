//! A directory of top-level keys: `root.key`, `targets.key`, `snapshot.key`, `timestamp.key`,
//! plus `<role>-<n>.key` for roles held by several keys. Retired keys move to `retired/`.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tuf_oci::editor::TopLevelKeys;
use tuf_oci::keys::SigningKey;

pub struct KeysDir {
    dir: PathBuf,
}

impl KeysDir {
    pub fn new(dir: PathBuf) -> Self {
        KeysDir { dir }
    }

    /// The keys of all four top-level roles, generating a key for any role that has none.
    pub async fn top_level(
        &self,
        root_threshold: NonZeroU64,
        generate: bool,
    ) -> anyhow::Result<TopLevelKeys> {
        let one = NonZeroU64::MIN;
        let mut roles = Vec::new();
        for role in ["root", "targets", "snapshot", "timestamp"] {
            if generate && self.files(role)?.is_empty() {
                tuf_oci::keys::generate(&self.dir.join(role))?;
            }
            roles.push(self.role(role).await?);
        }
        let mut roles = roles.into_iter();
        let mut next = || roles.next().expect("four roles");
        Ok(TopLevelKeys {
            root: (next(), root_threshold),
            targets: (next(), one),
            snapshot: (next(), one),
            timestamp: (next(), one),
        })
    }

    /// Every private key of `role` in the directory.
    pub async fn role(&self, role: &str) -> anyhow::Result<Vec<SigningKey>> {
        let files = self.files(role)?;
        anyhow::ensure!(!files.is_empty(), "no {role} key in {}", self.dir.display());
        load(&files).await
    }

    /// Moves `role`'s keys to `retired/` and generates `count` new ones.
    pub async fn replace(&self, role: &str, count: u64) -> anyhow::Result<Vec<SigningKey>> {
        let retired = self.dir.join("retired");
        std::fs::create_dir_all(&retired)?;
        let stamp = jiff::Timestamp::now().as_second();
        for file in self.files(role)? {
            let name = file
                .file_stem()
                .expect("key files have names")
                .to_string_lossy()
                .to_string();
            for ext in ["key", "pub"] {
                let from = file.with_extension(ext);
                if from.exists() {
                    std::fs::rename(&from, retired.join(format!("{name}.{stamp}.{ext}")))?;
                }
            }
        }
        let mut stems = Vec::new();
        for n in 1..=count {
            let stem = if n == 1 {
                self.dir.join(role)
            } else {
                self.dir.join(format!("{role}-{n}"))
            };
            tuf_oci::keys::generate(&stem)?;
            stems.push(stem.with_extension("key"));
        }
        load(&stems).await
    }

    fn files(&self, role: &str) -> anyhow::Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.dir.display())),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_key_of(p, role))
            .collect();
        files.sort();
        Ok(files)
    }
}

fn is_key_of(path: &Path, role: &str) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.strip_suffix(".key").is_some_and(|stem| {
        stem == role
            || stem
                .strip_prefix(role)
                .is_some_and(|rest| rest.starts_with('-'))
    })
}

/// Loads private key files.
pub async fn load(paths: &[PathBuf]) -> anyhow::Result<Vec<SigningKey>> {
    let mut keys = Vec::new();
    for path in paths {
        keys.push(SigningKey::load(path).await?);
    }
    Ok(keys)
}
