//! Verifying an image reference end to end: find its metadata repository, update TUF metadata,
//! resolve the tag (or digest) through TUF, and check that the registry serves exactly the signed
//! descriptor. The registry's tag is never trusted on its own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_spec::image::Descriptor;

use crate::error::{Error, Result};
use crate::grammar;
use crate::layout::{METADATA_INDEX_LIMIT, METADATA_TAG, Manifest, sha256_digest};
use crate::location::{ImageRef, Repository};
use crate::registry::Registry;
use crate::source::{RegistrySource, RootsUpTo, StoreSource, metadata_repository};
use crate::store::{ContentStore, check_graph};
use crate::trusted::TrustedStore;
use crate::updater::{Expiration, Limits, Updater, VerifiedTarget, trusted_root};

/// Largest image manifest or index read to compare with its signed descriptor.
const IMAGE_MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;

/// What a client trusts: the root and, optionally, where metadata lives (bootstrap, TUF 5.2).
#[derive(Debug, Clone, Default)]
pub struct TrustConfig {
    /// The trusted root metadata (any version; newer ones are reached through the root chain).
    pub root: Vec<u8>,
    /// Metadata repository to use instead of following `tuf-metadata` pointers (mirrors,
    /// air-gapped copies, or distrust of pointers).
    pub metadata_override: Option<Repository>,
    /// Directory for trusted metadata, one subdirectory per trusted root ([`trust_dir`]),
    /// shared by every copy of its metadata (registries, mirrors, bundles, archives). Without
    /// one, rollback protection lasts only as long as the process.
    pub cache_dir: Option<PathBuf>,
    /// Download limits.
    pub limits: Limits,
    /// Repository path prefixes whose images are signed under other names: `(local, signed)`
    /// pairs, e.g. `("prod/", "team-a/")` for a copy of team-a's images promoted to `prod/`.
    /// Configured by the client, never read from the registry: a registry that could choose the
    /// name would choose which signed image a pull gets.
    pub signed_as: Vec<(String, String)>,
    /// How long updated metadata (and resolved pointers) are used before the next TUF update.
    /// Zero, the default, updates on every verification; expiry is checked on every use anyway.
    pub refresh_interval: Duration,
}

impl TrustConfig {
    /// The repository path targets of `path` are named with (see [`TrustConfig::signed_as`]).
    pub fn signed_path(&self, path: &str) -> String {
        crate::location::signed_path(&self.signed_as, path)
    }
}

/// Most copies of the metadata repository kept warm at once. Pointers are unsigned, so a
/// registry can name any number of copies; past this many, idle ones are dropped (their
/// trusted metadata stays in the store).
const MAX_SESSIONS: usize = 64;

/// Most resolved pointers remembered at once: one per image repository verified, which
/// whoever can start pulls chooses.
const MAX_POINTERS: usize = 1024;

/// Resolved pointers, each with when it was resolved.
type Pointers = HashMap<Repository, (Repository, Instant)>;

/// Remembers that `repository` points at `metadata`, for `interval` (nothing when zero);
/// past [`MAX_POINTERS`], stale entries go first, then all (a pointer is only a shortcut).
fn remember(
    pointers: &mut Pointers,
    repository: &Repository,
    metadata: &Repository,
    interval: Duration,
) {
    if interval.is_zero() {
        return;
    }
    if pointers.len() >= MAX_POINTERS {
        pointers.retain(|_, (_, at)| at.elapsed() < interval);
        if pointers.len() >= MAX_POINTERS {
            pointers.clear();
        }
    }
    pointers.insert(repository.clone(), (metadata.clone(), Instant::now()));
}

/// The warm state for one copy of the metadata repository.
#[derive(Debug)]
struct Session {
    updater: Updater<RegistrySource>,
    refreshed: Option<Instant>,
}

/// When a session's top-level metadata is updated.
#[derive(Debug, Clone, Copy)]
enum Update {
    /// Once the refresh interval has passed, or what is held no longer serves.
    WhenDue,
    /// At once.
    Now,
}

