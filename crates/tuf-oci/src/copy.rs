//! TUF-aware copies: an image repository travels with everything that verifies it: its
//! delegated-targets files (and their referrers indexes), its `tuf-metadata` tag, and the
//! metadata repository the pointer leads to (root chain and every role version). Nothing is
//! re-signed; target names carry no registry host. The destination's pointer is written last,
//! so a client never follows it to incomplete metadata, and a rerun copies only what is missing.

use std::collections::{HashMap, HashSet};

use futures_util::StreamExt;

use crate::claim::is_claim_tag;
use crate::error::{Error, Result, junk_as_none};
use crate::layout::{
    FILENAME_ANNOTATION, MANIFEST_MEDIA_TYPE, METADATA_ARTIFACT_TYPE, METADATA_INDEX_LIMIT,
    METADATA_LAYER_MEDIA_TYPE, METADATA_TAG, Manifest, attached_file, parse_versioned_file,
    signed_version,
};
use crate::location::{Repository, signed_path};
use crate::source::{StoreSource, fetch_file};
use crate::store::{ContentStore, Stored};
use crate::trusted::TrustedStore;
use crate::updater::{Expiration, Limits, Updater, named_digest};
use crate::verify::check_fields;
use tough::schema::Timestamp;

/// Largest manifest copied.
const MANIFEST_LIMIT: u64 = 4 << 20;
/// Blobs copied at once (skopeo copies up to 6 layers at a time).
const BLOB_CONCURRENCY: usize = 4;

/// What happened to one blob.
enum BlobCopy {
    /// The destination had it.
    Present,
    /// A dry run: it would be copied.
    Would,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Streamed across, taking this long.
    Copied(std::time::Duration),
}

/// Which image tags to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tags {
    /// These tags.
    Only(Vec<String>),
    /// Every tag that is not TUF metadata.
    All,
}

/// Where the destination's metadata comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetadataMode {
    /// Copy the metadata repository beside the image (the destination verifies on its own).
    #[default]
    Copy,
    /// Leave it where it is: the destination pointer names the source's metadata repository
    /// with its registry host.
    KeepRemote,
}

/// What to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Image tags.
    pub tags: Tags,
    /// Metadata repository handling.
    pub metadata: MetadataMode,
    /// Only report what would be copied.
    pub dry_run: bool,
    /// The trusted root, when the copier has one. The source's metadata is then verified
    /// against it before anything is written (root chain, signatures, versions; not expiry,
    /// which clients at the destination check), and a destination timestamp that the verified
    /// root does not sign cannot hold the copy back as newer. Without it the copy carries
    /// metadata it cannot check, and compares the versions written in it.
    pub root: Option<Vec<u8>>,
    /// Local path prefixes and the prefixes the source's targets are signed under, for a copy
    /// of a copy made under another name ([`crate::TrustConfig::signed_as`]): with `root`,
    /// image tags are checked under those names.
    pub signed_as: Vec<(String, String)>,
}

/// What a copy did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Objects written (`repository@digest` or `repository:tag`).
    pub written: Vec<String>,
    /// Objects the destination already had.
    pub skipped: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Blobs mounted from another repository of the same registry (no bytes moved).
    pub mounted: usize,
    /// The destination's metadata repository path, when it has its own.
    pub metadata_repository: Option<String>,
}

/// Whether `tag` holds TUF metadata rather than an image: the well-known pointer, TUF file
/// names, referrers tag-schema indexes, and writers' claims.
pub fn is_metadata_tag(tag: &str) -> bool {
    tag == METADATA_TAG || tag.ends_with(".json") || tag.starts_with("sha256-") || is_claim_tag(tag)
}

/// Metadata `tags` in the order a publish writes them: version files first (written once,
/// read only where a newer file names them), then the heads and referrers indexes, and
/// `timestamp.json`, which names the rest, last (TUF 5.4). Copied in the order the source
/// lists them (a layout's is its `index.json`'s, which any tool may have written), a copy cut
/// short could leave a timestamp naming a snapshot not there yet.
fn in_publish_order<'a>(tags: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    let mut tags: Vec<_> = tags.collect();
    tags.sort_by_key(|tag| match parse_versioned_file(tag) {
        Some(_) => 0,
        None if *tag == "timestamp.json" => 2,
        None => 1,
    });
    tags
}

