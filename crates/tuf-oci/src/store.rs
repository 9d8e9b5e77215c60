//! Where OCI content is copied from and to: a registry, or an OCI image layout directory (and a
//! tar of one, `oci-archive`). Repositories are named by path; in a layout, tags are the index
//! entries annotated `org.opencontainers.image.ref.name` = `<repository path>:<tag>`, so one
//! layout carries an image repository and its TUF metadata repository together.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::grammar;
use crate::layout::{Entry, INDEX_MEDIA_TYPE, sha256_digest};
use crate::location::Repository;
use crate::registry::{BlobStream, Registry, checked};

/// Chunk size of blobs read from a layout.
const CHUNK: usize = 1 << 20;
/// Largest layout `index.json` read. It names every tag of a bundle, including every role
/// version of its metadata repository, so it grows with the metadata's history: allow as much
/// as the largest TUF file (targets, 32 MiB), some 100,000 entries, and no more.
pub const INDEX_LIMIT: u64 = 32 << 20;

/// Annotation naming an index entry of an OCI layout (OCI image-spec, "Pre-Defined Annotation
/// Keys").
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation naming an index entry by its full reference (`host/path:tag`), which containerd
/// (`ctr images import`, nerdctl load) prefers over [`REF_NAME`] when importing a layout.
pub const IMAGE_NAME: &str = "io.containerd.image.name";
/// Annotation on a bundle's `index.json` naming the image repository it was made from.
pub const BUNDLE_REPOSITORY: &str = "tuf.io/image-repository";

/// A manifest or index as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its media type ([`crate::layout::manifest_media_type`]).
    pub media_type: String,
    /// `sha256:` of the bytes.
    pub digest: String,
}

/// Content addressed by repository path and tag or digest.
pub trait ContentStore: Send + Sync {
    /// A short description for messages (`127.0.0.1:5000`, `oci:/tmp/bundle`).
    fn describe(&self) -> String;
    /// The manifest or index at `reference` (tag or digest), if present.
    fn manifest(
        &self,
        repository: &str,
        reference: &str,
        limit: u64,
    ) -> impl Future<Output = Result<Option<Stored>>> + Send;
    /// A blob, checked against its digest and size.
    fn blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
    ) -> impl Future<Output = Result<Vec<u8>>> + Send;
    /// Whether blob `digest` is present.
    fn has_blob(&self, repository: &str, digest: &str)
    -> impl Future<Output = Result<bool>> + Send;
    /// Stores a blob.
    fn put_blob(
        &self,
        repository: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> impl Future<Output = Result<()>> + Send;
    /// A blob as a stream, checked against its digest and size as it is read.
    fn open_blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
    ) -> impl Future<Output = Result<BlobStream>> + Send;
    /// Stores a blob from a stream of `size` bytes, refusing it unless it hashes to `digest`.
    /// Callers first check it is absent ([`ContentStore::has_blob`]).
    fn put_blob_stream(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        data: BlobStream,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Makes blob `digest` of repository `from` on registry `from_host` present here without
    /// moving data, when the store can (a cross-repository mount). Returns whether it did.
    fn mount(
        &self,
        repository: &str,
        digest: &str,
        from_host: Option<&str>,
        from: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Stores a manifest under `reference` (a tag, or its digest).
    fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The tags of `repository`.
    fn tags(&self, repository: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
}

/// A store lent out: a copy verifies its source through a borrowed store before writing.
impl<T: ContentStore> ContentStore for &T {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn manifest(
        &self,
        repository: &str,
        reference: &str,
        limit: u64,
    ) -> impl Future<Output = Result<Option<Stored>>> + Send {
        (**self).manifest(repository, reference, limit)
    }
    fn blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
    ) -> impl Future<Output = Result<Vec<u8>>> + Send {
        (**self).blob(repository, digest, size)
    }
    fn has_blob(
        &self,
        repository: &str,
        digest: &str,
    ) -> impl Future<Output = Result<bool>> + Send {
        (**self).has_blob(repository, digest)
    }
    fn put_blob(
        &self,
        repository: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).put_blob(repository, media_type, bytes)
    }
    fn open_blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
    ) -> impl Future<Output = Result<BlobStream>> + Send {
        (**self).open_blob(repository, digest, size)
    }
    fn put_blob_stream(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        data: BlobStream,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).put_blob_stream(repository, digest, size, data)
    }
    fn mount(
        &self,
        repository: &str,
        digest: &str,
        from_host: Option<&str>,
        from: &str,
    ) -> impl Future<Output = Result<bool>> + Send {
        (**self).mount(repository, digest, from_host, from)
    }
    fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).put_manifest(repository, reference, bytes, media_type)
    }
    fn tags(&self, repository: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        (**self).tags(repository)
    }
}