/// Verifies image references against TUF metadata in registries. Clones share their warm
/// state: the trusted metadata, and resolved pointers.
#[derive(Debug, Clone)]
pub struct Verifier {
    registry: Registry,
    trust: TrustConfig,
    /// The trusted metadata of the trusted root, whatever metadata repository an image leads
    /// to: copies of one TUF repository share what the client has seen, so a pointer to an
    /// older copy is a rollback, never a fresh start (TUF 5.3.5, 5.4.3).
    store: TrustedStore,
    /// One session per copy of the metadata repository, each locked while it updates: a copy
    /// that is slow or hangs (where a forged pointer leads) holds up only the images that lead
    /// there. Sessions meet in `store` ([`Updater::refresh`] takes up what others trusted).
    sessions: Arc<Mutex<HashMap<Repository, Arc<tokio::sync::Mutex<Session>>>>>,
    pointers: Arc<Mutex<Pointers>>,
}

impl Verifier {
    /// A verifier reading through `registry` and trusting `trust`. Fails when the trusted root
    /// is not root metadata signed by its own keys.
    pub fn new(registry: Registry, trust: TrustConfig) -> Result<Self> {
        trusted_root(&trust.root)?;
        Ok(Verifier {
            registry,
            store: trusted_store(&trust)?,
            trust,
            sessions: Arc::default(),
            pointers: Arc::default(),
        })
    }

    /// The registry client.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The metadata repository for images in `repository`.
    pub async fn metadata_repository(&self, repository: &Repository) -> Result<Repository> {
        match &self.trust.metadata_override {
            Some(location) => Ok(location.clone()),
            None => metadata_repository(&self.registry, repository).await,
        }
    }

    /// An updater for the metadata repository of `repository`, refreshed (TUF 5.3–5.6).
    pub async fn updater(
        &self,
        repository: &Repository,
        expiration: Expiration,
    ) -> Result<Updater<RegistrySource>> {
        let metadata = self.metadata_repository(repository).await?;
        let source = RegistrySource::new(self.registry.clone(), metadata);
        let mut updater = Updater::open(
            source,
            self.store.clone(),
            &self.trust.root,
            self.trust.limits,
            expiration,
        )?;
        updater.refresh().await?;
        Ok(updater)
    }

    /// For a writer finishing a key rotation cut short (root N+1 stored, the publish under its
    /// new keys not made, so that N+1's keys sign none of the published files): an updater
    /// that read `repository`'s published state under root N, and one that followed the chain
    /// to root N+1 (and no further: its timestamp is not read). Both chains are followed from
    /// the trusted root; nothing is stored (the trusted store holds N+1 already). `None` when
    /// no root follows the trusted one.
    pub async fn under_root_before_last(
        &self,
        repository: &Repository,
    ) -> Result<
        Option<(
            Updater<RootsUpTo<RegistrySource>>,
            Updater<RootsUpTo<RegistrySource>>,
        )>,
    > {
        let metadata = self.metadata_repository(repository).await?;
        let open = |last| {
            let source = RegistrySource::new(self.registry.clone(), metadata.clone());
            Updater::open(
                RootsUpTo {
                    inner: source,
                    last,
                },
                TrustedStore::in_memory(),
                &self.trust.root,
                self.trust.limits,
                Expiration::UnsafeIgnoreForRepair,
            )
        };
        let mut newest = open(u64::MAX)?;
        newest.follow_roots().await?;
        let last = newest.root().signed.version.get();
        if last <= trusted_root(&self.trust.root)?.signed.version.get() {
            return Ok(None);
        }
        let mut before = open(last - 1)?;
        before.refresh().await?;
        Ok(Some((before, newest)))
    }

    /// Verifies `image` and checks that the registry serves exactly the signed descriptor.
    pub async fn verify(&self, image: &ImageRef) -> Result<VerifiedTarget> {
        let verified = self.resolve(image).await?;
        self.check_registry(image, &verified).await?;
        Ok(verified)
    }

    /// Resolves `image` through TUF alone: the signed target for its tag, or the signed target
    /// with its digest. The registry's tag is not consulted.
    pub async fn resolve(&self, image: &ImageRef) -> Result<VerifiedTarget> {
        let repository = &image.repository;
        let metadata = self.cached_metadata_repository(repository).await?;
        match self
            .resolve_in_session(image, &metadata, Update::WhenDue)
            .await
        {
            // A role on the search's path expired since the session's last update. A new
            // version may be out, which only an update finds: the refresh interval would hold
            // the expired one until it ended.
            Err(Error::Expired { .. }) => {
                self.resolve_in_session(image, &metadata, Update::Now).await
            }
            resolved => resolved,
        }
    }