/// Copies repository `source` of `from` to repository `destination` of `to`. `host` is the
/// registry host of `from` when it is a registry (needed to resolve full-reference pointers),
/// and `None` for layouts.
pub async fn copy_repository<S: ContentStore, D: ContentStore>(
    from: &S,
    source: &str,
    host: Option<&str>,
    to: &D,
    destination: &str,
    options: &CopyOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<CopyReport> {
    let mut copier = Copier {
        from,
        host,
        to,
        options,
        report: CopyReport::default(),
        done: HashSet::new(),
        progress,
        verified: None,
        images: None,
        guard: None,
    };
    // The pointer decides where metadata lives; read it first so bad input fails early.
    let pointer = from
        .manifest(source, METADATA_TAG, METADATA_INDEX_LIMIT)
        .await?
        .ok_or_else(|| Error::Pointer {
            repository: format!("{} {source}", from.describe()),
            reason: format!("no {METADATA_TAG} tag: the copy could not be verified"),
        })?;
    let what = format!("{source}:{METADATA_TAG} in {}", from.describe());
    let pointer_index = Manifest::parse(&what, &pointer.bytes)?;
    if pointer_index.pointer().is_none() && options.metadata == MetadataMode::KeepRemote {
        return Err(Error::Usage(format!(
            "--keep-metadata-remote: {source} in {} holds its own metadata (single-repository \
             mode), so there is no metadata repository to keep remote",
            from.describe()
        )));
    }
    let placement = pointer_index
        .pointer()
        .map(|target| place_metadata(source, destination, host, target, options.metadata))
        .transpose()?;
    // Before anything is written: never an older timestamp over the destination's.
    let copied_metadata = match &placement {
        None => Some((source, destination)),
        Some(placement) => placement
            .copy
            .as_ref()
            .map(|(from, to)| (from.as_str(), to.as_str())),
    };
    if let Some((from_path, to_path)) = copied_metadata {
        let at_destination = match &options.root {
            Some(root) => {
                let (source_state, verified) = verified_source(from, from_path, root).await?;
                copier.verified = Some(verified);
                let roots = destination_roots(to, to_path, &source_state).await?;
                copier.images = Some(source_state);
                Some(roots)
            }
            None => None,
        };
        copier.guard = Some(TimestampGuard {
            source: from_path.to_string(),
            destination: to_path.to_string(),
            at_destination,
        });
        copier.check_timestamp().await?;
    }

    let tags = match &options.tags {
        Tags::Only(tags) => tags.clone(),
        Tags::All => from
            .tags(source)
            .await?
            .into_iter()
            .filter(|t| !is_metadata_tag(t))
            .collect(),
    };
    // Every image tag is read, and checked against the verified metadata, before any is
    // written: a tag refused midway would leave the destination with some new tags and not
    // the metadata that signs them.
    let mut images = Vec::new();
    for tag in &tags {
        let stored = copier.read_tag(source, tag).await?;
        match copier.signed_image(source, tag, &stored).await? {
            None => images.push((tag, stored)),
            Some(why) => (copier.progress)(&format!("left out {source}:{tag}: {why}")),
        }
    }
    if images.is_empty() && !tags.is_empty() {
        let signed = signed_path(&options.signed_as, source);
        return Err(Error::Usage(format!(
            "none of the {} image tags of {source} is signed as {signed}:<tag> in the verified \
             metadata (a copy made under another name is copied with --signed-as \
             {source}=<the path it is signed under>)",
            tags.len()
        )));
    }
    for (tag, stored) in images {
        copier.write_tag(source, destination, tag, stored).await?;
    }
    // Delegated targets beside the images, their referrers indexes, and (single-repository
    // mode) the whole TUF repository.
    let all_tags = from.tags(source).await?;
    for tag in in_publish_order(
        all_tags
            .iter()
            .filter(|t| is_metadata_tag(t) && *t != METADATA_TAG && !is_claim_tag(t)),
    ) {
        copier.tag(source, destination, tag).await?;
    }

    let destination_pointer = match pointer_index.pointer().zip(placement) {
        None => {
            // The repository's own metadata index. What it names may be held by no tag (a
            // timestamp the cron job's refresh replaced): the destination registry would
            // refuse an index naming what it does not hold.
            copier.children(source, destination, &pointer, 0).await?;
            copier.report.metadata_repository = Some(destination.to_string());
            pointer.bytes.clone()
        }
        Some((target, placement)) => {
            if let Some((source_metadata, destination_metadata)) = &placement.copy {
                copier
                    .metadata_repository(source_metadata, destination_metadata)
                    .await?;
                copier.report.metadata_repository = Some(destination_metadata.clone());
            }
            if placement.pointer == target {
                pointer.bytes.clone()
            } else {
                let mut annotations = pointer_index.annotations.clone();
                annotations.insert(crate::layout::POINTER_ANNOTATION.into(), placement.pointer);
                crate::layout::index(&[], &annotations)
            }
        }
    };
    // Last: the pointer, once everything it leads to is in place.
    copier
        .put_manifest(
            destination,
            METADATA_TAG,
            &destination_pointer,
            &pointer.media_type,
        )
        .await?;
    Ok(copier.report)
}

/// The source's metadata repository at `path` of `from`, verified against `root`: what a
/// client there would trust, expiry aside.
async fn verified_source<'s, S: ContentStore>(
    from: &'s S,
    path: &str,
    root: &[u8],
) -> Result<(Updater<StoreSource<&'s S>>, Verified)> {
    let trusted = TrustedStore::in_memory();
    let mut updater = Updater::open(
        StoreSource::new(from, path),
        trusted.clone(),
        root,
        Limits::default(),
        // Authenticity, not freshness: a bundle may cross an air gap slower than its
        // timestamp lives, and is timestamped again where it lands.
        Expiration::UnsafeIgnoreForRepair,
    )?;
    updater.refresh().await?;
    let timestamp = updater.timestamp().expect("refreshed");
    let snapshot = updater.snapshot().expect("refreshed");
    let named = snapshot
        .signed
        .meta
        .iter()
        .chain(&timestamp.signed.meta)
        .filter_map(|(file, meta)| Some((file.strip_suffix(".json")?.to_string(), meta)));
    let mut versions = HashMap::new();
    let mut digests = HashMap::new();
    for (role, meta) in named {
        versions.insert(role.clone(), meta.version.get());
        if let Some(hashes) = &meta.hashes {
            digests.insert(role, named_digest(hashes));
        }
    }
    versions.insert("root".into(), updater.root().signed.version.get());
    let mut roots = updater.roots_taken().clone();
    let first_root = crate::updater::trusted_root(root)?.signed.version.get();
    // The source's copy of the trusted root is written when it says the same: a root file
    // formatted anew by hand is the same root.
    let file = crate::layout::versioned_file("root", first_root);
    let held = junk_as_none(fetch_file(from, path, &file, Limits::default().root, None).await)?
        .flatten()
        .filter(|held| same_json(held, root));
    roots.insert(
        first_root,
        crate::layout::sha256_digest(held.as_deref().unwrap_or(root)),
    );
    versions.insert("timestamp".into(), timestamp.signed.version.get());
    versions.insert("snapshot".into(), snapshot.signed.version.get());
    let bytes = trusted
        .load("timestamp.json")?
        .ok_or_else(|| Error::NotFound {
            what: format!("timestamp.json of {path} in {}", from.describe()),
        })?;
    let verified = Verified {
        metadata: path.to_string(),
        versions,
        digests,
        roots,
        first_root,
        timestamp_digest: crate::layout::sha256_digest(&bytes),
    };
    Ok((updater, verified))
}