/// One registry host.
#[derive(Debug, Clone)]
pub struct RegistryStore {
    registry: Registry,
    host: String,
}

impl RegistryStore {
    /// Repositories of `host`, through `registry`.
    pub fn new(registry: Registry, host: impl Into<String>) -> Self {
        RegistryStore {
            registry,
            host: host.into(),
        }
    }

    fn repository(&self, path: &str) -> Repository {
        Repository {
            registry: self.host.clone(),
            path: path.to_string(),
        }
    }
}

fn reference_of(repository: &Repository, reference: &str) -> oci_client::Reference {
    if reference.contains(':') {
        repository.digested(reference)
    } else {
        repository.tagged(reference)
    }
}

impl ContentStore for RegistryStore {
    fn describe(&self) -> String {
        self.host.clone()
    }

    async fn manifest(
        &self,
        repository: &str,
        reference: &str,
        limit: u64,
    ) -> Result<Option<Stored>> {
        let repository = self.repository(repository);
        Ok(self
            .registry
            .manifest(&reference_of(&repository, reference), limit)
            .await?
            .map(|m| Stored {
                bytes: m.bytes,
                media_type: m.media_type,
                digest: m.digest,
            }))
    }

    async fn blob(&self, repository: &str, digest: &str, size: u64) -> Result<Vec<u8>> {
        self.registry
            .blob(&self.repository(repository), digest, size)
            .await
    }

    async fn has_blob(&self, repository: &str, digest: &str) -> Result<bool> {
        self.registry
            .has_blob(&self.repository(repository), digest)
            .await
    }

    async fn put_blob(&self, repository: &str, media_type: &str, bytes: &[u8]) -> Result<()> {
        self.registry
            .push_blob(&self.repository(repository), media_type, bytes)
            .await
            .map(|_| ())
    }

    async fn open_blob(&self, repository: &str, digest: &str, size: u64) -> Result<BlobStream> {
        self.registry
            .blob_stream(&self.repository(repository), digest, size)
            .await
    }

    async fn put_blob_stream(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        data: BlobStream,
    ) -> Result<()> {
        self.registry
            .push_blob_stream(&self.repository(repository), digest, size, data)
            .await
    }

    async fn mount(
        &self,
        repository: &str,
        digest: &str,
        from_host: Option<&str>,
        from: &str,
    ) -> Result<bool> {
        if from_host != Some(self.host.as_str()) {
            return Ok(false);
        }
        self.registry
            .mount(&self.repository(repository), &self.repository(from), digest)
            .await
    }

    async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<()> {
        let repository = self.repository(repository);
        self.registry
            .push_manifest(&reference_of(&repository, reference), bytes, media_type)
            .await
            .map(|_| ())
    }

    async fn tags(&self, repository: &str) -> Result<Vec<String>> {
        self.registry.tags(&self.repository(repository)).await
    }
}

/// The parts of an OCI layout `index.json` this store reads and writes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutIndex {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<Entry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// Takes the exclusive file lock on `file` (opened from `path`), held until the file is
/// closed: what a layout's writer holds on its directory ([`LayoutStore::open`]), and a writer
/// of an archive on a lock file beside it while it reads the archive and writes it anew, so
/// that a second writer never drops what the first adds. Another holder is waited for a few
/// seconds, then named.
pub fn lock_file(file: &std::fs::File, path: &Path) -> Result<()> {
    crate::trusted::lock_within(file, path)
}

