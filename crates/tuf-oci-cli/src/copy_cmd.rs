//! `tuf-oci copy`: endpoints (`host/repo[:tag]`, `oci:DIR[:repo[:tag]]`,
//! `oci-archive:FILE[:repo[:tag]]`) and the copy between them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use tuf_oci::Registry;
use tuf_oci::copy::is_metadata_tag;
use tuf_oci::copy::{CopyOptions, CopyReport, Tags, copy_repository};
use tuf_oci::store::{
    BUNDLE_REPOSITORY, ContentStore, IMAGE_NAME, LayoutStore, RegistryStore, Unpacked, kept_links,
    pack, unpack,
};

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A registry repository.
    Registry {
        host: String,
        path: String,
        tag: Option<String>,
    },
    /// An OCI layout directory.
    Layout {
        dir: PathBuf,
        path: Option<String>,
        tag: Option<String>,
    },
    /// A tar of an OCI layout.
    Archive {
        file: PathBuf,
        path: Option<String>,
        tag: Option<String>,
    },
}

impl Endpoint {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let by_digest =
            || anyhow!("{text}: copies are by tag (target names are tags); drop the digest");
        let split_ref = |rest: &str| -> anyhow::Result<(PathBuf, Option<String>, Option<String>)> {
            let (file, reference) = match rest.split_once(':') {
                Some((_, reference)) if reference.contains('@') => return Err(by_digest()),
                Some((file, reference)) => (file, Some(reference)),
                None => (rest, None),
            };
            let (path, tag) = match reference.map(split_tag) {
                Some((path, tag)) => (Some(path), tag),
                None => (None, None),
            };
            Ok((PathBuf::from(file), path, tag))
        };
        if let Some(rest) = text.strip_prefix("oci-archive:") {
            let (file, path, tag) = split_ref(rest)?;
            return Ok(Endpoint::Archive { file, path, tag });
        }
        if let Some(rest) = text.strip_prefix("oci:") {
            let (dir, path, tag) = split_ref(rest)?;
            return Ok(Endpoint::Layout { dir, path, tag });
        }
        if let Some((scheme, _)) = text.split_once("://") {
            bail!(
                "unknown transport {scheme}:// (use host/repo[:tag], oci:DIR or oci-archive:FILE)"
            );
        }
        if text.contains('@') {
            return Err(by_digest());
        }
        let (reference, tag) = split_tag(text);
        let repository = tuf_oci::Repository::parse(&reference)?;
        Ok(Endpoint::Registry {
            host: repository.registry,
            path: repository.path,
            tag,
        })
    }

    fn tag(&self) -> Option<&String> {
        match self {
            Endpoint::Registry { tag, .. }
            | Endpoint::Layout { tag, .. }
            | Endpoint::Archive { tag, .. } => tag.as_ref(),
        }
    }
}

/// `path[:tag]`, where a tag is after the last `/`.
fn split_tag(text: &str) -> (String, Option<String>) {
    let slash = text.rfind('/').map_or(0, |i| i + 1);
    match text[slash..].rfind(':') {
        Some(colon) => (
            text[..slash + colon].to_string(),
            Some(text[slash + colon + 1..].to_string()),
        ),
        None => (text.to_string(), None),
    }
}

/// The image tags a copy from `from` to `to` writes: the source's tag, or with `all_tags`
/// every tag.
pub fn tags(from: &Endpoint, to: &Endpoint, all_tags: bool) -> anyhow::Result<Tags> {
    let tags = match (from.tag(), all_tags) {
        (Some(tag), false) => Tags::Only(vec![tag.clone()]),
        (None, true) if to.tag().is_some() => {
            bail!("--all-tags copies every tag under its own name: the destination takes no tag")
        }
        (None, true) => Tags::All,
        (Some(_), true) => bail!("give a tag or --all-tags, not both"),
        (None, false) => bail!("the source names no tag: give one, or --all-tags"),
    };
    if let (Some(a), Some(b)) = (from.tag(), to.tag())
        && a != b
    {
        bail!("tags cannot be renamed by a copy: target names end with the tag ({a} vs {b})");
    }
    Ok(tags)
}