/// Whether a copy writes an object ([`Copier::verified_part`]).
enum Part {
    Copied,
    /// Left out, and why.
    LeftOut(&'static str),
}

/// Why a file of a version the verified state has not reached is left out.
const PAST: &str = "past the verified state";

/// What the verified state asks of a version file ([`Verified::expects`]).
enum Expected<'v> {
    /// Past the version verified for its role (or of a role it does not name).
    Past,
    /// The very file verified: its metadata layer has this digest.
    File(&'v str),
    /// An older version, not read by verification: copied as it is.
    Any,
}

/// Whether `stored` is metadata file `file` as readers take it (one metadata layer, annotated
/// with the file's name, its embedded bytes, if any, matching it) with layer `digest`.
fn is_metadata_file(file: &str, stored: &Stored, digest: &str) -> bool {
    Manifest::parse(file, &stored.bytes)
        .ok()
        .and_then(|manifest| {
            let layer = manifest.metadata_layer(file).ok()?;
            (layer.digest == digest && layer.embedded(file).is_ok()).then_some(())
        })
        .is_some()
}

/// Whether `a` and `b` are the same JSON, however spelt.
fn same_json(a: &[u8], b: &[u8]) -> bool {
    let value = |bytes| serde_json::from_slice::<serde_json::Value>(bytes).ok();
    value(a).is_some_and(|a| Some(a) == value(b))
}

/// What verifying the source settled, for the files the copy writes: what was verified is
/// what is written, and nothing past it.
struct Verified {
    /// The source's metadata repository path.
    metadata: String,
    /// The version of each role the verified state names (root, timestamp, snapshot, and
    /// every role the snapshot lists).
    versions: HashMap<String, u64>,
    /// For roles whose file the verified state names by hash, that file's digest.
    digests: HashMap<String, String>,
    /// The digest of each root of the chain verified, the trusted one included, by version.
    roots: HashMap<u64, String>,
    /// The trusted root's version: older roots were not read, and are copied as they are.
    first_root: u64,
    /// The digest of the verified `timestamp.json`, the only one copied.
    timestamp_digest: String,
}

impl Verified {
    /// What version `version` of `role`'s file must be to be copied: at most the version
    /// verified, and at that version (and for roots of the chain verified) the file verified.
    fn expects(&self, version: u64, role: &str) -> Expected<'_> {
        let Some(named) = self.versions.get(role) else {
            return Expected::Past;
        };
        if version > *named {
            return Expected::Past;
        }
        let digest = match role {
            "root" if version >= self.first_root => self.roots.get(&version),
            _ if version == *named => self.digests.get(role),
            _ => None,
        };
        digest.map_or(Expected::Any, |digest| Expected::File(digest))
    }