/// An OCI image layout directory. Changes to `index.json` are kept in memory until
/// [`LayoutStore::save`], so a layout is never left naming blobs it does not have.
#[derive(Debug)]
pub struct LayoutStore {
    dir: PathBuf,
    /// How messages name it ([`LayoutStore::unpacked_from`]).
    name: String,
    index: Mutex<LayoutIndex>,
    /// The directory, locked while opened for writing: `index.json` is read at open and
    /// written whole at save, so a second writer in between would lose the first's tags.
    _writing: Option<std::fs::File>,
}

impl LayoutStore {
    /// Opens the layout at `dir`. With `create`, for writing: an empty one is made when none
    /// exists, and the directory stays locked until the store is dropped (another writer
    /// waits a few seconds, then fails naming the lock).
    pub fn open(dir: &Path, create: bool) -> Result<Self> {
        let writing = if create {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            let handle = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
            lock_file(&handle, dir)?;
            Some(handle)
        } else {
            None
        };
        let index_path = dir.join("index.json");
        let index = match read_limited(&index_path, INDEX_LIMIT) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
                role: index_path.display().to_string(),
                message: e.to_string(),
            })?,
            Ok(None) if create => {
                std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(|e| Error::io(dir, e))?;
                std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
                    .map_err(|e| Error::io(dir, e))?;
                LayoutIndex {
                    schema_version: 2,
                    media_type: Some(INDEX_MEDIA_TYPE.into()),
                    ..LayoutIndex::default()
                }
            }
            Ok(None) => {
                let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
                return Err(Error::io(index_path, missing));
            }
            // `TooLarge` already names `index.json` by its path.
            Err(e) => return Err(e),
        };
        Ok(LayoutStore {
            dir: dir.to_path_buf(),
            name: format!("oci:{}", dir.display()),
            index: Mutex::new(index),
            _writing: writing,
        })
    }

    /// This layout, unpacked from `archive` into a directory of the program's own: messages
    /// name the archive, not a directory gone once the program ends.
    pub fn unpacked_from(self, archive: &Path) -> Self {
        LayoutStore {
            name: format!("oci-archive:{}", archive.display()),
            ..self
        }
    }

    /// Writes `index.json` (atomically), with `annotations` added to it.
    pub fn save(&self, annotations: &BTreeMap<String, String>) -> Result<()> {
        let mut index = self.index.lock().expect("not poisoned").clone();
        index.annotations.extend(annotations.clone());
        let bytes = serde_json::to_vec_pretty(&index).expect("index serializes");
        crate::atomic::replace(&self.dir.join("index.json"), 0o644, |file| {
            std::io::Write::write_all(file, &bytes)
        })
    }

    /// Adds an annotation to the entry named `repository:tag` (kept until [`LayoutStore::save`]).
    pub fn annotate(&self, repository: &str, tag: &str, key: &str, value: &str) {
        let name = format!("{repository}:{tag}");
        let mut index = self.index.lock().expect("not poisoned");
        for entry in &mut index.manifests {
            if entry.annotations.get(REF_NAME) == Some(&name) {
                entry.annotations.insert(key.into(), value.into());
            }
        }
    }

    /// An annotation of the layout's `index.json`.
    pub fn annotation(&self, key: &str) -> Option<String> {
        self.index
            .lock()
            .expect("not poisoned")
            .annotations
            .get(key)
            .cloned()
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| Error::InvalidReference {
                reference: digest.to_string(),
                reason: "not a sha256 digest".into(),
            })?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    fn read_blob(&self, digest: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let path = self.blob_path(digest)?;
        let bytes = match read_limited(&path, limit) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(Error::TooLarge { limit, .. }) => {
                return Err(Error::TooLarge {
                    what: format!("{digest} in {}", self.describe()),
                    limit,
                });
            }
            Err(e) => return Err(e),
        };
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("{digest} in {}", self.describe()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(Some(bytes))
    }

    /// Whether the layout holds blob `digest`: a file of that name whose bytes hash to it.
    /// One that does not (a layout or archive from elsewhere, edited by hand) is written over.
    /// Hashed beside the runtime's workers: layers run to gigabytes.
    async fn holds(&self, digest: &str) -> Result<bool> {
        let (path, digest) = (self.blob_path(digest)?, digest.to_string());
        let hashed = path.clone();
        tokio::task::spawn_blocking(move || hashes_to(&hashed, &digest))
            .await
            .map_err(|e| Error::io(&path, std::io::Error::other(e)))
    }

    fn write_blob(&self, bytes: &[u8]) -> Result<String> {
        let digest = sha256_digest(bytes);
        let path = self.blob_path(&digest)?;
        if !hashes_to(&path, &digest) {
            let tmp = path.with_extension("tmp");
            new_file(&tmp)
                .and_then(|mut file| std::io::Write::write_all(&mut file, bytes))
                .map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(digest)
    }
}

