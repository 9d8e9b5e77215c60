//! Files replaced whole. A file is written to a temporary file of its own beside it, synced,
//! and renamed over it, and the rename is synced with the directory: a reader (another process,
//! or this one after a power loss) finds the file before or the file after, never part of one.
//! Trusted metadata cut short would be taken for nothing trusted, and an older state accepted;
//! a root or an archive cut short would be lost work.

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::error::{Error, Result};

/// The names of the files [`replace`] writes before renaming them into place start so.
pub(crate) const TEMP_PREFIX: &str = ".tuf-oci-";

/// Replaces `path` with what `write` writes, the file given mode `mode` whatever the umask (a
/// file replaced keeps no mode of its own). The temporary file is removed if anything fails.
pub fn replace(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = dir_of(path);
    // Its own name: other processes may replace the same file at the same time (containerd
    // runs a verifier per pull beside the long-running service).
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    // Set on the file, not asked of the create, which the process's umask would narrow.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| write(tmp.as_file_mut()))
        .and_then(|()| tmp.as_file().sync_data())
        .map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir_of(path)
}

/// Syncs the directory holding `path`: what was created or renamed there survives a power
/// loss.
pub fn sync_dir_of(path: &Path) -> Result<()> {
    sync_dir(dir_of(path))
}

/// Syncs directory `dir`: what was created or renamed in it survives a power loss.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// The directory holding `path` (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process [`modes_are_set_whatever_the_umask`] starts: the file to write.
    const CHILD: &str = "TUF_OCI_ATOMIC_TEST_FILE";

    #[test]
    fn modes_are_set_whatever_the_umask() {
        if let Some(path) = std::env::var_os(CHILD) {
            replace(Path::new(&path), 0o644, |file| {
                std::io::Write::write_all(file, b"root")
            })
            .unwrap();
            return;
        }
        // This test run again under a umask that keeps group and others out, which a mode
        // asked of the create would obey: a trusted root for clients would be the owner's only.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.json");
        let status = std::process::Command::new("sh")
            .args(["-c", "umask 077 && exec \"$0\" --exact \"$1\" --quiet"])
            .arg(std::env::current_exe().unwrap())
            .arg("atomic::tests::modes_are_set_whatever_the_umask")
            .env(CHILD, &path)
            .status()
            .unwrap();
        assert!(status.success());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn a_file_is_replaced_whole_with_its_mode_and_nothing_left_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.json");
        std::fs::write(&path, b"before").unwrap();
        replace(&path, 0o640, |file| {
            std::io::Write::write_all(file, b"after")
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"after");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);

        // A write that fails leaves the file as it was, and no temporary file.
        let failed = replace(&path, 0o644, |file| {
            std::io::Write::write_all(file, b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(failed.to_string().contains("root.json"), "{failed}");
        assert_eq!(std::fs::read(&path).unwrap(), b"after");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["root.json"]);
    }
}