    /// Whether `entry`, a manifest an image's referrers index names, is written with the
    /// index: TUF metadata is held to [`Verified::expects`] as the version file its layer is
    /// annotated as (verification reads it from the metadata repository, and an unverified
    /// one is left out, as its `ref-…` tag is); other artifacts (another tool's signature)
    /// are copied as they are.
    fn takes_referrer(&self, entry: &Stored) -> bool {
        let Ok(manifest) = Manifest::parse("referrer", &entry.bytes) else {
            return true;
        };
        let is_tuf = manifest.artifact_type.as_deref() == Some(METADATA_ARTIFACT_TYPE)
            || manifest
                .layers
                .iter()
                .any(|layer| layer.media_type == METADATA_LAYER_MEDIA_TYPE);
        if !is_tuf {
            return true;
        }
        let file = manifest
            .layers
            .iter()
            .find_map(|layer| layer.annotations.get(FILENAME_ANNOTATION));
        let Some((file, (version, role))) =
            file.and_then(|file| Some((file, parse_versioned_file(file)?)))
        else {
            return false;
        };
        match self.expects(version, role) {
            Expected::Past => false,
            Expected::File(digest) => is_metadata_file(file, entry, digest),
            Expected::Any => true,
        }
    }
}

/// The destination's metadata repository at `destination` of `to`, its root chain followed
/// from the verified `source`'s root. A chain that goes further is a newer state than the
/// source's, and refused as the copy's rollback; links that fail their checks are junk (a
/// forgery an unverified copy left) and end the chain; a destination that cannot be read
/// fails the copy.
async fn destination_roots<'t, D: ContentStore, V: crate::source::MetadataSource>(
    to: &'t D,
    destination: &str,
    source: &Updater<V>,
) -> Result<Updater<StoreSource<&'t D>>> {
    let mut at_destination = Updater::open(
        StoreSource::new(to, destination),
        TrustedStore::in_memory(),
        source.root_bytes(),
        Limits::default(),
        Expiration::UnsafeIgnoreForRepair,
    )?;
    junk_as_none(at_destination.follow_roots().await)?;
    let theirs = at_destination.root().signed.version.get();
    let ours = source.root().signed.version.get();
    if theirs > ours {
        return Err(Error::Rollback {
            role: format!("root of {destination} in {}", to.describe()),
            trusted: theirs,
            fetched: ours,
        });
    }
    Ok(at_destination)
}

/// The version of timestamp `bytes`, when `updater`'s root signs them.
fn timestamp_version<V: crate::source::MetadataSource>(
    updater: &Updater<V>,
    bytes: &[u8],
) -> Option<u64> {
    updater
        .signed_by_root::<Timestamp>("timestamp", bytes)
        .map(|t| t.signed.version.get())
}

/// Where the metadata repository goes and what the destination pointer says.
struct Placement {
    /// (source path, destination path) of the metadata repository to copy.
    copy: Option<(String, String)>,
    /// The destination pointer's value.
    pointer: String,
}

fn place_metadata(
    source: &str,
    destination: &str,
    host: Option<&str>,
    target: &str,
    mode: MetadataMode,
) -> Result<Placement> {
    // Resolve against a placeholder host: only paths matter for relative and absolute pointers.
    let placeholder = |path: &str| Repository {
        registry: host.unwrap_or("layout.invalid").to_string(),
        path: path.to_string(),
    };
    let source_metadata = placeholder(source).resolve(target)?;
    if mode == MetadataMode::KeepRemote {
        let host = host
            .ok_or_else(|| Error::Usage("--keep-metadata-remote needs a registry source".into()))?;
        let full = if source_metadata.registry == "layout.invalid" {
            format!("{host}/{}", source_metadata.path)
        } else {
            source_metadata.to_string()
        };
        return Ok(Placement {
            copy: None,
            pointer: full,
        });
    }
    if target.starts_with('.') {
        // Relative pointers survive the copy unchanged.
        let destination_metadata = placeholder(destination).resolve(target)?;
        return Ok(Placement {
            copy: Some((source_metadata.path, destination_metadata.path)),
            pointer: target.to_string(),
        });
    }
    if host.is_some_and(|h| h != source_metadata.registry) && !target.starts_with('/') {
        return Err(Error::Usage(format!(
            "the metadata repository {source_metadata} is on another registry; copy it separately \
             or keep it remote"
        )));
    }
    // Absolute or same-registry full pointers: same path at the destination.
    Ok(Placement {
        pointer: format!("/{}", source_metadata.path),
        copy: Some((source_metadata.path.clone(), source_metadata.path)),
    })
}

struct Copier<'a, S, D> {
    from: &'a S,
    /// The source's registry host, for cross-repository mounts.
    host: Option<&'a str>,
    to: &'a D,
    options: &'a CopyOptions,
    report: CopyReport,
    /// `repository@digest` already handled in this run (blobs are per repository).
    done: HashSet<String>,
    progress: &'a mut dyn FnMut(&str),
    /// Set once the source has been verified against the trusted root.
    verified: Option<Verified>,
    /// The source's verified metadata, which image tags are resolved through.
    images: Option<Updater<StoreSource<&'a S>>>,
    /// Set when the copy writes a timestamp.
    guard: Option<TimestampGuard<'a, D>>,
}

