//! Trusted metadata kept on disk between runs, so rollback protection survives restarts
//! (TUF 5.2: "the trusted metadata"). Files are written atomically; anything that cannot be
//! read back and verified is ignored and rebuilt from the trusted root, never trusted.

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::{Error, Result};

/// Longest wait for another process's lock on a store directory: holders keep it for one
/// comparison and one write, so a longer hold is a stuck or hostile process, and verification
/// fails rather than waits for it.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Longest wait for a sibling's lock when taking up its state ([`TrustedStore::take_up`]).
const TAKE_UP_WAIT: Duration = Duration::from_millis(200);

/// Between two attempts at a held lock: holders keep it for milliseconds.
const LOCK_PAUSE: Duration = Duration::from_millis(2);

/// The names of the copies [`TrustedStore::take_up`] makes before renaming them into place
/// start so.
const TAKING_UP_PREFIX: &str = ".taking-up-";

/// Age past which a file being written in a directory ([`crate::atomic::replace`]'s, named
/// [`crate::atomic::TEMP_PREFIX`]) or a copy being taken up is a leftover: writes take
/// milliseconds, and a process killed in one (a verifier containerd stops at its deadline)
/// leaves it behind, up to megabytes each.
const STALE_WRITE: Duration = Duration::from_secs(3600);

/// The trusted metadata of one TUF repository, in a directory or in memory. Clones share it:
/// updaters reading different copies of the repository compare what each fetches with what
/// any of them trusted.
#[derive(Debug, Clone, Default)]
pub struct TrustedStore {
    place: Place,
}

#[derive(Debug, Clone)]
enum Place {
    /// Files in a directory, kept between runs.
    Dir(PathBuf),
    /// Kept only as long as the process.
    Memory(Arc<Memory>),
}

impl Default for Place {
    fn default() -> Self {
        Place::Memory(Arc::default())
    }
}

#[derive(Debug, Default)]
struct Memory {
    files: Mutex<HashMap<String, Vec<u8>>>,
    /// See [`TrustedStore::lock`].
    writing: Mutex<()>,
}