    /// [`Verifier::resolve`] with the session reading `metadata`, updated as `update` says.
    async fn resolve_in_session(
        &self,
        image: &ImageRef,
        metadata: &Repository,
        update: Update,
    ) -> Result<VerifiedTarget> {
        let repository = &image.repository;
        // The update and the search are boxed: their futures are the largest of a
        // verification, and every caller's future would otherwise hold them.
        let fresh = Box::pin(self.fresh_session(metadata, update)).await?;
        // The search runs on a copy of the session's state, without its lock: delegated roles
        // are read where the images live, and a repository or registry slow to answer holds
        // up only its own images.
        let mut updater = fresh.updater.clone();
        let session = tokio::sync::OwnedMutexGuard::mutex(&fresh).clone();
        drop(fresh);
        let signed_path = self.signed_path(&repository.path);
        let found = match &image.tag {
            Some(tag) => {
                let name = format!("{signed_path}:{tag}");
                Box::pin(updater.find(&name, Some(repository))).await
            }
            None => {
                let digest = image
                    .digest
                    .as_deref()
                    .expect("a reference without tag has a digest");
                Box::pin(updater.find_digest(&signed_path, Some(repository), digest)).await
            }
        };
        // What the search verified serves the next ones, unless the session is busy.
        if let Ok(mut held) = session.try_lock() {
            held.updater.take_roles_from(updater);
        }
        check_pin(image, found?)
    }

    /// Updates the top-level metadata of the configured metadata repository ahead of any
    /// verification, so that the first one does not wait for it: a long-running verifier calls
    /// this when it starts. `None` when the metadata location is learned from images' pointers
    /// instead, and is not known yet.
    pub async fn warm_up(&self) -> Result<Option<Repository>> {
        let Some(metadata) = self.trust.metadata_override.clone() else {
            return Ok(None);
        };
        self.fresh_session(&metadata, Update::WhenDue).await?;
        Ok(Some(metadata))
    }

    /// The session reading `metadata`, locked, its top-level metadata updated unless that was
    /// done there within the refresh interval (then only checked for expiry), or `update` says
    /// now.
    async fn fresh_session(
        &self,
        metadata: &Repository,
        update: Update,
    ) -> Result<tokio::sync::OwnedMutexGuard<Session>> {
        let mut session = self.session(metadata)?.lock_owned().await;
        let within_interval = matches!(update, Update::WhenDue)
            && session
                .refreshed
                .is_some_and(|at| at.elapsed() < self.trust.refresh_interval);
        // No copy is read within the interval, but what other sessions stored since is taken
        // up: a revocation seen through one copy holds for every copy. What cannot be taken up
        // so (a new root, part of an update), or what expired meanwhile (a new timestamp may
        // be out), is read from the copy at once.
        let held = within_interval
            && session.updater.catch_up()?
            && session.updater.check_unexpired().is_ok();
        if !held {
            session.updater.refresh().await?;
            session.refreshed = Some(Instant::now());
        }
        Ok(session)
    }

    /// The repository path targets of `path` are named with (see [`TrustConfig::signed_as`]).
    pub fn signed_path(&self, path: &str) -> String {
        self.trust.signed_path(path)
    }

    /// Drops the warm state: the next verification re-resolves pointers and updates metadata
    /// (trusted metadata on disk is kept, so rollback protection is not lost).
    pub fn forget_warm_state(&self) {
        self.sessions.lock().expect("not poisoned").clear();
        self.pointers.lock().expect("not poisoned").clear();
    }

    /// The metadata repository of `repository`, remembered for the refresh interval.
    async fn cached_metadata_repository(&self, repository: &Repository) -> Result<Repository> {
        let interval = self.trust.refresh_interval;
        if let Some((metadata, at)) = self.pointers.lock().expect("not poisoned").get(repository)
            && at.elapsed() < interval
        {
            return Ok(metadata.clone());
        }
        let metadata = self.metadata_repository(repository).await?;
        let mut pointers = self.pointers.lock().expect("not poisoned");
        remember(&mut pointers, repository, &metadata, interval);
        Ok(metadata)
    }