/// What the check that the copy's timestamp is not older than the destination's needs. It is
/// made before anything is written and again just before the timestamp is: another copy may
/// have written a newer one meanwhile.
struct TimestampGuard<'a, D> {
    /// The copied metadata repository in the source.
    source: String,
    /// The copied metadata repository at the destination.
    destination: String,
    /// With a verified source, the destination's root chain followed from its root
    /// ([`destination_roots`]).
    at_destination: Option<Updater<StoreSource<&'a D>>>,
}

impl<S: ContentStore, D: ContentStore> Copier<'_, S, D> {
    /// Copies the metadata repository: every TUF file (the root chain and every role
    /// version), then its `tuf-metadata` index last.
    async fn metadata_repository(&mut self, source: &str, destination: &str) -> Result<()> {
        let tags = self.from.tags(source).await?;
        if !tags.iter().any(|t| t == "1.root.json") {
            return Err(Error::Pointer {
                repository: format!("{} {source}", self.from.describe()),
                reason: "the metadata repository holds no 1.root.json".into(),
            });
        }
        for tag in in_publish_order(tags.iter().filter(|t| t.ends_with(".json"))) {
            self.tag(source, destination, tag).await?;
        }
        if tags.iter().any(|t| t == METADATA_TAG) {
            self.tag(source, destination, METADATA_TAG).await?;
        }
        Ok(())
    }

    /// Refuses to put older metadata over the destination's: clients there that saw its state
    /// would take the copy for a rollback, and new ones would get back what it revoked. The
    /// source's timestamp must not be older. Without a trusted root, the versions written in
    /// the files are compared, so after a recovery that restarted timestamp versions (TUF
    /// 5.3.11) a destination still holding the inflated timestamp refuses the copy too.
    /// Versioned files are compared as they are copied ([`Copier::tag`]).
    async fn check_timestamp(&self) -> Result<()> {
        let Some(guard) = &self.guard else {
            return Ok(());
        };
        match (&guard.at_destination, &self.verified) {
            (Some(at_destination), Some(verified)) => {
                self.check_verified_not_older(&guard.destination, at_destination, verified)
                    .await
            }
            _ => {
                self.check_not_older(&guard.source, &guard.destination)
                    .await
            }
        }
    }

    /// [`Copier::check_timestamp`] without a trusted root: the versions written in the files.
    async fn check_not_older(&self, source: &str, destination: &str) -> Result<()> {
        let limit = crate::Limits::default().timestamp;
        let (from, to) = futures_util::join!(
            fetch_file(self.from, source, "timestamp.json", limit, None),
            fetch_file(self.to, destination, "timestamp.json", limit, None),
        );
        let version = |bytes: Option<Vec<u8>>| signed_version(&bytes?);
        let (Some(from), Some(to)) = (version(from?), version(to?)) else {
            return Ok(());
        };
        self.not_older(destination, from, to)
    }

    /// [`Copier::check_not_older`] for a source verified against the trusted root: its
    /// verified timestamp against the destination's, counted only when `at_destination`'s
    /// root (the source's, or further along the destination's chain: [`destination_roots`])
    /// signs it. A destination timestamp it does not sign, or that cannot be read as one, is
    /// junk (a forgery an unverified copy left) and holds nothing back.
    async fn check_verified_not_older<V: crate::source::MetadataSource>(
        &self,
        destination: &str,
        at_destination: &Updater<V>,
        verified: &Verified,
    ) -> Result<()> {
        let limit = crate::Limits::default().timestamp;
        let to =
            junk_as_none(fetch_file(self.to, destination, "timestamp.json", limit, None).await)?;
        match to
            .flatten()
            .and_then(|bytes| timestamp_version(at_destination, &bytes))
        {
            Some(to) => self.not_older(destination, verified.versions["timestamp"], to),
            None => Ok(()),
        }
    }

    fn not_older(&self, destination: &str, from: u64, to: u64) -> Result<()> {
        if from < to {
            return Err(Error::Rollback {
                role: format!("timestamp of {destination} in {}", self.to.describe()),
                trusted: to,
                fetched: from,
            });
        }
        Ok(())
    }

    /// With a verified source, whether the object tagged `tag` of `source` (`stored`) is part
    /// of what was verified: a versioned file at most at the version the verified state
    /// names for its role (at that version, and for roots of the chain verified, exactly the
    /// file verified), a role's head at most at that version too, and the timestamp the one
    /// verified. Files past it are left out (unverified, they could only block the real
    /// versions later: those are written once, and a head past them names a file not
    /// copied). A verified file that changed since is refused; one attached to an image
    /// (which verification reads from the metadata repository) is left out.
    async fn verified_part(&self, source: &str, tag: &str, stored: &Stored) -> Result<Part> {
        let Some(verified) = &self.verified else {
            return Ok(Part::Copied);
        };
        // A version file attached to an image (`ref-…-N.<role>.json`) is one like any other.
        let attached = attached_file(tag);
        let file = attached.unwrap_or(tag);
        let expected = if let Some((version, role)) = parse_versioned_file(file) {
            match verified.expects(version, role) {
                Expected::Past => return Ok(Part::LeftOut(PAST)),
                Expected::File(digest) => Some(digest),
                Expected::Any => None,
            }
        } else if tag == "timestamp.json" && source == verified.metadata {
            Some(verified.timestamp_digest.as_str())
        } else {
            let head_of = tag
                .strip_suffix(".json")
                .and_then(|role| verified.versions.get(role));
            if let Some(named) = head_of {
                let limit = crate::Limits::default().targets;
                let head = junk_as_none(fetch_file(self.from, source, tag, limit, None).await)?;
                let version = head.flatten().and_then(|bytes| signed_version(&bytes));
                if version.is_none_or(|version| version > *named) {
                    return Ok(Part::LeftOut(PAST));
                }
            }
            None
        };
        match expected {
            // Beside the images, a file is a copy readers pass over for the metadata
            // repository's (by digest): anyone who can push there may tag junk so.
            Some(digest) if !is_metadata_file(file, stored, digest) => match attached {
                Some(_) => Ok(Part::LeftOut("not the file verified")),
                None if source != verified.metadata => Ok(Part::LeftOut("not the file verified")),
                None => Err(Error::Conflict {
                    what: format!("{source}:{tag} in {}", self.from.describe()),
                    reason: "it is not the file verified (changed since, or not a TUF \
                             metadata manifest readers take)"
                        .into(),
                }),
            },
            _ => Ok(Part::Copied),
        }
    }

    /// Why image tag `tag` of `source`, tagging `stored`, is left out, if it is. With the
    /// source verified, image tags are copied as TUF signs them, the source's tags never
    /// trusted: one signed for another object (moved in the source) is refused, and one a
    /// search does not find signed (not signed, or behind a role delegated and not published)
    /// is an error when asked for by name and left out of `--all-tags` (written, it would
    /// replace the destination's, which may be signed).
    async fn signed_image(
        &mut self,
        source: &str,
        tag: &str,
        stored: &Stored,
    ) -> Result<Option<String>> {
        let Some(images) = self.images.as_mut() else {
            return Ok(None);
        };
        let name = format!("{}:{tag}", signed_path(&self.options.signed_as, source));
        let beside = Repository {
            registry: self.host.unwrap_or("store.invalid").to_string(),
            path: source.to_string(),
        };
        match images.find(&name, Some(&beside)).await {
            Ok(target) => {
                let reference = format!("{source}:{tag} in {}", self.from.describe());
                let size = stored.bytes.len() as u64;
                check_fields(
                    &reference,
                    &target,
                    &stored.digest,
                    size,
                    &stored.media_type,
                )?;
                Ok(None)
            }
            Err(
                e @ (Error::TargetNotSigned { .. }
                | Error::NotInSnapshot { .. }
                | Error::Delegation { .. }),
            ) if self.options.tags == Tags::All => Ok(Some(e.to_string())),
            Err(e) => Err(e),
        }
    }

    /// The manifest `tag` of `source` tags.
    async fn read_tag(&self, source: &str, tag: &str) -> Result<Stored> {
        self.from
            .manifest(source, tag, MANIFEST_LIMIT)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("{source}:{tag} in {}", self.from.describe()),
            })
    }

    /// Copies the object tagged `tag` with everything it references, then the tag.
    async fn tag(&mut self, source: &str, destination: &str, tag: &str) -> Result<()> {
        let stored = self.read_tag(source, tag).await?;
        if let Part::LeftOut(why) = self.verified_part(source, tag, &stored).await? {
            (self.progress)(&format!("left out {source}:{tag}: {why}"));
            return Ok(());
        }
        self.write_tag(source, destination, tag, stored).await
    }

    /// Copies `stored`, the object `tag` of `source` tags, with everything it references,
    /// then the tag.
    async fn write_tag(
        &mut self,
        source: &str,
        destination: &str,
        tag: &str,
        mut stored: Stored,
    ) -> Result<()> {
        let existing = self.to.manifest(destination, tag, MANIFEST_LIMIT).await?;
        // What is written: the source's object, or for a referrers index, the destination's
        // entries with the source's added (another tool's signature made there is kept).
        let mut written = None;
        if tag.starts_with("sha256-") {
            let mut left_out = Vec::new();
            let verified = self.verified.as_ref();
            let takes = |entry: &Stored| {
                let takes = verified.is_none_or(|verified| verified.takes_referrer(entry));
                if !takes {
                    left_out.push(entry.digest.clone());
                }
                takes
            };
            let held = held_referrers(self.from, source, stored, takes).await?;
            for digest in left_out {
                (self.progress)(&format!(
                    "left out {source}@{digest} from {tag}: not a file verified"
                ));
            }
            let Some(held) = held else {
                (self.progress)(&format!("skipped {source}:{tag}: not a referrers index"));
                return Ok(());
            };
            stored = held;
            // Merged only when the source's differs (each entry there is looked up).
            if let Some(there) = existing
                .as_ref()
                .filter(|there| there.digest != stored.digest)
                && let Some(kept) =
                    held_referrers(self.to, destination, there.clone(), |_| true).await?
            {
                written = Some(merged_referrers(kept, &stored)?);
            }
        }
        let written = written.as_ref().unwrap_or(&stored);
        if let Some(existing) = existing {
            if existing.digest == written.digest {
                self.report.skipped += 1;
                return Ok(());
            }
            if parse_versioned_file(tag).is_some() {
                return Err(Error::Conflict {
                    what: format!("{destination}:{tag} in {}", self.to.describe()),
                    reason: format!(
                        "it holds {}, the source {}: versioned metadata is written once",
                        existing.digest, stored.digest
                    ),
                });
            }
        }
        self.children(source, destination, &stored, 0).await?;
        if tag == "timestamp.json"
            && self
                .guard
                .as_ref()
                .is_some_and(|guard| guard.destination == destination)
        {
            self.check_timestamp().await?;
        }
        self.put_manifest(destination, tag, &written.bytes, &written.media_type)
            .await
    }

    /// Copies what a manifest or index references (blobs, child manifests), depth first, so
    /// every object is written after what it points at.
    async fn children(
        &mut self,
        source: &str,
        destination: &str,
        stored: &crate::store::Stored,
        depth: usize,
    ) -> Result<()> {
        crate::store::check_depth(stored, depth)?;
        let (blobs, children) = crate::store::references(stored)?;
        let blobs: Vec<_> = blobs
            .into_iter()
            .filter(|blob| self.done.insert(format!("{destination}@{}", blob.digest)))
            .collect();
        // Blobs are independent: several at once, as other registry clients do, so one
        // layer's round trips and hashing overlap another's transfer.
        let (from, to, host, dry_run) = (self.from, self.to, self.host, self.options.dry_run);
        let mut copies = futures_util::stream::iter(&blobs)
            .map(|blob| async move {
                let outcome = if to.has_blob(destination, &blob.digest).await? {
                    BlobCopy::Present
                } else if dry_run {
                    BlobCopy::Would
                } else if to.mount(destination, &blob.digest, host, source).await? {
                    BlobCopy::Mounted
                } else {
                    // Streamed: memory stays bounded whatever the layer size.
                    let start = std::time::Instant::now();
                    let data = from.open_blob(source, &blob.digest, blob.size).await?;
                    to.put_blob_stream(destination, &blob.digest, blob.size, data)
                        .await?;
                    BlobCopy::Copied(start.elapsed())
                };
                Ok::<_, Error>((blob, outcome))
            })
            .buffer_unordered(BLOB_CONCURRENCY);
        while let Some(copied) = copies.next().await {
            let (blob, outcome) = copied?;
            let line = match outcome {
                BlobCopy::Present => {
                    self.report.skipped += 1;
                    continue;
                }
                BlobCopy::Would => format!("would copy blob {} ({} bytes)", blob.digest, blob.size),
                BlobCopy::Mounted => {
                    self.report.mounted += 1;
                    format!("mounted blob {} ({} bytes)", blob.digest, blob.size)
                }
                BlobCopy::Copied(took) => format!(
                    "copied blob {} ({} bytes, {:.1} MB/s)",
                    blob.digest,
                    blob.size,
                    blob.size as f64 / took.as_secs_f64().max(1e-6) / 1e6
                ),
            };
            if !matches!(outcome, BlobCopy::Mounted) {
                // The size is the source manifest's word, not yet checked against the bytes.
                self.report.bytes = self.report.bytes.saturating_add(blob.size);
            }
            self.report
                .written
                .push(format!("{destination}@{}", blob.digest));
            (self.progress)(&line);
        }
        for child in &children {
            if !self.done.insert(format!("{destination}@{}", child.digest)) {
                continue;
            }
            // The limit is ours, whatever size the unverified index claims for the child.
            let child_manifest = self
                .from
                .manifest(source, &child.digest, MANIFEST_LIMIT)
                .await?
                .ok_or_else(|| Error::NotFound {
                    what: format!("{source}@{} in {}", child.digest, self.from.describe()),
                })?;
            if self
                .to
                .manifest(destination, &child.digest, MANIFEST_LIMIT)
                .await?
                .is_some()
            {
                self.report.skipped += 1;
                continue;
            }
            Box::pin(self.children(source, destination, &child_manifest, depth + 1)).await?;
            self.put_manifest(
                destination,
                &child.digest,
                &child_manifest.bytes,
                &child_manifest.media_type,
            )
            .await?;
        }
        Ok(())
    }

    async fn put_manifest(
        &mut self,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<()> {
        let line = format!("{} {repository}:{reference}", self.verb());
        (self.progress)(&line);
        self.report.bytes += bytes.len() as u64;
        self.report
            .written
            .push(format!("{repository}:{reference}"));
        if self.options.dry_run {
            return Ok(());
        }
        let media_type = if media_type.is_empty() {
            MANIFEST_MEDIA_TYPE
        } else {
            media_type
        };
        self.to
            .put_manifest(repository, reference, bytes, media_type)
            .await
    }

    fn verb(&self) -> &'static str {
        if self.options.dry_run {
            "would copy"
        } else {
            "copied"
        }
    }
}