impl TrustedStore {
    /// Persists into `dir` (created when missing, for the owner only).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        TrustedStore {
            place: Place::Dir(dir.into()),
        }
    }

    /// Keeps nothing between runs.
    pub fn in_memory() -> Self {
        TrustedStore::default()
    }

    /// The bytes stored under `name` (`root.json`, `team-a.json`), or `None` when there are
    /// none. A file that is there but cannot be read is an error: taken for "nothing stored",
    /// it would let older metadata be stored in its place.
    pub fn load(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match &self.place {
            Place::Dir(dir) => read_if_there(&dir.join(encode_file_name(name))),
            Place::Memory(memory) => Ok(memory.files().get(name).cloned()),
        }
    }

    /// Replaces `name` with `bytes` atomically.
    pub fn store(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = match &self.place {
            Place::Dir(dir) => dir,
            Place::Memory(memory) => {
                memory.files().insert(name.to_string(), bytes.to_vec());
                return Ok(());
            }
        };
        create_dir(dir)?;
        // The owner's only, as the directory.
        crate::atomic::replace(&dir.join(encode_file_name(name)), 0o600, |file| {
            std::io::Write::write_all(file, bytes)
        })
    }

    /// Held while one updater compares what is stored with what it would store, and stores
    /// it. A directory is locked with a file lock (`.lock`, the owner's only), so updaters in
    /// other processes sharing it wait too: containerd runs a verifier per pull beside the
    /// long-running service. The wait yields to the runtime: a verification waiting here
    /// holds up no other work of a one-thread runtime (the transfer front's).
    pub async fn lock(&self) -> Result<StoreLock<'_>> {
        let dir = match &self.place {
            Place::Dir(dir) => dir,
            Place::Memory(memory) => {
                let held = memory.writing.lock().unwrap_or_else(|e| e.into_inner());
                return Ok(StoreLock::Memory(held));
            }
        };
        create_dir(dir)?;
        let (file, path) = open_lock(dir)?;
        let since = Instant::now();
        while !try_lock(&file, &path, since, LOCK_WAIT)? {
            tokio::time::sleep(LOCK_PAUSE).await;
        }
        remove_stale(dir, crate::atomic::TEMP_PREFIX, false);
        Ok(StoreLock::File(file))
    }

    /// Starts a directory not made yet from a sibling's (a directory beside it in `parent`)
    /// whose file `name` satisfies `takes`: copied whole, under the sibling's lock (so that
    /// no update is caught half done), into a directory of its own, then renamed into place,
    /// so that another process never finds half of it. Nothing is done when the directory
    /// exists, or when no sibling qualifies. When several do, the one furthest on is taken:
    /// the newest root, then the newest timestamp (a copy another directory took up earlier
    /// holds newer files than the directory it copied, and may lag behind it since). The copy
    /// holds what the sibling's updates verified; anything in it that fails to verify later
    /// is ignored, as ever. A sibling or file that cannot be read fails: taken for none, the state it holds
    /// would never be taken up here, and its rollback protection would be lost for good.
    pub fn take_up(&self, parent: &Path, name: &str, takes: impl Fn(&[u8]) -> bool) -> Result<()> {
        let Place::Dir(dir) = &self.place else {
            return Ok(());
        };
        if dir.exists() {
            return Ok(());
        }
        remove_stale(parent, TAKING_UP_PREFIX, true);
        let siblings = match std::fs::read_dir(parent) {
            Ok(siblings) => siblings,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(parent, e)),
        };
        let file = encode_file_name(name);
        let mut newest = None;
        for entry in siblings {
            let entry = entry.map_err(|e| Error::io(parent, e))?;
            let sibling = entry.path();
            // Not copies being made (or left by a process killed while making one).
            if entry.file_name().to_string_lossy().starts_with('.')
                || sibling == *dir
                || !entry.file_type().is_ok_and(|t| t.is_dir())
            {
                continue;
            }
            let Some(stored) = read_if_there(&sibling.join(&file))? else {
                continue;
            };
            if !takes(&stored) {
                continue;
            }
            // The root first: a timestamp version starts again when its key rotates (TUF
            // 5.3.11), so a sibling behind on the root chain may hold a higher one.
            let version = |name: &str| -> Result<u64> {
                Ok(read_if_there(&sibling.join(encode_file_name(name)))?
                    .and_then(|bytes| crate::layout::signed_version(&bytes))
                    .unwrap_or(0))
            };
            let reached = (version("root.json")?, version("timestamp.json")?);
            if newest.as_ref().is_none_or(|(held, _)| reached > *held) {
                newest = Some((reached, sibling));
            }
        }
        let Some((_, sibling)) = newest else {
            return Ok(());
        };
        let staged = tempfile::Builder::new()
            .prefix(TAKING_UP_PREFIX)
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        std::fs::set_permissions(staged.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(staged.path(), e))?;
        // Briefly: this runs on the caller's thread (the front has one), and holders keep the
        // lock for milliseconds. Failing leaves the directory unmade, to be tried again.
        let (lock, lock_path) = open_lock(&sibling)?;
        lock_waiting(&lock, &lock_path, TAKE_UP_WAIT)?;
        // Taken up only if still so under the lock: an update may have moved it on.
        if !read_if_there(&sibling.join(&file))?.is_some_and(|stored| takes(&stored)) {
            return Ok(());
        }
        for entry in std::fs::read_dir(&sibling).map_err(|e| Error::io(&sibling, e))? {
            let entry = entry.map_err(|e| Error::io(&sibling, e))?;
            // Files only, not the lock or another writer's temporary files.
            if entry.file_name().to_string_lossy().starts_with('.')
                || !entry.file_type().is_ok_and(|t| t.is_file())
            {
                continue;
            }
            let bytes = std::fs::read(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            crate::atomic::replace(&staged.path().join(entry.file_name()), 0o600, |file| {
                std::io::Write::write_all(file, &bytes)
            })?;
        }
        drop(lock);
        // Another process taking it up at the same time may have renamed its copy first.
        match std::fs::rename(staged.path(), dir) {
            Ok(()) => {
                tracing::info!(from = %sibling.display(), to = %dir.display(), "trusted metadata taken up");
                Ok(())
            }
            Err(_) if dir.exists() => Ok(()),
            Err(e) => Err(Error::io(dir, e)),
        }
    }

    /// Forgets `name` (timestamp and snapshot after their keys rotate, TUF 5.3.11).
    pub fn remove(&self, name: &str) -> Result<()> {
        let dir = match &self.place {
            Place::Dir(dir) => dir,
            Place::Memory(memory) => {
                memory.files().remove(name);
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

/// The lock file of directory `dir` (`.lock`, the owner's only), opened (not locked), and its
/// path.
fn open_lock(dir: &Path) -> Result<(std::fs::File, PathBuf)> {
    let path = dir.join(".lock");
    // Read-only is enough for a file lock, and works when another user created the file.
    let file = std::fs::File::open(&path)
        .or_else(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
        })
        .map_err(|e| Error::io(&path, e))?;
    Ok((file, path))
}

/// Takes the exclusive file lock on `file` (`path`, for messages), waiting [`LOCK_WAIT`] at
/// most: a lock held longer means a process stuck or at work for long, and failing names it.
pub(crate) fn lock_within(file: &std::fs::File, path: &Path) -> Result<()> {
    lock_waiting(file, path, LOCK_WAIT)
}

/// The same, waiting `wait` at most.
fn lock_waiting(file: &std::fs::File, path: &Path, wait: Duration) -> Result<()> {
    let since = Instant::now();
    while !try_lock(file, path, since, wait)? {
        std::thread::sleep(LOCK_PAUSE);
    }
    Ok(())
}

/// One attempt at the exclusive file lock on `file`, waited for since `since`: `false` while
/// another holds it and `wait` is not over.
fn try_lock(file: &std::fs::File, path: &Path, since: Instant, wait: Duration) -> Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) if since.elapsed() < wait => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::io(
            path,
            std::io::Error::other(format!(
                "locked by another process for {} ms",
                wait.as_millis()
            )),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}

impl Memory {
    fn files(&self) -> MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// See [`TrustedStore::lock`]; released when dropped (the file lock with its file).
#[derive(Debug)]
pub enum StoreLock<'a> {
    /// A directory's lock file, locked.
    File(std::fs::File),
    /// An in-memory store's lock.
    Memory(MutexGuard<'a, ()>),
}

/// Creates `dir` and missing parents, readable and writable by the owner only.
fn create_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

/// Removes what killed writers left in `dir`: the entries named `prefix…` older than
/// [`STALE_WRITE`], files, or directories with `dirs`; what cannot be removed stays, to be
/// tried again by the next.
fn remove_stale(dir: &Path, prefix: &str, dirs: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // Links are neither: not followed.
        let stale = entry.file_name().to_string_lossy().starts_with(prefix)
            && entry.metadata().is_ok_and(|m| {
                (if dirs { m.is_dir() } else { m.is_file() })
                    && m.modified()
                        .ok()
                        .and_then(|at| at.elapsed().ok())
                        .is_some_and(|age| age > STALE_WRITE)
            });
        if stale {
            let _ = if dirs {
                std::fs::remove_dir_all(entry.path())
            } else {
                std::fs::remove_file(entry.path())
            };
        }
    }
}

/// The bytes of the file at `path`; `None` when there is none (any other failure is one).
fn read_if_there(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Percent-encodes everything but `A-Za-z0-9-._~`, as TUF clients name files after role and
/// target names (python-tuf: `quote(name, "")`), so a name can never escape its directory.
pub fn encode_file_name(name: &str) -> String {
    /// RFC 3986's unreserved characters are kept.
    const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(name, ENCODED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_taken_up_whole_from_a_sibling_and_never_from_a_copy_in_the_making() {
        let parent = tempfile::tempdir().unwrap();
        let sibling = parent.path().join("root-a");
        let sibling_store = TrustedStore::at(&sibling);
        sibling_store.store("root.json", b"root 2").unwrap();
        sibling_store
            .store("timestamp.json", b"timestamp 7")
            .unwrap();
        // A copy a killed process left half made, newer than the sibling's: no timestamp.
        std::thread::sleep(Duration::from_millis(20));
        let leftover = parent.path().join(".taking-up-x");
        std::fs::create_dir(&leftover).unwrap();
        std::fs::write(leftover.join("root.json"), b"root 2").unwrap();
        let takes = |stored: &[u8]| stored == b"root 2";

        // The sibling's lock held (another process updating it): not taken up, nor started.
        let new = TrustedStore::at(parent.path().join("root-b"));
        let (held, _) = open_lock(&sibling).unwrap();
        held.lock().unwrap();
        assert!(new.take_up(parent.path(), "root.json", takes).is_err());
        assert!(!parent.path().join("root-b").exists());
        drop(held);

        new.take_up(parent.path(), "root.json", takes).unwrap();
        assert_eq!(
            new.load("timestamp.json").unwrap().as_deref(),
            Some(&b"timestamp 7"[..])
        );
        assert_eq!(
            new.load("root.json").unwrap().as_deref(),
            Some(&b"root 2"[..])
        );
        // A root nothing reached takes nothing up.
        let other = TrustedStore::at(parent.path().join("root-c"));
        other
            .take_up(parent.path(), "root.json", |stored| stored == b"root 3")
            .unwrap();
        assert!(other.load("timestamp.json").unwrap().is_none());
    }

    /// Of siblings that reached the root, the one furthest on is taken up: the newest root,
    /// then the newest timestamp, however recently the others' files were written (a copy
    /// made by an earlier take-up is newer on disk than the directory it copied, and may lag
    /// behind it since).
    #[test]
    fn the_sibling_furthest_on_is_taken_up() {
        let parent = tempfile::tempdir().unwrap();
        let timestamp = |version: u64| format!(r#"{{"signed":{{"version":{version}}}}}"#);
        let root = |version: u64| format!(r#"{{"signed":{{"version":{version}}},"x":1}}"#);
        for (name, version) in [("root-ahead", 150), ("root-copy", 100)] {
            let sibling = TrustedStore::at(parent.path().join(name));
            sibling.store("root.json", root(3).as_bytes()).unwrap();
            sibling
                .store("timestamp.json", timestamp(version).as_bytes())
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let takes = |stored: &[u8]| stored.ends_with(br#","x":1}"#);
        let new = TrustedStore::at(parent.path().join("root-new"));
        new.take_up(parent.path(), "root.json", takes).unwrap();
        assert_eq!(
            new.load("timestamp.json").unwrap(),
            Some(timestamp(150).into_bytes())
        );
        // Further on the root chain, its timestamp started again after a key rotation.
        let rotated = TrustedStore::at(parent.path().join("root-rotated"));
        rotated.store("root.json", root(4).as_bytes()).unwrap();
        rotated
            .store("timestamp.json", timestamp(2).as_bytes())
            .unwrap();
        let newer = TrustedStore::at(parent.path().join("root-newer"));
        newer.take_up(parent.path(), "root.json", takes).unwrap();
        assert_eq!(newer.load("root.json").unwrap(), Some(root(4).into_bytes()));
    }

    /// A sibling's file that is there but cannot be read (here a link to itself) is not "no
    /// such sibling": the directory is not started afresh beside the state it may hold.
    #[test]
    fn a_sibling_that_cannot_be_read_stops_the_take_up() {
        let parent = tempfile::tempdir().unwrap();
        let sibling = parent.path().join("root-a");
        TrustedStore::at(&sibling)
            .store("timestamp.json", b"timestamp 7")
            .unwrap();
        let looped = sibling.join("root.json");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        let new = TrustedStore::at(parent.path().join("root-b"));
        let err = new
            .take_up(parent.path(), "root.json", |_| true)
            .unwrap_err();
        assert!(
            matches!(err, Error::Io { ref path, .. } if *path == looped),
            "{err}"
        );
        assert!(!parent.path().join("root-b").exists());
    }

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
            assert_eq!(store.load("a/b.json").unwrap(), None);
            store.clone().store("a/b.json", b"x").unwrap();
            assert_eq!(store.load("a/b.json").unwrap().as_deref(), Some(&b"x"[..]));
            store.remove("a/b.json").unwrap();
            assert_eq!(store.load("a/b.json").unwrap(), None);
        }
    }

    /// Files left by writers killed mid-write (a verifier containerd stopped at its deadline)
    /// go once they are old; one being written now stays.
    #[tokio::test]
    async fn files_killed_writers_left_go_once_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustedStore::at(dir.path().join("cache"));
        store.store("timestamp.json", b"t").unwrap();
        let at = |name: &str| dir.path().join("cache").join(name);
        let (old, new) = (at(".tuf-oci-old"), at(".tuf-oci-new"));
        for path in [&old, &new] {
            std::fs::write(path, b"half written").unwrap();
        }
        std::fs::create_dir(at(".tuf-oci-dir")).unwrap();
        let long_ago = std::time::SystemTime::now() - 2 * STALE_WRITE;
        for path in [&old, &at("timestamp.json")] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        drop(store.lock().await.unwrap());
        assert!(!old.exists());
        assert!(new.exists() && at(".tuf-oci-dir").is_dir());
        assert_eq!(
            store.load("timestamp.json").unwrap().as_deref(),
            Some(&b"t"[..])
        );
    }

    /// A copy a take-up killed half way left beside the trusted directories goes once old;
    /// one being made now stays.
    #[test]
    fn copies_killed_take_ups_left_go_once_old() {
        let parent = tempfile::tempdir().unwrap();
        let (old, new) = (
            parent.path().join(".taking-up-old"),
            parent.path().join(".taking-up-new"),
        );
        for dir in [&old, &new] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("timestamp.json"), b"copied").unwrap();
        }
        std::fs::File::open(&old)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - 2 * STALE_WRITE)
            .unwrap();
        let store = TrustedStore::at(parent.path().join("root-a"));
        store.take_up(parent.path(), "root.json", |_| true).unwrap();
        assert!(!old.exists());
        assert!(new.join("timestamp.json").exists());
    }

    /// The lock of another process (another open of the lock file, which `flock` tells apart
    /// the same way) is waited for without holding up the runtime's other tasks.
    #[tokio::test(flavor = "current_thread")]
    async fn a_held_lock_is_waited_for_beside_other_work() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustedStore::at(dir.path().join("cache"));
        let held = store.lock().await.unwrap();
        let other = store.clone();
        let waiting = tokio::spawn(async move { other.lock().await.map(drop) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the waiter gave up or took a held lock"
        );
        drop(held);
        waiting.await.unwrap().unwrap();
    }
}
