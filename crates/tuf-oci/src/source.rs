//! The I/O boundary of the verification engine: where metadata files come from. The registry is
//! the real source; plain HTTP directories serve independent TUF test suites.

use std::future::Future;

use crate::error::Result;
use crate::layout::{
    EMBED_LIMIT, METADATA_INDEX_LIMIT, METADATA_TAG, Manifest, TOP_LEVEL_ROLES, check_role_name,
    parse_versioned_file, sha256_digest,
};
use crate::location::Repository;
use crate::registry::Registry;
use crate::store::{ContentStore, RegistryStore};

/// Largest manifest wrapping a metadata file that is worth reading.
const METADATA_MANIFEST_LIMIT: u64 = 64 * 1024;

/// A place metadata files are read from, by TUF file name (`3.snapshot.json`, `timestamp.json`).
pub trait MetadataSource: Send + Sync {
    /// Reads file `name`, refusing more than `limit` bytes. `Ok(None)` means the file does not
    /// exist, which TUF distinguishes from a failure (it ends the root N+1 search).
    /// `near` is the repository of the image being verified: delegated targets live beside the
    /// images they sign and are looked for there first.
    fn fetch(
        &self,
        name: &str,
        near: Option<&Repository>,
        limit: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// Reads file `name` when the caller holds a copy that may still be current (`held`):
    /// sources that learn a file's digest before its bytes hand the held copy back instead of
    /// downloading the same bytes again. What comes back is checked like any fetched file.
    fn refetch(
        &self,
        name: &str,
        near: Option<&Repository>,
        limit: u64,
        held: &[u8],
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
        let _ = held;
        self.fetch(name, near, limit)
    }

    /// Reads file `name` only if its bytes come with the object that stores it (embedded in
    /// its manifest): never a download of its own, for files read on the chance that they are
    /// the version wanted. Sources without such objects have none.
    fn fetch_embedded(
        &self,
        name: &str,
        limit: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
        let _ = (name, limit);
        async { Ok(None) }
    }

    /// Reads file `name` whose sha256 `digest` and `length` signed metadata names (snapshot
    /// from timestamp, targets roles from snapshot): content-addressed sources read it by
    /// digest (or from a manifest embedding it) in one request. The caller still checks the
    /// bytes against the digest.
    fn fetch_digest(
        &self,
        name: &str,
        near: Option<&Repository>,
        digest: &str,
        length: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
        let _ = digest;
        self.fetch(name, near, length)
    }
}

/// `inner` as it was under root version `last`: later roots are not there. For a writer
/// finishing a key rotation cut short after its new root was stored, whose published files
/// only the root before it signs ([`crate::Verifier::under_root_before_last`]).
#[derive(Debug, Clone)]
pub struct RootsUpTo<S> {
    /// The source.
    pub inner: S,
    /// The last root version read.
    pub last: u64,
}

impl<S: MetadataSource> MetadataSource for RootsUpTo<S> {
    async fn fetch(
        &self,
        name: &str,
        near: Option<&Repository>,
        limit: u64,
    ) -> Result<Option<Vec<u8>>> {
        if parse_versioned_file(name)
            .is_some_and(|(version, role)| role == "root" && version > self.last)
        {
            return Ok(None);
        }
        self.inner.fetch(name, near, limit).await
    }

    async fn fetch_embedded(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        self.inner.fetch_embedded(name, limit).await
    }

    async fn fetch_digest(
        &self,
        name: &str,
        near: Option<&Repository>,
        digest: &str,
        length: u64,
    ) -> Result<Option<Vec<u8>>> {
        self.inner.fetch_digest(name, near, digest, length).await
    }
}

/// Metadata in a registry, laid out as `docs/layout.md` describes.
#[derive(Debug, Clone)]
pub struct RegistrySource {
    registry: Registry,
    metadata: Repository,
}

impl RegistrySource {
    /// Reads from the metadata repository `metadata` (and from image repositories for
    /// delegated roles).
    pub fn new(registry: Registry, metadata: Repository) -> Self {
        RegistrySource { registry, metadata }
    }