/// A file made anew at `path`, whatever was there (a file left by a write cut short, or a link
/// someone planted in the layout: removed, never written through).
fn new_file(path: &Path) -> std::io::Result<std::fs::File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Whether the file at `path` is a regular file whose bytes hash to `digest`. Not a regular
/// file (a link, say) does not: the write that follows replaces the name.
fn hashes_to(path: &Path, digest: &str) -> bool {
    use sha2::Digest as _;
    let Ok(Some(mut file)) = open_regular(path) else {
        return false;
    };
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).is_ok()
        && format!("sha256:{}", hex::encode(hasher.finalize())) == digest
}

/// Opens `path` for reading, `None` when absent. Only a regular file is opened, and a symlink is
/// not followed: a layout (an unpacked archive, say) must not make us read `/dev/zero` or a host
/// file through a link. (Without `libc` there is no `O_NOFOLLOW`: look at the path without
/// following it, open it, and check what was opened is what was looked at.)
fn open_regular(path: &Path) -> Result<Option<std::fs::File>> {
    let looked = match std::fs::symlink_metadata(path) {
        Ok(looked) => looked,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let not_regular = || {
        let what = if looked.file_type().is_symlink() {
            "a symbolic link, which is not followed"
        } else {
            "not a regular file"
        };
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, what),
        )
    };
    if !looked.file_type().is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let opened = file.metadata().map_err(|e| Error::io(path, e))?;
    if !opened.is_file() || !same_file(&looked, &opened) {
        return Err(not_regular());
    }
    Ok(Some(file))
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

/// The bytes of the regular file `path` ([`open_regular`]), `None` when absent. Reads at most
/// `limit` + 1 bytes, whatever the file's size: a larger file is refused without being read.
fn read_limited(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let Some(file) = open_regular(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge {
            what: path.display().to_string(),
            limit,
        });
    }
    Ok(Some(bytes))
}

impl ContentStore for LayoutStore {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn manifest(
        &self,
        repository: &str,
        reference: &str,
        limit: u64,
    ) -> Result<Option<Stored>> {
        let digest = if reference.contains(':') {
            reference.to_string()
        } else {
            let name = format!("{repository}:{reference}");
            let index = self.index.lock().expect("not poisoned");
            match index
                .manifests
                .iter()
                .find(|m| m.annotations.get(REF_NAME) == Some(&name))
            {
                Some(entry) => entry.digest.clone(),
                None => return Ok(None),
            }
        };
        let Some(bytes) = self.read_blob(&digest, limit)? else {
            return Ok(None);
        };
        let media_type =
            crate::layout::manifest_media_type(&bytes).ok_or_else(|| Error::Parse {
                role: format!("{digest} in {}", self.describe()),
                message: crate::layout::NO_MEDIA_TYPE.into(),
            })?;
        Ok(Some(Stored {
            bytes,
            media_type,
            digest,
        }))
    }