/// A referrers index (tag schema) with only the entries `store` holds at `repository` and
/// `takes` takes; `None` when it is no index. It is a discovery aid that whoever can push to
/// the repository can fill with junk: junk must not stop the copy, nor be written where the
/// registry would refuse it.
async fn held_referrers<S: ContentStore>(
    store: &S,
    repository: &str,
    stored: Stored,
    mut takes: impl FnMut(&Stored) -> bool,
) -> Result<Option<Stored>> {
    let Ok(index) = Manifest::parse("referrers index", &stored.bytes) else {
        return Ok(None);
    };
    let mut held = Vec::new();
    for entry in &index.manifests {
        // An entry must name a manifest by digest: a tag (`tuf-metadata`) would be looked up
        // and written like one. What fails to read as a manifest is not held.
        if crate::grammar::check_digest(&entry.digest).is_err() {
            continue;
        }
        let manifest = store.manifest(repository, &entry.digest, MANIFEST_LIMIT);
        if junk_as_none(manifest.await)?
            .flatten()
            .is_some_and(|manifest| takes(&manifest))
        {
            held.push(entry.clone());
        }
    }
    if held.len() == index.manifests.len() {
        return Ok(Some(stored));
    }
    Ok(Some(referrers_index(&held, &index.annotations)))
}