/// Runs a copy and returns its report and the repository paths on both sides.
pub async fn run(
    registry: &Registry,
    from: &Endpoint,
    to: &Endpoint,
    options: &CopyOptions,
) -> anyhow::Result<(CopyReport, String, String)> {
    let staging = tempfile::tempdir().context("creating a temporary directory for the copy")?;
    match from {
        Endpoint::Registry { host, path, .. } => {
            let store = RegistryStore::new(registry.clone(), host);
            into(
                registry,
                &store,
                path,
                Some(host),
                to,
                options,
                staging.path(),
            )
            .await
        }
        Endpoint::Layout { dir, path, .. } => {
            let store = LayoutStore::open(dir, false)?;
            let path = layout_path(&store, path.as_deref())?;
            into(registry, &store, &path, None, to, options, staging.path()).await
        }
        Endpoint::Archive { file, path, .. } => {
            let dir = staging.path().join("source");
            unpack(file, &dir, Unpacked::Layout)
                .with_context(|| format!("reading archive {}", file.display()))?;
            let store = LayoutStore::open(&dir, false)
                .with_context(|| format!("{} is not an OCI layout archive", file.display()))?
                .unpacked_from(file);
            let path = layout_path(&store, path.as_deref())?;
            into(registry, &store, &path, None, to, options, staging.path()).await
        }
    }
}

fn layout_path(store: &LayoutStore, path: Option<&str>) -> anyhow::Result<String> {
    match path {
        Some(path) => Ok(path.to_string()),
        None => store.annotation(BUNDLE_REPOSITORY).with_context(|| {
            format!(
                "{}: name the repository (no {BUNDLE_REPOSITORY} annotation)",
                store.describe()
            )
        }),
    }
}

async fn into<S: ContentStore>(
    registry: &Registry,
    from: &S,
    source: &str,
    host: Option<&str>,
    to: &Endpoint,
    options: &CopyOptions,
    staging: &Path,
) -> anyhow::Result<(CopyReport, String, String)> {
    let mut progress = |line: &str| eprintln!("{line}");
    match to {
        Endpoint::Registry {
            host: dest_host,
            path,
            ..
        } => {
            let store = RegistryStore::new(registry.clone(), dest_host);
            let report =
                copy_repository(from, source, host, &store, path, options, &mut progress).await?;
            Ok((report, source.to_string(), path.clone()))
        }
        Endpoint::Layout { dir, path, .. } => {
            let destination = path.clone().unwrap_or_else(|| source.to_string());
            // A dry run into a layout not there yet compares with an empty one, and creates
            // nothing where the layout would be.
            let dir = if options.dry_run && !dir.join("index.json").exists() {
                &staging.join("dry-run")
            } else {
                dir
            };
            let report =
                into_layout(from, source, host, (dir, None), &destination, options).await?;
            Ok((report, source.to_string(), destination))
        }
        Endpoint::Archive { file, path, .. } => {
            let destination = path.clone().unwrap_or_else(|| source.to_string());
            // An archive there already is added to, as a layout is: what it holds is kept,
            // and compared with what is copied in. A lock file beside it (the archive itself
            // is replaced, so cannot carry the lock) keeps a second writer out meanwhile.
            // A dry run writes nothing, its lock included.
            let _writing = (!options.dry_run).then(|| lock_beside(file)).transpose()?;
            let dir = staging.join("destination");
            let mut links = Vec::new();
            if file.exists() {
                unpack(file, &dir, Unpacked::Files)
                    .and_then(|()| kept_links(file, &dir))
                    .map(|kept| links = kept)
                    .with_context(|| format!("reading archive {}", file.display()))?;
            }
            let report = into_layout(
                from,
                source,
                host,
                (&dir, Some(file)),
                &destination,
                options,
            )
            .await?;
            if !options.dry_run {
                pack(&dir, file, &links)?;
            }
            Ok((report, source.to_string(), destination))
        }
    }
}

/// Takes the lock of archive `file`: `.<name>.lock` beside it, created when missing and left
/// there (removing it would let a writer waiting on the old file race one taking a new one).
fn lock_beside(file: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let name = file
        .file_name()
        .with_context(|| format!("{}: not a file name", file.display()))?;
    let lock = file.with_file_name(format!(".{}.lock", name.to_string_lossy()));
    // Never through a symbolic link, nor on anything but a plain file: in a shared directory,
    // a link planted there would have the lock made, or taken, on whatever file it names, and
    // a FIFO would hold the copy up. A new lock is made exclusively (which follows no link).
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let open = |create: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(create)
            .create_new(create)
            .custom_flags(flags.bits() as i32)
            .open(&lock)
    };
    let opened = match open(false) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match open(true) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => open(false),
            created => created,
        },
        opened => opened,
    };
    let not_plain = || {
        anyhow::anyhow!(
            "{} is no plain file (a symbolic link?): not taken as the archive's lock",
            lock.display()
        )
    };
    let handle = match opened {
        Ok(handle) => handle,
        // What `O_NOFOLLOW` answers for a link.
        Err(_) if std::fs::symlink_metadata(&lock).is_ok_and(|m| m.file_type().is_symlink()) => {
            return Err(not_plain());
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", lock.display())),
    };
    anyhow::ensure!(handle.metadata()?.file_type().is_file(), not_plain());
    tuf_oci::store::lock_file(&handle, &lock)?;
    // Still the file the name holds, once locked: one swapped for another meanwhile would
    // have two copies lock two files.
    let (held, named) = (handle.metadata()?, std::fs::symlink_metadata(&lock)?);
    anyhow::ensure!(
        (held.dev(), held.ino()) == (named.dev(), named.ino()),
        "{} was replaced while it was being locked: run again",
        lock.display()
    );
    Ok(handle)
}