    async fn blob(&self, _repository: &str, digest: &str, size: u64) -> Result<Vec<u8>> {
        self.read_blob(digest, size)?
            .ok_or_else(|| Error::NotFound {
                what: format!("blob {digest} in {}", self.describe()),
            })
    }

    async fn has_blob(&self, _repository: &str, digest: &str) -> Result<bool> {
        self.holds(digest).await
    }

    async fn put_blob(&self, _repository: &str, _media_type: &str, bytes: &[u8]) -> Result<()> {
        self.write_blob(bytes).map(|_| ())
    }

    async fn open_blob(&self, _repository: &str, digest: &str, size: u64) -> Result<BlobStream> {
        let path = self.blob_path(digest)?;
        let file = match open_regular(&path)? {
            Some(file) => tokio::fs::File::from_std(file),
            None => {
                return Err(Error::NotFound {
                    what: format!("blob {digest} in {}", self.describe()),
                });
            }
        };
        let chunks = futures_util::stream::unfold(Some((file, path)), |state| async move {
            use tokio::io::AsyncReadExt as _;
            let (mut file, path) = state?;
            let mut buffer = vec![0; CHUNK];
            match file.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(bytes::Bytes::from(buffer)), Some((file, path))))
                }
                Err(e) => Some((Err(Error::io(&path, e)), None)),
            }
        });
        let what = format!("{digest} in {}", self.describe());
        Ok(checked(Box::pin(chunks), what, digest.to_string(), size))
    }

    async fn put_blob_stream(
        &self,
        _repository: &str,
        digest: &str,
        size: u64,
        data: BlobStream,
    ) -> Result<()> {
        use futures_util::StreamExt as _;
        use tokio::io::AsyncWriteExt as _;
        let path = self.blob_path(digest)?;
        if self.holds(digest).await? {
            return Ok(());
        }
        let tmp = path.with_extension("tmp");
        let mut file = new_file(&tmp)
            .map(tokio::fs::File::from_std)
            .map_err(|e| Error::io(&tmp, e))?;
        let what = format!("{digest} for {}", self.describe());
        let mut data = checked(data, what, digest.to_string(), size);
        while let Some(chunk) = data.next().await {
            let written = match chunk {
                Ok(chunk) => file.write_all(&chunk).await.map_err(|e| Error::io(&tmp, e)),
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        }
        file.flush().await.map_err(|e| Error::io(&tmp, e))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| Error::io(&path, e))
    }

    async fn mount(
        &self,
        _repository: &str,
        _digest: &str,
        _from_host: Option<&str>,
        _from: &str,
    ) -> Result<bool> {
        Ok(false)
    }

    async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<()> {
        let digest = self.write_blob(bytes)?;
        if reference.contains(':') {
            return Ok(());
        }
        let name = format!("{repository}:{reference}");
        let mut entry = Entry::of(media_type, bytes);
        entry.annotations.insert(REF_NAME.into(), name.clone());
        debug_assert_eq!(entry.digest, digest);
        let mut index = self.index.lock().expect("not poisoned");
        index
            .manifests
            .retain(|m| m.annotations.get(REF_NAME) != Some(&name));
        index.manifests.push(entry);
        Ok(())
    }

    async fn tags(&self, repository: &str) -> Result<Vec<String>> {
        let prefix = format!("{repository}:");
        let index = self.index.lock().expect("not poisoned");
        Ok(index
            .manifests
            .iter()
            .filter_map(|m| m.annotations.get(REF_NAME)?.strip_prefix(&prefix))
            .filter(|tag| grammar::check_tag(tag).is_ok())
            .map(str::to_string)
            .collect())
    }
}

/// How deep indexes may nest (an index of indexes of ...): deeper graphs are refused rather
/// than followed, whoever signed them.
pub const MAX_INDEX_DEPTH: usize = 8;