    /// The warm state for the copy at `metadata`, opened from the trusted metadata on first
    /// use.
    fn session(&self, metadata: &Repository) -> Result<Arc<tokio::sync::Mutex<Session>>> {
        if let Some(session) = self.sessions.lock().expect("not poisoned").get(metadata) {
            return Ok(session.clone());
        }
        // Opened without holding the map: reading and checking the stored metadata takes a
        // while, and other verifications need the map meanwhile.
        let updater = Updater::open(
            RegistrySource::new(self.registry.clone(), metadata.clone()),
            self.store.clone(),
            &self.trust.root,
            self.trust.limits,
            Expiration::Enforce,
        )?;
        let mut sessions = self.sessions.lock().expect("not poisoned");
        if sessions.len() >= MAX_SESSIONS {
            // Sessions in use stay: as many as verifications run at once.
            sessions.retain(|_, session| Arc::strong_count(session) > 1);
        }
        let session = sessions.entry(metadata.clone()).or_insert_with(|| {
            Arc::new(tokio::sync::Mutex::new(Session {
                updater,
                refreshed: None,
            }))
        });
        Ok(session.clone())
    }

    /// Checks that the registry serves the signed object: the tag (when given) points at the
    /// signed digest, and the manifest at that digest has the signed size and media type.
    async fn check_registry(&self, image: &ImageRef, verified: &VerifiedTarget) -> Result<()> {
        let signed_digest = verified.digest();
        let reference = match &image.tag {
            Some(tag) => image.repository.tagged(tag),
            None => image.repository.digested(&signed_digest),
        };
        let served = self
            .registry
            .manifest(&reference, IMAGE_MANIFEST_LIMIT)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: reference.whole(),
            })?;
        check_fields(
            &image.to_string(),
            verified,
            &served.digest,
            served.bytes.len() as u64,
            &served.media_type,
        )
    }
}

/// Checks that `descriptor` (as a registry client such as containerd resolved it for
/// `reference`) is the signed one: same digest, size and media type.
pub fn check_descriptor(
    reference: &str,
    verified: &VerifiedTarget,
    descriptor: &Descriptor,
) -> Result<()> {
    check_fields(
        reference,
        verified,
        descriptor.digest().as_ref(),
        descriptor.size(),
        descriptor.media_type().as_ref(),
    )
}

pub(crate) fn check_fields(
    reference: &str,
    verified: &VerifiedTarget,
    digest: &str,
    size: u64,
    media_type: &str,
) -> Result<()> {
    let mismatch = |field, signed: String, presented: &str| Error::DescriptorMismatch {
        reference: reference.to_string(),
        field,
        signed,
        presented: presented.to_string(),
    };
    if digest != verified.digest() {
        return Err(mismatch("digest", verified.digest(), digest));
    }
    if size != verified.target().length {
        return Err(mismatch(
            "size",
            verified.target().length.to_string(),
            &size.to_string(),
        ));
    }
    let signed_type = verified.descriptor().media_type().to_string();
    if media_type != signed_type {
        return Err(mismatch("mediaType", signed_type, media_type));
    }
    Ok(())
}

/// The directory, under `cache_dir`, of the trusted metadata of the repository `root` (the
/// configured root) is the root of. Named for the root, not for where its metadata is read:
/// the location comes from unsigned pointers and from whichever copy a bundle or archive
/// carries, and a new location must not mean a fresh start from the configured root (which
/// would let an older copy roll the client back). Named for what the root's signatures sign
/// (its canonical form), not its bytes: the same root spelt otherwise (pretty-printed, its
/// signatures in another order) is the same root, and an operator deploying it so must not
/// lose what was trusted. Configuring another root starts afresh, as it should: that is the
/// operator's bootstrap decision; but a root another directory's updates reached is taken up
/// with their state ([`TrustedStore::take_up`]).
pub fn trust_dir(cache_dir: &std::path::Path, root: &[u8]) -> Result<PathBuf> {
    use tough::schema::Role;
    let root: tough::schema::Signed<tough::schema::Root> = crate::updater::parse("root", root)?;
    let canonical = root.signed.canonical_form().map_err(|e| Error::Parse {
        role: "root".into(),
        message: e.to_string(),
    })?;
    let digest = sha256_digest(&canonical);
    Ok(cache_dir.join(format!("root-{}", &digest["sha256:".len()..])))
}