/// The destination's referrers index `there` with the entries of the source's `held` it lacks,
/// after its own; `there` as it is when it lacks none (copied again, nothing is written).
fn merged_referrers(there: Stored, held: &Stored) -> Result<Stored> {
    let index = Manifest::parse("referrers index", &there.bytes)?;
    let held = Manifest::parse("referrers index", &held.bytes)?;
    let entries = crate::layout::with_entries(&index.manifests, &held.manifests);
    if entries.len() == index.manifests.len() {
        return Ok(there);
    }
    Ok(referrers_index(&entries, &index.annotations))
}

/// A referrers index of `entries`.
fn referrers_index(
    entries: &[crate::layout::Entry],
    annotations: &std::collections::BTreeMap<String, String>,
) -> Stored {
    let bytes = crate::layout::index(entries, annotations);
    Stored {
        digest: crate::layout::sha256_digest(&bytes),
        bytes,
        media_type: crate::layout::INDEX_MEDIA_TYPE.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_tags_are_told_from_image_tags() {
        for tag in [
            "tuf-metadata",
            "3.team-a.json",
            "timestamp.json",
            "sha256-ab12",
            "tuf-claim-0123456789abcdef-1764115200-00ff00ff",
        ] {
            assert!(is_metadata_tag(tag), "{tag}");
        }
        for tag in ["v1", "latest", "1.2.3"] {
            assert!(!is_metadata_tag(tag), "{tag}");
        }
    }

    #[test]
    fn relative_pointers_move_with_the_image() {
        let placed = place_metadata(
            "team-a/app",
            "prod/app",
            Some("r:1"),
            "../../org/tuf",
            MetadataMode::Copy,
        )
        .unwrap();
        assert_eq!(placed.copy, Some(("org/tuf".into(), "org/tuf".into())));
        assert_eq!(placed.pointer, "../../org/tuf");
        let placed = place_metadata(
            "team-a/app",
            "x/y/app",
            Some("r:1"),
            "../tuf",
            MetadataMode::Copy,
        )
        .unwrap();
        assert_eq!(placed.copy, Some(("team-a/tuf".into(), "x/y/tuf".into())));
        let placed = place_metadata(
            "team-a/app",
            "prod/app",
            Some("r:1"),
            "r:1/org/tuf",
            MetadataMode::Copy,
        )
        .unwrap();
        assert_eq!(placed.pointer, "/org/tuf");
        assert!(
            place_metadata(
                "team-a/app",
                "prod/app",
                Some("r:1"),
                "other:2/org/tuf",
                MetadataMode::Copy
            )
            .is_err()
        );
        let remote = place_metadata(
            "team-a/app",
            "prod/app",
            Some("r:1"),
            "../../org/tuf",
            MetadataMode::KeepRemote,
        )
        .unwrap();
        assert_eq!(
            (remote.copy, remote.pointer.as_str()),
            (None, "r:1/org/tuf")
        );
    }
}