/// Copies into the OCI layout at `dir` (unpacked from `archive`, when it was: messages name
/// that), recording the image repository in its index.
async fn into_layout<S: ContentStore>(
    from: &S,
    source: &str,
    host: Option<&str>,
    (dir, archive): (&Path, Option<&Path>),
    destination: &str,
    options: &CopyOptions,
) -> anyhow::Result<CopyReport> {
    let store = LayoutStore::open(dir, true)?;
    let store = match archive {
        Some(archive) => store.unpacked_from(archive),
        None => store,
    };
    let mut progress = |line: &str| eprintln!("{line}");
    let report = copy_repository(
        from,
        source,
        host,
        &store,
        destination,
        options,
        &mut progress,
    )
    .await?;
    if !options.dry_run {
        // Images copied from a registry keep the name they were pulled by, for importers.
        if let Some(host) = host {
            for tag in store.tags(destination).await? {
                if !is_metadata_tag(&tag) {
                    let name = format!("{host}/{source}:{tag}");
                    store.annotate(destination, &tag, IMAGE_NAME, &name);
                }
            }
        }
        let name = (BUNDLE_REPOSITORY.to_string(), destination.to_string());
        store.save(&BTreeMap::from([name]))?;
    }
    Ok(report)
}

/// Opens `oci:DIR:repo:tag` / `oci-archive:FILE:repo@digest` for reading (archives are
/// unpacked under `staging`): the store, the repository path and the tag or digest.
pub fn open_layout(text: &str, staging: &Path) -> anyhow::Result<(LayoutStore, String, String)> {
    let (kind, rest) = text
        .split_once(':')
        .context("expected oci: or oci-archive:")?;
    let (file, reference) = rest
        .split_once(':')
        .with_context(|| format!("{text}: name the image as {kind}:PATH:repo:tag"))?;
    let (path, reference) = match reference.split_once('@') {
        Some((path, digest)) => (path.to_string(), digest.to_string()),
        None => match split_tag(reference) {
            (path, Some(tag)) => (path, tag),
            (_, None) => bail!("{text}: name a tag or a digest"),
        },
    };
    let dir = if kind == "oci-archive" {
        let dir = staging.join("archive");
        unpack(Path::new(file), &dir, Unpacked::Layout)
            .with_context(|| format!("reading archive {file}"))?;
        dir
    } else {
        PathBuf::from(file)
    };
    let store =
        LayoutStore::open(&dir, false).with_context(|| format!("{file} is not an OCI layout"))?;
    let store = if kind == "oci-archive" {
        store.unpacked_from(Path::new(file))
    } else {
        store
    };
    Ok((store, path, reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("127.0.0.1:5000/team-a/app:v1").unwrap(),
            Endpoint::Registry {
                host: "127.0.0.1:5000".into(),
                path: "team-a/app".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Endpoint::parse("127.0.0.1:5000/team-a/app").unwrap(),
            Endpoint::Registry {
                host: "127.0.0.1:5000".into(),
                path: "team-a/app".into(),
                tag: None
            }
        );
        assert_eq!(
            Endpoint::parse("oci-archive:./b.tar:team-a/app:v1").unwrap(),
            Endpoint::Archive {
                file: "./b.tar".into(),
                path: Some("team-a/app".into()),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Endpoint::parse("oci:/tmp/x").unwrap(),
            Endpoint::Layout {
                dir: "/tmp/x".into(),
                path: None,
                tag: None
            }
        );
        assert!(
            Endpoint::parse("docker://x/y")
                .unwrap_err()
                .to_string()
                .contains("unknown transport")
        );
        assert!(Endpoint::parse("r:1/a@sha256:00").is_err());
    }
}