/// The trusted store of `trust`. Fails when the state of a directory whose updates reached
/// this root is there but cannot be taken up: started afresh instead, the directory would
/// never take it up later, and that state's rollback protection would be lost for good.
fn trusted_store(trust: &TrustConfig) -> Result<TrustedStore> {
    let Some(cache_dir) = &trust.cache_dir else {
        return Ok(TrustedStore::in_memory());
    };
    let store = TrustedStore::at(trust_dir(cache_dir, &trust.root)?);
    // An operator who configures the newest root instead of an older one (as nodes are told
    // to, sparing them a long chain) keeps the rollback protection the older one's updates
    // built up: the state of a directory whose updates reached exactly this root.
    let same_root =
        |stored: &[u8]| signed_part(stored).is_some_and(|s| Some(s) == signed_part(&trust.root));
    store.take_up(cache_dir, "root.json", same_root)?;
    // Or whose update to this root was cut short: taken up, its root is trusted at once, and
    // the update is finished by the next store of trusted metadata here.
    store.take_up(cache_dir, crate::updater::PENDING_ROOT, same_root)?;
    // Or whose updates took this root and went past it (nodes that moved on meanwhile): its
    // newer root is the chain followed from this one.
    let version = trusted_root(&trust.root)?.signed.version;
    let taken = crate::layout::versioned_file("root", version.get());
    store.take_up(cache_dir, &taken, same_root)?;
    Ok(store)
}

/// The `signed` part of a metadata file: what its signatures sign, whatever the spelling of
/// the file around it.
fn signed_part(bytes: &[u8]) -> Option<serde_json::Value> {
    let mut file: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Some(file.get_mut("signed")?.take())
}

/// `verified`, found for `image`, unless `image` pins another digest beside its tag
/// (`name:tag@digest`): the pin is the user's, and a tag signed for other content is refused,
/// never followed instead.
pub fn check_pin(image: &ImageRef, verified: VerifiedTarget) -> Result<VerifiedTarget> {
    match &image.digest {
        Some(digest) if *digest != verified.digest() => Err(Error::DescriptorMismatch {
            reference: image.to_string(),
            field: "digest",
            signed: format!("{} (for {})", verified.digest(), verified.name()),
            presented: format!("{digest} (the digest pinned)"),
        }),
        _ => Ok(verified),
    }
}

/// Resolves image `path` at `reference` (a tag, or a digest) through TUF metadata kept in
/// `store` — an OCI layout or bundle carried across an air gap — against `trust`, with no
/// registry involved. The image itself need not be in the store. Returns the store too.
pub async fn resolve_in_store<S: ContentStore>(
    store: S,
    path: &str,
    reference: &str,
    trust: &TrustConfig,
) -> Result<(VerifiedTarget, S)> {
    // Checked as a registry's references are: the delegation search reads the name as paths,
    // so `x/../../team-b/app` must not reach it as a tag of `team-a/app`.
    let named = |separator: char| format!("{path}{separator}{reference}");
    let invalid = |reference: String, reason: String| Error::InvalidReference { reference, reason };
    if !Repository::parse(&format!("store.invalid/{path}")).is_ok_and(|r| r.path == path) {
        return Err(invalid(path.into(), "not a repository path".into()));
    }
    if reference.contains(':') {
        grammar::check_digest(reference).map_err(|e| invalid(named('@'), e))?;
    } else {
        grammar::check_tag(reference).map_err(|e| invalid(named(':'), e))?;
    }
    trusted_root(&trust.root)?;
    let here = Repository {
        registry: "store.invalid".into(),
        path: path.to_string(),
    };
    let metadata = match &trust.metadata_override {
        Some(repository) => repository.path.clone(),
        None => {
            let pointer = store
                .manifest(path, METADATA_TAG, METADATA_INDEX_LIMIT)
                .await?
                .ok_or_else(|| Error::Pointer {
                    repository: format!("{} {path}", store.describe()),
                    reason: format!("no {METADATA_TAG} tag"),
                })?;
            let what = format!("{path}:{METADATA_TAG} in {}", store.describe());
            match Manifest::parse(&what, &pointer.bytes)?.pointer() {
                Some(target) => here.resolve(target)?.path,
                None => path.to_string(),
            }
        }
    };
    let mut updater = Updater::open(
        StoreSource::new(store, metadata),
        trusted_store(trust)?,
        &trust.root,
        trust.limits,
        Expiration::Enforce,
    )?;
    updater.refresh().await?;
    let signed_path = trust.signed_path(path);
    let verified = if reference.contains(':') {
        updater
            .find_digest(&signed_path, Some(&here), reference)
            .await?
    } else {
        updater
            .find(&format!("{signed_path}:{reference}"), Some(&here))
            .await?
    };
    Ok((verified, updater.into_source().into_store()))
}