/// What a manifest or index references: its blobs (config and layers) and child manifests.
pub fn references(stored: &Stored) -> Result<(Vec<Entry>, Vec<Entry>)> {
    let manifest = crate::layout::Manifest::parse(&stored.digest, &stored.bytes)?;
    let config: Option<Entry> = serde_json::from_slice::<serde_json::Value>(&stored.bytes)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("config")?.clone()).ok());
    let blobs = config.into_iter().chain(manifest.layers).collect();
    Ok((blobs, manifest.manifests))
}

/// Refuses a graph nested deeper than [`MAX_INDEX_DEPTH`].
pub(crate) fn check_depth(stored: &Stored, depth: usize) -> Result<()> {
    if depth > MAX_INDEX_DEPTH {
        return Err(Error::Parse {
            role: stored.digest.clone(),
            message: format!("indexes nested deeper than {MAX_INDEX_DEPTH} levels"),
        });
    }
    Ok(())
}

/// Reads every object `stored` references (child manifests, configs, layers), streamed and
/// checked against its digest and size: a tampered layer anywhere in the graph fails. Returns
/// how many objects were read.
pub async fn check_graph<S: ContentStore>(store: &S, path: &str, stored: &Stored) -> Result<usize> {
    check_graph_at(store, path, stored, 0).await
}

async fn check_graph_at<S: ContentStore>(
    store: &S,
    path: &str,
    stored: &Stored,
    depth: usize,
) -> Result<usize> {
    use futures_util::StreamExt as _;
    check_depth(stored, depth)?;
    let (blobs, children) = references(stored)?;
    let mut count = 0;
    for blob in &blobs {
        let mut data = store.open_blob(path, &blob.digest, blob.size).await?;
        let mut read = 0;
        while let Some(chunk) = data.next().await {
            read += chunk?.len() as u64;
        }
        if read != blob.size {
            return Err(Error::DigestMismatch {
                what: format!("{path}@{} size", blob.digest),
                expected: blob.size.to_string(),
                actual: read.to_string(),
            });
        }
        count += 1;
    }
    for child in &children {
        let child = store
            .manifest(path, &child.digest, child.size.max(4 << 20))
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("{path}@{} in {}", child.digest, store.describe()),
            })?;
        count += 1 + Box::pin(check_graph_at(store, path, &child, depth + 1)).await?;
    }
    Ok(count)
}

/// Packs the layout at `dir` into the tar file `archive`, replaced whole (a reader never sees
/// half an archive, and no other file is touched), with `links` beside it ([`kept_links`]).
pub fn pack(dir: &Path, archive: &Path, links: &[Link]) -> Result<()> {
    // Readable by all: an archive is for carrying elsewhere.
    crate::atomic::replace(archive, 0o644, |file| {
        let mut builder = tar::Builder::new(file);
        builder.follow_symlinks(false);
        builder.append_dir_all(".", dir)?;
        for link in links {
            link.append_to(&mut builder)?;
        }
        builder.finish()
    })
}

/// A symbolic link of an archive, kept to be packed again, never made on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its name in the archive, plain (no `.`, `..` or leading `/`).
    pub path: PathBuf,
    /// What it points at, as written.
    pub target: PathBuf,
}

impl Link {
    /// Appends this link to `builder`, as a link.
    fn append_to<W: std::io::Write>(&self, builder: &mut tar::Builder<W>) -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        builder.append_link(&mut header, &self.path, &self.target)
    }
}

/// Most symbolic links an archive a copy adds to keeps ([`kept_links`]): `docker save` writes
/// one per layer.
const MAX_KEPT_LINKS: usize = 100_000;