    /// The metadata repository.
    pub fn metadata_repository(&self) -> &Repository {
        &self.metadata
    }

    /// The registry client.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Reads file `name` from one repository.
    pub async fn fetch_from(
        &self,
        repository: &Repository,
        name: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>> {
        let store = RegistryStore::new(self.registry.clone(), &repository.registry);
        fetch_file(&store, &repository.path, name, limit, None).await
    }
}

/// Reads metadata file `name` from repository `path` of `store`: the manifest tagged with the
/// file name, then its one metadata layer, within `limit` bytes: `held`, when the layer is
/// exactly those bytes, else the bytes embedded in the manifest, else the blob.
pub async fn fetch_file<S: ContentStore>(
    store: &S,
    path: &str,
    name: &str,
    limit: u64,
    held: Option<&[u8]>,
) -> Result<Option<Vec<u8>>> {
    let Some(layer) = file_layer(store, path, name, limit).await? else {
        return Ok(None);
    };
    if let Some(held) = held.filter(|h| sha256_digest(h) == layer.digest) {
        return Ok(Some(held.to_vec()));
    }
    if let Some(embedded) = layer.embedded(&described(store, path, name))? {
        return Ok(Some(embedded));
    }
    store.blob(path, &layer.digest, layer.size).await.map(Some)
}

/// The bytes of metadata file `name` in repository `path` of `store` if its manifest embeds
/// them; `None` when the file is missing or stored only as a blob.
pub async fn embedded_file<S: ContentStore>(
    store: &S,
    path: &str,
    name: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>> {
    match file_layer(store, path, name, limit).await? {
        Some(layer) => layer.embedded(&described(store, path, name)),
        None => Ok(None),
    }
}

/// How errors name metadata file `name` in repository `path` of `store`.
fn described<S: ContentStore>(store: &S, path: &str, name: &str) -> String {
    format!("{name} in {} {path}", store.describe())
}

/// The layer holding metadata file `name` in repository `path` of `store`, at most `limit`
/// bytes; `None` when there is no such file.
async fn file_layer<S: ContentStore>(
    store: &S,
    path: &str,
    name: &str,
    limit: u64,
) -> Result<Option<crate::layout::Entry>> {
    // File names become tags: refuse role names that are not valid tags.
    let role = name.strip_suffix(".json").unwrap_or(name);
    let role = match role.split_once('.') {
        Some((version, rest)) if version.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => role,
    };
    if !TOP_LEVEL_ROLES.contains(&role) {
        check_role_name(role).map_err(|e| crate::Error::InvalidDelegation {
            role: role.to_string(),
            reason: format!("no file {name} can be read for it: {e}"),
        })?;
    }
    let Some(manifest) = store.manifest(path, name, METADATA_MANIFEST_LIMIT).await? else {
        return Ok(None);
    };
    let parsed = Manifest::parse(name, &manifest.bytes)?;
    let layer = parsed.metadata_layer(name)?;
    if layer.size > limit {
        return Err(crate::Error::TooLarge {
            what: described(store, path, name),
            limit,
        });
    }
    Ok(Some(layer.clone()))
}

/// Metadata in any content store (an OCI layout: a bundle carried across an air gap), with
/// the metadata repository at `metadata` and images beside their delegated targets.
#[derive(Debug)]
pub struct StoreSource<S> {
    store: S,
    metadata: String,
}

impl<S: ContentStore> StoreSource<S> {
    /// Reads from repository path `metadata` of `store`.
    pub fn new(store: S, metadata: impl Into<String>) -> Self {
        StoreSource {
            store,
            metadata: metadata.into(),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }
}

impl<S: ContentStore> MetadataSource for StoreSource<S> {
    async fn fetch(
        &self,
        name: &str,
        near: Option<&Repository>,
        limit: u64,
    ) -> Result<Option<Vec<u8>>> {
        let beside = near
            .filter(|r| r.path != self.metadata)
            .map(|image| || fetch_file(&self.store, &image.path, name, limit, None));
        beside_first(name, beside, || {
            fetch_file(&self.store, &self.metadata, name, limit, None)
        })
        .await
    }

    async fn fetch_embedded(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        embedded_file(&self.store, &self.metadata, name, limit).await
    }

    async fn fetch_digest(
        &self,
        name: &str,
        near: Option<&Repository>,
        digest: &str,
        length: u64,
    ) -> Result<Option<Vec<u8>>> {
        // By the digest first, as from a registry: a junk copy tagged beside the image holds
        // nothing up. Writers store every versioned file's bytes as a blob.
        match self.store.blob(&self.metadata, digest, length).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(crate::Error::NotFound { .. }) => self.fetch(name, near, length).await,
            Err(e) => Err(e),
        }
    }
}

impl MetadataSource for RegistrySource {
    async fn fetch(
        &self,
        name: &str,
        near: Option<&Repository>,
        limit: u64,
    ) -> Result<Option<Vec<u8>>> {
        let beside = near
            .filter(|r| **r != self.metadata)
            .map(|image| || self.fetch_from(image, name, limit));
        beside_first(name, beside, || {
            self.fetch_from(&self.metadata, name, limit)
        })
        .await
    }

    async fn fetch_embedded(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let store = RegistryStore::new(self.registry.clone(), &self.metadata.registry);
        embedded_file(&store, &self.metadata.path, name, limit).await
    }

    async fn refetch(
        &self,
        name: &str,
        near: Option<&Repository>,
        limit: u64,
        held: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        if near.is_some_and(|r| *r != self.metadata) {
            return self.fetch(name, near, limit).await;
        }
        let store = RegistryStore::new(self.registry.clone(), &self.metadata.registry);
        fetch_file(&store, &self.metadata.path, name, limit, Some(held)).await
    }

    async fn fetch_digest(
        &self,
        name: &str,
        near: Option<&Repository>,
        digest: &str,
        length: u64,
    ) -> Result<Option<Vec<u8>>> {
        // A small file is embedded in its manifest, which registries serve faster than a blob
        // (distribution 2.8 takes about three times as long for a blob; registries that keep
        // blobs in object storage redirect, another round trip). This read is only a shortcut:
        // whatever it meets (a tag moved elsewhere, no embedded copy, a failed request) costs
        // the blob read below, never the verification.
        if length <= EMBED_LIMIT as u64 {
            let store = RegistryStore::new(self.registry.clone(), &self.metadata.registry);
            match embedded_file(&store, &self.metadata.path, name, length).await {
                Ok(Some(bytes)) if sha256_digest(&bytes) == digest => return Ok(Some(bytes)),
                Ok(Some(_)) => tracing::debug!(file = name, "embedded copy is not {digest}"),
                Ok(None) => {}
                Err(e) => tracing::debug!(file = name, error = %e, "embedded copy unreadable"),
            }
        }
        // Writers store every versioned file's bytes as a blob of the metadata repository.
        match self.registry.blob(&self.metadata, digest, length).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(crate::Error::NotFound { .. }) => self.fetch(name, near, length).await,
            Err(e) => Err(e),
        }
    }
}

/// File `name` as read `beside` the image (when there is such a copy to read), else from the
/// metadata repository, which holds every file too. A copy beside the image that cannot be
/// read (junk that whoever can push to the image's repository may tag so) does not stop the
/// read from the metadata repository; its error is the answer only when that has no copy
/// either.
///
/// Each read is made only when its turn comes, so that this future holds one at a time:
/// verification futures nest deep, and holding both overflowed a test thread's stack.
async fn beside_first<B, M>(
    name: &str,
    beside: Option<impl FnOnce() -> B>,
    metadata: impl FnOnce() -> M,
) -> Result<Option<Vec<u8>>>
where
    B: Future<Output = Result<Option<Vec<u8>>>>,
    M: Future<Output = Result<Option<Vec<u8>>>>,
{
    let mut unreadable = None;
    if let Some(beside) = beside {
        match beside().await {
            Ok(Some(found)) => return Ok(Some(found)),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(file = name, error = %e, "unreadable beside the image");
                unreadable = Some(e);
            }
        }
    }
    match (metadata().await, unreadable) {
        (Ok(None), Some(e)) => Err(e),
        (read, _) => read,
    }
}

/// Finds the metadata repository of `repository` from its `tuf-metadata` tag: the repository
/// itself when the tag is an index of metadata (single-repository mode), or where the pointer
/// annotation leads. The pointer is unsigned: a forged one can only point at metadata that the
/// trusted root does not sign, so it denies service and never makes a bad image pass.
pub async fn metadata_repository(
    registry: &Registry,
    repository: &Repository,
) -> Result<Repository> {
    let pointer_error = |reason: String| crate::Error::Pointer {
        repository: repository.to_string(),
        reason,
    };
    let fetched = registry
        .manifest(&repository.tagged(METADATA_TAG), METADATA_INDEX_LIMIT)
        .await?
        .ok_or_else(|| pointer_error(format!("the repository has no {METADATA_TAG} tag")))?;
    let index = Manifest::parse(&format!("{repository}:{METADATA_TAG}"), &fetched.bytes)?;
    match index.pointer() {
        Some(pointer) => repository.resolve(pointer),
        None if !index.manifests.is_empty() => Ok(repository.clone()),
        None => Err(pointer_error(
            "neither an index of metadata nor a pointer".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{
        EMPTY_BLOB, EMPTY_MEDIA_TYPE, Entry, MANIFEST_MEDIA_TYPE, metadata_manifest,
    };
    use crate::store::LayoutStore;

    #[tokio::test]
    async fn junk_beside_the_image_does_not_hide_the_metadata_repositorys_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path(), true).unwrap();
        let file = "1.team-a.json";
        let bytes = br#"{"signed":{"_type":"targets"}}"#;
        let empty = Entry::of(EMPTY_MEDIA_TYPE, EMPTY_BLOB);
        for repository in ["org/tuf", "team-a/app"] {
            store
                .put_blob(repository, &empty.digest, EMPTY_BLOB)
                .await
                .unwrap();
        }
        let layer = Entry::metadata_layer(bytes);
        store
            .put_blob("org/tuf", &layer.digest, bytes)
            .await
            .unwrap();
        let manifest = metadata_manifest(file, &layer, None);
        store
            .put_manifest("org/tuf", file, &manifest, MANIFEST_MEDIA_TYPE)
            .await
            .unwrap();
        // Tagged like the file beside the image, but no metadata manifest.
        let junk = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": empty,
            "layers": [],
        }))
        .unwrap();
        store
            .put_manifest("team-a/app", file, &junk, MANIFEST_MEDIA_TYPE)
            .await
            .unwrap();

        let source = StoreSource::new(store, "org/tuf");
        let image = Repository::parse("r:5000/team-a/app").unwrap();
        let read = source.fetch(file, Some(&image), 1 << 20).await.unwrap();
        assert_eq!(read.as_deref(), Some(&bytes[..]));
        let missing = source.fetch("2.team-a.json", Some(&image), 1 << 20).await;
        assert_eq!(missing.unwrap(), None);
        // With no copy in the metadata repository, the junk's error is the answer.
        source
            .store()
            .put_manifest("team-a/app", "3.team-a.json", &junk, MANIFEST_MEDIA_TYPE)
            .await
            .unwrap();
        let err = source
            .fetch("3.team-a.json", Some(&image), 1 << 20)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("3.team-a.json"), "{err}");
    }
}