/// Verifies image `path` at `reference` kept in `store` (see [`resolve_in_store`]) and checks
/// that the store holds exactly the signed manifest. With `deep`, every object of the image
/// graph is read and checked too.
pub async fn verify_in_store<S: ContentStore>(
    store: S,
    path: &str,
    reference: &str,
    trust: &TrustConfig,
    deep: bool,
) -> Result<VerifiedTarget> {
    let (verified, store) = resolve_in_store(store, path, reference, trust).await?;
    let store = &store;
    let presented = store
        .manifest(path, reference, IMAGE_MANIFEST_LIMIT)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("{path}:{reference} in {}", store.describe()),
        })?;
    let shown = format!("{} {path}:{reference}", store.describe());
    check_fields(
        &shown,
        &verified,
        &presented.digest,
        presented.bytes.len() as u64,
        &presented.media_type,
    )?;
    if deep {
        check_graph(store, path, &presented).await?;
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn store_references_outside_the_grammar_are_refused_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        for (path, reference) in [
            ("team-a/app", "x/../../team-b/app"),
            ("team-a/app", "../v1"),
            ("team-a/app", "sha256:xyz"),
            ("team-a/../team-b", "v1"),
            ("/team-a/app", "v1"),
            ("Team-A/app", "v1"),
        ] {
            let store = crate::store::LayoutStore::open(dir.path(), true).unwrap();
            let err = resolve_in_store(store, path, reference, &TrustConfig::default())
                .await
                .err()
                .unwrap();
            assert!(
                matches!(err, Error::InvalidReference { .. }),
                "{path} {reference}: {err}"
            );
        }
    }

    #[test]
    fn pointers_remembered_stay_bounded() {
        let repo = |i: usize| Repository::parse(&format!("r:5000/team-{i}/app")).unwrap();
        let metadata = repo(0);
        let mut pointers = Pointers::new();
        remember(&mut pointers, &repo(1), &metadata, Duration::ZERO);
        assert!(pointers.is_empty(), "nothing to reuse without an interval");
        let interval = Duration::from_secs(60);
        for i in 0..MAX_POINTERS * 3 {
            remember(&mut pointers, &repo(i), &metadata, interval);
            assert!(pointers.len() <= MAX_POINTERS);
        }
        assert!(pointers.contains_key(&repo(MAX_POINTERS * 3 - 1)));
        // Stale ones go first.
        let mut pointers: Pointers = (0..MAX_POINTERS)
            .map(|i| (repo(i), (metadata.clone(), Instant::now() - interval * 2)))
            .collect();
        pointers.insert(repo(0), (metadata.clone(), Instant::now()));
        remember(&mut pointers, &repo(MAX_POINTERS), &metadata, interval);
        assert_eq!(pointers.len(), 2);
        assert!(pointers.contains_key(&repo(0)));
    }

    #[test]
    fn signed_names_map_whole_path_components() {
        let trust = TrustConfig {
            signed_as: vec![
                ("prod".into(), "team-a/".into()),
                ("prod/web/".into(), "web".into()),
            ],
            ..TrustConfig::default()
        };
        assert_eq!(trust.signed_path("prod/app"), "team-a/app");
        assert_eq!(trust.signed_path("prod/web/x"), "web/x");
        assert_eq!(trust.signed_path("production/app"), "production/app");
        let edges = TrustConfig {
            signed_as: vec![("".into(), "mirror/".into()), ("prod/".into(), "".into())],
            ..TrustConfig::default()
        };
        assert_eq!(edges.signed_path("team-a/app"), "mirror/team-a/app");
        assert_eq!(edges.signed_path("prod/app"), "app");
    }
}
