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

    /// The keys of all four top-level roles. With `generate`, a role with fewer keys than its
    /// threshold gets new ones (`root`, `root-2`, …) up to it.
    pub async fn top_level(
        &self,
        root_threshold: NonZeroU64,
        generate: bool,
    ) -> anyhow::Result<TopLevelKeys> {
        let one = NonZeroU64::MIN;
        let mut roles = Vec::new();
        for (role, threshold) in [
            ("root", root_threshold),
            ("targets", one),
            ("snapshot", one),
            ("timestamp", one),
        ] {
            let mut held = self.files(role)?.len() as u64;
            let mut n = 1;
            while generate && held < threshold.get() {
                let stem = self.dir.join(key_name(role, n));
                if !stem.with_extension("key").exists() {
                    tuf_oci::keys::generate(&stem)?;
                    held += 1;
                }
                n += 1;
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

    /// The keys of `role` kept here, none when there are none (a lost key).
    pub async fn role_if_kept(&self, role: &str) -> anyhow::Result<Vec<SigningKey>> {
        load(&self.files(role)?).await
    }

    /// `count` new keys for `role`, generated in a staging directory beside the keys: they take
    /// the place of the role's keys only once the rotation that trusts them is stored
    /// ([`Staged::commit`]), so a rotation that fails leaves the directory as it was.
    pub async fn stage(&self, role: &str, count: u64) -> anyhow::Result<Staged> {
        let staging = self.dir.join(format!(
            ".staged-{role}-{}",
            jiff::Timestamp::now().as_millisecond()
        ));
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        // Removes the staging directory on any failure from here on.
        let mut staged = Staged {
            dir: self.dir.clone(),
            staging,
            role: role.to_string(),
            keys: Vec::new(),
            trusted: false,
        };
        let mut stems = Vec::new();
        for n in 1..=count {
            let stem = staged.staging.join(key_name(role, n));
            tuf_oci::keys::generate(&stem)?;
            stems.push(stem.with_extension("key"));
        }
        staged.keys = load(&stems).await?;
        Ok(staged)
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

/// The file name (without extension) of `role`'s key number `n`: `root`, `root-2`, ….
fn key_name(role: &str, n: u64) -> String {
    if n == 1 {
        role.to_string()
    } else {
        format!("{role}-{n}")
    }
}

/// New keys of a role waiting in their staging directory, removed unless committed.
pub struct Staged {
    dir: PathBuf,
    staging: PathBuf,
    role: String,
    keys: Vec<SigningKey>,
    /// Set once the rotation is stored: from then on the new keys are the trusted ones and
    /// are never removed, even when moving them into place fails.
    trusted: bool,
}

impl Staged {
    /// The new keys (held in memory: they stay usable when their files move).
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// Keeps the new keys where they are, whatever happens next; returns their directory.
    pub fn keep(mut self) -> PathBuf {
        self.trusted = true;
        self.staging.clone()
    }

    /// Moves the role's current keys to `retired/` and the new ones into their place.
    pub fn commit(mut self) -> anyhow::Result<()> {
        self.trusted = true;
        let dir = KeysDir::new(self.dir.clone());
        let retired = self.dir.join("retired");
        std::fs::create_dir_all(&retired)
            .with_context(|| format!("creating {}", retired.display()))?;
        let files = dir.files(&self.role)?;
        let retired_as = |file: &Path, stamp: i64, ext: &str| {
            let name = file.file_stem().expect("key files have names");
            retired.join(format!("{}.{stamp}.{ext}", name.to_string_lossy()))
        };
        // Retired keys are named for the second of their retirement. A rotation in a second
        // that already retired keys of the role takes the next free one: renamed onto it,
        // they would replace keys retired before.
        let mut stamp = jiff::Timestamp::now().as_second();
        while files.iter().any(|file| {
            ["key", "pub"]
                .iter()
                .any(|ext| retired_as(file, stamp, ext).exists())
        }) {
            stamp += 1;
        }
        let kept = || {
            format!(
                "the new {} keys are in {}",
                self.role,
                self.staging.display()
            )
        };
        let mut retired = None;
        for file in &files {
            for ext in ["key", "pub"] {
                let from = file.with_extension(ext);
                let to = retired_as(file, stamp, ext);
                if from.exists() {
                    std::fs::rename(&from, &to).with_context(|| {
                        format!(
                            "retiring {} to {}; {}",
                            from.display(),
                            to.display(),
                            kept()
                        )
                    })?;
                    retired = Some(to);
                }
            }
        }
        // The moves survive a power loss before the next step counts on them.
        if let Some(retired) = retired {
            tuf_oci::atomic::sync_dir_of(&retired)?;
        }
        for entry in std::fs::read_dir(&self.staging)
            .with_context(|| format!("reading {}", self.staging.display()))?
        {
            let from = entry?.path();
            let to = self
                .dir
                .join(from.file_name().expect("directory entries have names"));
            std::fs::rename(&from, &to).with_context(|| {
                format!("moving {} to {}; {}", from.display(), to.display(), kept())
            })?;
        }
        tuf_oci::atomic::sync_dir(&self.dir)?;
        std::fs::remove_dir(&self.staging)
            .with_context(|| format!("removing {}", self.staging.display()))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Keys no metadata trusts.
        if !self.trusted {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
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