/// The symbolic links of `archive` that an archive a copy adds to keeps (`docker save`'s
/// legacy `layer.tar` links beside the layout), once it is unpacked into `dir`
/// ([`Unpacked::Files`]). They are only ever written back into the archive: made on disk, a
/// link under a layout name, however spelt, would have the copy write through it. A link in
/// the layout's own names, or where the archive holds a file of that name, is left out.
pub fn kept_links(archive: &Path, dir: &Path) -> Result<Vec<Link>> {
    let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut reader = tar::Archive::new(file);
    let io = |e| Error::io(archive, e);
    let (mut links, mut seen) = (Vec::new(), std::collections::HashSet::new());
    for entry in reader.entries().map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.header().entry_type() != tar::EntryType::Symlink {
            continue;
        }
        let (Ok(path), Ok(Some(target))) = (entry.path(), entry.link_name()) else {
            continue;
        };
        let mut plain = PathBuf::new();
        for component in path.components() {
            match component {
                std::path::Component::Normal(part) => plain.push(part),
                std::path::Component::CurDir | std::path::Component::RootDir => {}
                _ => {
                    plain = PathBuf::new();
                    break;
                }
            }
        }
        let first = plain.components().next().map(|c| c.as_os_str().to_owned());
        let in_layout = first.as_ref().is_some_and(|first| {
            ["blobs", "oci-layout", "index.json"]
                .iter()
                .any(|n| first == n)
        });
        if first.is_none() || in_layout || std::fs::symlink_metadata(dir.join(&plain)).is_ok() {
            continue;
        }
        let link = Link {
            path: plain,
            target: target.into_owned(),
        };
        // Only what packing writes back (an empty target, a NUL in a name, it refuses), and
        // each name once.
        if link
            .append_to(&mut tar::Builder::new(std::io::sink()))
            .is_err()
            || !seen.insert(link.path.clone())
        {
            continue;
        }
        if links.len() == MAX_KEPT_LINKS {
            return Err(Error::TooLarge {
                what: format!("the symbolic links of {}", archive.display()),
                limit: MAX_KEPT_LINKS as u64,
            });
        }
        links.push(link);
    }
    Ok(links)
}

/// What [`unpack`] takes of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpacked {
    /// The OCI layout only (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): an archive to
    /// read (an import, a copy's source). Anything else is not read, and an archive of a
    /// million directory entries, or of files nested thousands of directories deep, makes
    /// neither directories nor memory.
    Layout,
    /// Every regular file: an archive a copy adds to, whose other files (`docker save`'s
    /// `manifest.json`) are kept (its links too, aside: [`kept_links`]).
    Files,
}

/// Unpacks the tar file `archive` into `dir`, what `what` says. Archives come from anywhere
/// (imports run as root), so only regular files are unpacked (their directories made as they
/// need them): symlinks (to `/dev/zero`, to a host file), hard links, devices and fifos are
/// left out. An OCI layout needs none of them, and `docker save` writes its legacy
/// `layer.tar` files as symlinks beside the layout, so such archives still import; a layout
/// blob that was a link is then simply missing.
pub fn unpack(archive: &Path, dir: &Path, what: Unpacked) -> Result<()> {
    let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut archive_reader = tar::Archive::new(file);
    let io = |e| Error::io(archive, e);
    std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(|e| Error::io(dir, e))?;
    for entry in archive_reader.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let kind = entry.header().entry_type();
        let taken = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                what == Unpacked::Files || is_layout_file(&entry.path_bytes())
            }
            _ => false,
        };
        if taken {
            entry.unpack_in(dir).map_err(io)?;
        } else if !matches!(
            kind,
            // Directories are made as files need them; global PAX headers carry no file.
            tar::EntryType::Directory | tar::EntryType::XGlobalHeader
        ) {
            tracing::debug!(
                archive = %archive.display(),
                entry = %String::from_utf8_lossy(&entry.path_bytes()),
                kind = ?kind,
                "left out: not a file of the layout"
            );
        }
    }
    Ok(())
}

/// Whether an archive entry's `path` names a file of an OCI layout, with or without a
/// leading `./`.
fn is_layout_file(path: &[u8]) -> bool {
    let path = path.strip_prefix(b"./").unwrap_or(path);
    match path.strip_prefix(b"blobs/sha256/") {
        Some(hex) => hex.len() == 64 && hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        None => path == b"oci-layout" || path == b"index.json",
    }
}
