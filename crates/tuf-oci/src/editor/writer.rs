//! The registry side of writing: metadata files stored as manifests in the registry layout
//! (`docs/layout.md`), write-once versions with their claims, attachments to the images they
//! sign with the referrers tag schema, and the publish of snapshot and timestamp.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::StreamExt;
use tough::schema::decoded::Decoded;
use tough::schema::{Hashes, KeyHolder, Metafile, Snapshot, Timestamp};

use crate::claim::{Claim, Withdrawal};
use crate::error::{Error, Result, junk_as_none};
use crate::keys::SigningKey;
use crate::layout::{
    EMPTY_BLOB, EMPTY_MEDIA_TYPE, Entry, FILENAME_ANNOTATION, INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE, METADATA_ARTIFACT_TYPE, METADATA_LAYER_MEDIA_TYPE, METADATA_TAG, Manifest,
    attachment_tag, index, index_entry, metadata_entry, metadata_manifest, referrers_tag,
    signed_version, versioned_file, with_entries,
};
use crate::location::Repository;
use crate::registry::Registry;
use crate::source::RegistrySource;

use super::{
    Expiries, SPEC_VERSION, WRITE_CONCURRENCY, WRITER_READ_LIMIT, nonzero, sign_role, whole_seconds,
};

/// Snapshot versions a publish skips over (left by interrupted publishes) before giving up.
const MAX_SKIPPED_VERSIONS: u64 = 100;
/// Attempts at merging into a referrers index that another writer changed meanwhile.
const REFERRERS_RETRIES: usize = 8;

/// Why a writer whose claim others may no longer see steps back.
const TOO_LONG: &str = "storing took longer than a claim lasts; re-read and retry";

/// Metadata files in a repository by tag, each with the digest of the image it is attached
/// to (`None`: a tag that is no such file).
type Attachments = HashMap<String, Option<(String, Entry)>>;

/// What becomes of a writer's claim once its version is stored.
enum Claimed {
    /// Kept until it goes stale.
    Keep,
    /// Withdrawn.
    Withdraw,
}

/// What one merge into a referrers index did.
enum Merge {
    /// The index lacked nothing.
    Complete,
    /// The index was pushed with what it lacked (these manifests, by digest); a later tag
    /// listing must confirm that no file it lacks was pushed meanwhile.
    Pushed(HashSet<String>),
    /// Reading or pushing the index failed (contention, most likely: distribution answers
    /// 500 to writers of one tag at once); the next round tries again.
    Failed(Error),
}

/// A role file a snapshot names: its entry in the snapshot and the descriptor of its manifest
/// in the `tuf-metadata` index.
#[derive(Debug, Clone)]
pub(super) struct RoleFile {
    pub(super) meta: Metafile,
    pub(super) entry: Entry,
}

impl RoleFile {
    /// Version `version` of `role`, with these bytes.
    pub(super) fn of(role: &str, version: u64, bytes: &[u8]) -> Self {
        RoleFile {
            meta: metafile(version, bytes),
            entry: index_entry(&versioned_file(role, version), bytes),
        }
    }
}

/// Pushes metadata files in the registry layout.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    pub(super) registry: Registry,
    pub(super) metadata: Repository,
}

impl Writer {
    /// Reads metadata file `name` from the metadata repository.
    pub(super) async fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        RegistrySource::new(self.registry.clone(), self.metadata.clone())
            .fetch_from(&self.metadata, name, WRITER_READ_LIMIT)
            .await
    }

    /// Stores timestamp version `version` (`bytes`) unless the stored timestamp is no longer the
    /// one before it: another publish or timestamp refresh got there since this editor read the
    /// state, and overwriting its timestamp would hide what it published (and, with the same
    /// version, show clients two timestamps). Registries have no compare-and-swap, so writers
    /// of one timestamp version also claim it ([`claim`]) and read back what they stored.
    pub(super) async fn push_timestamp(&self, version: u64, bytes: &[u8]) -> Result<Entry> {
        self.refuse_stored_timestamp(version).await?;
        // Unlike role versions, timestamp versions start again after a timestamp key rotation
        // (TUF 5.3.11): the claim must not outlive the write.
        let claimed = versioned_file("timestamp", version);
        let still_free = self.refuse_stored_timestamp(version);
        self.store_claimed(
            &claimed,
            "timestamp.json",
            bytes,
            still_free,
            Claimed::Withdraw,
        )
        .await
    }

    /// Fails with `Conflict` when the stored timestamp has version `version` or later.
    async fn refuse_stored_timestamp(&self, version: u64) -> Result<()> {
        let stored = self
            .read_file("timestamp.json")
            .await?
            .and_then(|bytes| signed_version(&bytes));
        if let Some(stored) = stored
            && stored >= version
        {
            return Err(Error::Conflict {
                what: format!("timestamp.json in {}", self.metadata),
                reason: format!(
                    "version {stored} was stored since this state was read (version {}); run \
                     again",
                    version - 1
                ),
            });
        }
        Ok(())
    }

    /// Stores `bytes` as file `name` in `repository` (manifest tagged `name`), optionally
    /// attached to `subject`. Returns the manifest's descriptor.
    pub(super) async fn push_file(
        &self,
        repository: &Repository,
        name: &str,
        bytes: &[u8],
        subject: Option<&Entry>,
    ) -> Result<Entry> {
        self.push_tagged(repository, name, name, bytes, subject)
            .await
    }

    /// Stores file `name` under tag `tag` (a file attached to an image in single-repository
    /// mode has a tag of its own).
    pub(super) async fn push_tagged(
        &self,
        repository: &Repository,
        tag: &str,
        name: &str,
        bytes: &[u8],
        subject: Option<&Entry>,
    ) -> Result<Entry> {
        let layer = self.push_layer(repository, bytes).await?;
        self.push_manifest_for(repository, tag, name, &layer, subject)
            .await
    }

    /// Stores the blobs of a metadata manifest for file `bytes`; returns the layer.
    pub(super) async fn push_layer(&self, repository: &Repository, bytes: &[u8]) -> Result<Entry> {
        self.registry
            .push_blob(repository, EMPTY_MEDIA_TYPE, EMPTY_BLOB)
            .await?;
        // Stored as a blob even when embedded: copies and other readers take the blob.
        self.registry
            .push_blob(repository, METADATA_LAYER_MEDIA_TYPE, bytes)
            .await?;
        Ok(Entry::metadata_layer(bytes))
    }

    /// Stores the metadata manifest of file `name` (blobs already stored) under `tag`.
    pub(super) async fn push_manifest_for(
        &self,
        repository: &Repository,
        tag: &str,
        name: &str,
        layer: &Entry,
        subject: Option<&Entry>,
    ) -> Result<Entry> {
        let manifest = metadata_manifest(name, layer, subject);
        self.registry
            .push_manifest(&repository.tagged(tag), &manifest, MANIFEST_MEDIA_TYPE)
            .await?;
        Ok(metadata_entry(name, &manifest))
    }

    /// Stores a versioned file beside images, refusing to replace one that exists: versions are
    /// write-once. (Which writer gets a version is settled in the metadata repository first:
    /// [`Writer::push_version`].)
    pub(super) async fn push_once(
        &self,
        repository: &Repository,
        name: &str,
        bytes: &[u8],
        subject: Option<&Entry>,
    ) -> Result<Entry> {
        self.refuse_existing(repository, name).await?;
        let pushed = self.push_file(repository, name, bytes, subject).await?;
        self.read_back(repository, name, &pushed).await?;
        Ok(pushed)
    }

    /// Stores version file `name` in the metadata repository: once, and only when no other
    /// writer is storing the same version at the same moment ([`claim`]).
    pub(super) async fn push_version(&self, name: &str, bytes: &[u8]) -> Result<Entry> {
        let repository = &self.metadata;
        self.refuse_existing(repository, name).await?;
        // Once stored, the file itself keeps other writers off the version.
        let still_free = self.refuse_existing(repository, name);
        self.store_claimed(name, name, bytes, still_free, Claimed::Keep)
            .await
    }

    /// Stores the metadata file `layer` holds under `tag` in the metadata repository, holding a
    /// claim on version file `claimed` ([`claim`]) meanwhile. `still_free` is awaited once
    /// claimed (a writer whose claim went stale may have stored the version since the caller
    /// looked), and what was stored is read back. A failed write withdraws the claim: a retry
    /// would otherwise meet it as another writer's until it went stale.
    async fn store_claimed(
        &self,
        claimed: &str,
        tag: &str,
        bytes: &[u8],
        still_free: impl Future<Output = Result<()>>,
        after: Claimed,
    ) -> Result<Entry> {
        let repository = &self.metadata;
        let claim = self.stake(claimed).await?;
        let conflict = |reason: &str| Error::Conflict {
            what: format!("{claimed} in {repository}"),
            reason: reason.into(),
        };
        let mut withdrawal = Withdrawal::NothingWritten;
        let stored = async {
            still_free.await?;
            // Pushed while others still see the claim, and reported only if read back before
            // it lapsed: a writer claiming after that could have written over it unseen.
            if claim.is_late() {
                return Err(conflict(TOO_LONG));
            }
            withdrawal = Withdrawal::MayHaveWritten;
            // The signed file reaches the registry only now, its claim won: a writer stepping
            // back leaves no signed file behind (a timestamp for an older state, fresh, that a
            // registry could serve for as long as it lived).
            // (Its config, the empty blob, was stored with the claim.)
            self.registry
                .push_blob(repository, METADATA_LAYER_MEDIA_TYPE, bytes)
                .await?;
            let layer = Entry::metadata_layer(bytes);
            let pushed = self
                .push_manifest_for(repository, tag, tag, &layer, None)
                .await?;
            self.read_back(repository, tag, &pushed).await?;
            if claim.has_lapsed() {
                return Err(conflict(
                    "it was stored after its claim lapsed, so another writer may have stored \
                     this version over it; re-read and retry",
                ));
            }
            Ok(pushed)
        }
        .await;
        if stored.is_err() || matches!(after, Claimed::Withdraw) {
            // Should withdrawing fail, the claim goes stale in time.
            let _ = claim.withdraw(&self.registry, repository, withdrawal).await;
        }
        stored
    }

    /// Claims version file `name` in the metadata repository ([`claim`]): a metadata manifest
    /// of that name holding no file (an empty layer) under a claim tag. Steps back with
    /// `Conflict` when another writer claims it too, or when claiming took so long that others
    /// may no longer see the claim. Returns the claim, still active.
    async fn stake(&self, name: &str) -> Result<Claim> {
        let repository = &self.metadata;
        let claim = Claim::new(name)?;
        // The empty blob serves as config and as the placeholder layer.
        self.registry
            .push_blob(repository, EMPTY_MEDIA_TYPE, EMPTY_BLOB)
            .await?;
        let placeholder = Entry::metadata_layer(EMPTY_BLOB);
        self.push_manifest_for(repository, &claim.tag, name, &placeholder, None)
            .await?;
        let rival = claim.rival(&self.registry, repository).await?;
        if rival.is_some() || claim.is_late() {
            claim
                .withdraw(&self.registry, repository, Withdrawal::NothingWritten)
                .await?;
            return Err(Error::Conflict {
                what: format!("{name} in {repository}"),
                reason: match rival {
                    Some(tag) => format!(
                        "another writer is storing this version at the same time (claim \
                         {tag}); re-read and retry"
                    ),
                    None => TOO_LONG.into(),
                },
            });
        }
        Ok(claim)
    }

    /// Fails with `Conflict` when version file `name` exists.
    pub(super) async fn refuse_existing(&self, repository: &Repository, name: &str) -> Result<()> {
        if self
            .registry
            .manifest(&repository.tagged(name), WRITER_READ_LIMIT)
            .await?
            .is_some()
        {
            return Err(Error::Conflict {
                what: format!("{name} in {repository}"),
                reason: "this version already exists; re-read and retry".into(),
            });
        }
        Ok(())
    }

    /// Reads back what was stored: a writer that raced us to the same version and pushed after
    /// us wins, and we say so rather than report a version that is not ours.
    pub(super) async fn read_back(
        &self,
        repository: &Repository,
        name: &str,
        pushed: &Entry,
    ) -> Result<()> {
        let stored = self
            .registry
            .manifest(&repository.tagged(name), WRITER_READ_LIMIT)
            .await?;
        if stored.as_ref().map(|m| m.digest.as_str()) != Some(pushed.digest.as_str()) {
            return Err(Error::Conflict {
                what: format!("{name} in {repository}"),
                reason: "another writer pushed this version at the same time; re-read and retry"
                    .into(),
            });
        }
        Ok(())
    }

    /// Stores version `version` of `role` and moves its head to it.
    pub(super) async fn push_head_and_version(
        &self,
        role: &str,
        version: u64,
        bytes: &[u8],
    ) -> Result<()> {
        self.push_version(&versioned_file(role, version), bytes)
            .await?;
        self.push_head(role, bytes).await
    }

    /// Tags `bytes`, a version of `role` just stored in the metadata repository (its blobs are
    /// there), as the head of `role`: the manifest alone, tagged `<role>.json`.
    pub(super) async fn push_head(&self, role: &str, bytes: &[u8]) -> Result<()> {
        let head = format!("{role}.json");
        let layer = Entry::metadata_layer(bytes);
        self.push_manifest_for(&self.metadata, &head, &head, &layer, None)
            .await?;
        Ok(())
    }

    /// Stores a role version beside the images it signs (`subjects`), attached to each with
    /// `subject`, and adds it to each image's referrers index (tag-schema fallback: registries
    /// without the referrers API, like distribution 2.8, need clients to maintain it).
    pub(super) async fn attach(
        &self,
        role: &str,
        version: u64,
        bytes: &[u8],
        subjects: &[(Repository, Entry)],
    ) -> Result<()> {
        let file = versioned_file(role, version);
        let mut repositories: Vec<&Repository> = Vec::new();
        for (repository, _) in subjects {
            if !repositories.contains(&repository) {
                repositories.push(repository);
            }
        }
        for repository in repositories {
            let images: Vec<&Entry> = subjects
                .iter()
                .filter(|(r, _)| r == repository)
                .map(|(_, subject)| subject)
                .collect();
            if *repository != self.metadata {
                // Beside the images, where clients look for the role first.
                self.push_once(repository, &file, bytes, images.first().copied())
                    .await?;
            }
            // Under a tag naming each subject too, so writers find an image's referrers by
            // listing tags instead of reading every metadata manifest.
            let layer = self.push_layer(repository, bytes).await?;
            let attached: Attachments = futures_util::stream::iter(&images)
                .map(|subject| async {
                    let tag = attachment_tag(subject, &file);
                    let entry = self
                        .push_manifest_for(repository, &tag, &file, &layer, Some(subject))
                        .await?;
                    Ok::<_, Error>((tag, Some((subject.digest.clone(), entry))))
                })
                .buffer_unordered(WRITE_CONCURRENCY)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_>>()?;
            self.add_referrers(repository, &images, attached, &file)
                .await?;
        }
        Ok(())
    }

    /// Brings the referrers indexes (tag schema) of `subjects` in `repository` up to date with
    /// every metadata file there that names them (`known` starts with ours). The tagged files
    /// are the source of truth, found by listing tags. Distribution 2.8 ignores `If-Match`, so
    /// a writer can replace an index with one missing an entry it never listed. Hence a writer
    /// that pushes an index lists tags again, and reads and merges the index again while the
    /// listing names a file for it that its last push lacked. That converges: a writer that
    /// replaced this push had read the index before it and so listed the tags before it too;
    /// it lists again after its own push, finds the files it lacked, and merges them back.
    /// The last writer to push an index listed every file whose writer could have seen it
    /// complete before that push. The next signer of an image mends what a writer that failed
    /// here (after replacing another's push, say) left out.
    async fn add_referrers(
        &self,
        repository: &Repository,
        subjects: &[&Entry],
        mut known: Attachments,
        file: &str,
    ) -> Result<()> {
        let mut pending = subjects.to_vec();
        // The files each index was last pushed with by this writer, by subject digest.
        let mut pushed: HashMap<String, HashSet<String>> = HashMap::new();
        let mut failed = None;
        for round in 0..REFERRERS_RETRIES {
            if round > 1 {
                // Writers contending for one tag: back off a little, differently each time.
                let pause = 20 * round as u64 + u64::from(std::process::id() % 17);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            let tags = self.registry.tags(repository).await?;
            self.read_attachments(repository, &tags, &pending, &mut known)
                .await?;
            let (known, sent) = (&known, &pushed);
            let merges = futures_util::stream::iter(pending.iter().copied())
                .map(|subject| async move {
                    let wanted: Vec<&Entry> = known
                        .values()
                        .flatten()
                        .filter(|(of, _)| *of == subject.digest)
                        .map(|(_, entry)| entry)
                        .collect();
                    let lacked = sent.get(&subject.digest).is_none_or(|files| {
                        wanted.iter().any(|entry| !files.contains(&entry.digest))
                    });
                    if !lacked {
                        return (subject, Ok(Merge::Complete));
                    }
                    let merge = self.merge_index(repository, subject, wanted);
                    (subject, merge.await)
                })
                .buffer_unordered(WRITE_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            let mut unsettled = Vec::new();
            for (subject, merge) in merges {
                match merge? {
                    Merge::Complete => {}
                    Merge::Pushed(files) => {
                        pushed.insert(subject.digest.clone(), files);
                        unsettled.push(subject);
                    }
                    Merge::Failed(e) => {
                        failed = Some(e);
                        unsettled.push(subject);
                    }
                }
            }
            if unsettled.is_empty() {
                return Ok(());
            }
            pending = unsettled;
        }
        let indexes: Vec<String> = pending
            .iter()
            .map(|subject| referrers_tag(&subject.digest))
            .collect();
        let why = failed.map_or_else(
            || format!("they still changed after {REFERRERS_RETRIES} merges"),
            |e| format!("the last merge failed: {e}"),
        );
        Err(Error::Conflict {
            what: format!("referrers indexes {} in {repository}", indexes.join(", ")),
            reason: format!(
                "{why}; {file} is stored (publish names it), and signing the image again mends \
                 its index"
            ),
        })
    }

    /// Adds to `known` the metadata manifests among `tags` of `repository` that may name one
    /// of `subjects` and were not read yet, each with the digest of the subject it names
    /// (`None`: not a metadata file naming any, such as junk anyone who can push there may
    /// tag so). Tagged files are written once, so one read serves every round.
    async fn read_attachments(
        &self,
        repository: &Repository,
        tags: &[String],
        subjects: &[&Entry],
        known: &mut Attachments,
    ) -> Result<()> {
        let prefixes: Vec<String> = subjects.iter().map(|s| attachment_tag(s, "")).collect();
        for tag in tags {
            if known.contains_key(tag) || !prefixes.iter().any(|p| tag.starts_with(p.as_str())) {
                continue;
            }
            let read = self
                .registry
                .manifest(&repository.tagged(tag), WRITER_READ_LIMIT)
                .await;
            let Some(stored) = junk_as_none(read)?.flatten() else {
                continue;
            };
            let attachment = Manifest::parse(tag, &stored.bytes)
                .ok()
                .filter(|manifest| {
                    manifest.artifact_type.as_deref() == Some(METADATA_ARTIFACT_TYPE)
                        && manifest.layers.len() == 1
                        && manifest.layers[0].media_type == METADATA_LAYER_MEDIA_TYPE
                })
                .and_then(|manifest| {
                    let file = manifest.annotations.get(FILENAME_ANNOTATION)?.clone();
                    let mut entry = stored.entry();
                    entry.artifact_type = Some(METADATA_ARTIFACT_TYPE.into());
                    entry.annotations.insert(FILENAME_ANNOTATION.into(), file);
                    Some((manifest.subject?.digest, entry))
                });
            known.insert(tag.clone(), attachment);
        }
        Ok(())
    }

    /// Reads the referrers index of `subject` and pushes it again with whatever of `wanted` it
    /// lacks. It is read even when the tag listing does not show it: another tool (a
    /// signature, an SBOM) may have made it since, or a registry's listing may lag, and its
    /// entries are kept. An index that is junk (anyone who can push there can tag it) is
    /// replaced.
    async fn merge_index(
        &self,
        repository: &Repository,
        subject: &Entry,
        wanted: Vec<&Entry>,
    ) -> Result<Merge> {
        let tag = repository.tagged(&referrers_tag(&subject.digest));
        let current = match junk_as_none(self.registry.manifest(&tag, WRITER_READ_LIMIT).await) {
            Ok(Some(Some(current))) => Manifest::parse("referrers index", &current.bytes)
                .map(|index| index.manifests)
                .unwrap_or_default(),
            Ok(_) => Vec::new(),
            Err(e) => return Ok(Merge::Failed(e)),
        };
        let merged = with_entries(&current, wanted);
        if merged.len() == current.len() {
            return Ok(Merge::Complete);
        }
        let files = merged.iter().map(|m| m.digest.clone()).collect();
        let merged = index(&merged, &BTreeMap::new());
        Ok(
            match self
                .registry
                .push_manifest(&tag, &merged, INDEX_MEDIA_TYPE)
                .await
            {
                Ok(_) => Merge::Pushed(files),
                Err(e) => Merge::Failed(e),
            },
        )
    }

    /// Signs and pushes snapshot `snapshot_version` naming `roles` (by role name), then
    /// timestamp `timestamp_version` naming it, then the `tuf-metadata` index.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn publish_files(
        &self,
        holder: &KeyHolder,
        root: (&Vec<u8>, u64),
        roles: &BTreeMap<String, RoleFile>,
        snapshot_version: u64,
        timestamp_version: u64,
        snapshot_keys: &[SigningKey],
        timestamp_keys: &[SigningKey],
        expires: &Expiries,
    ) -> Result<()> {
        // A publish interrupted after its snapshot push leaves that version taken but named by
        // no timestamp: skip over it rather than fail forever (versions only have to grow).
        let first = snapshot_version;
        let mut snapshot_version = snapshot_version;
        let (snapshot, entry) = loop {
            let mut snapshot = Snapshot::new(
                SPEC_VERSION.into(),
                nonzero(snapshot_version),
                whole_seconds(expires.snapshot),
            );
            for (role, file) in roles {
                snapshot
                    .meta
                    .insert(format!("{role}.json"), file.meta.clone());
            }
            let snapshot = sign_role(snapshot, holder, snapshot_keys).await?;
            let file = versioned_file("snapshot", snapshot_version);
            match self.push_version(&file, snapshot.buffer()).await {
                Ok(entry) => break (snapshot, entry),
                Err(Error::Conflict { .. }) if snapshot_version < first + MAX_SKIPPED_VERSIONS => {
                    snapshot_version += 1;
                }
                Err(e) => return Err(e),
            }
        };
        // The snapshot head, pushed before the timestamp names the version: a new client reads
        // it beside the timestamp, a round trip sooner than by the digest the timestamp names.
        self.push_head("snapshot", snapshot.buffer()).await?;
        let mut entries = vec![entry];
        let mut timestamp = Timestamp::new(
            SPEC_VERSION.into(),
            nonzero(timestamp_version),
            whole_seconds(expires.timestamp),
        );
        timestamp.meta.insert(
            "snapshot.json".into(),
            metafile(snapshot_version, snapshot.buffer()),
        );
        let timestamp = sign_role(timestamp, holder, timestamp_keys).await?;
        entries.push(
            self.push_timestamp(timestamp_version, timestamp.buffer())
                .await?,
        );
        entries.push(index_entry(&versioned_file("root", root.1), root.0));
        entries.extend(roles.values().map(|file| file.entry.clone()));
        self.registry
            .push_manifest(
                &self.metadata.tagged(METADATA_TAG),
                &index(&entries, &BTreeMap::new()),
                INDEX_MEDIA_TYPE,
            )
            .await?;
        Ok(())
    }
}

fn metafile(version: u64, bytes: &[u8]) -> Metafile {
    use sha2::Digest as _;
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: Decoded::from(sha2::Sha256::digest(bytes).to_vec()),
            _extra: HashMap::new(),
        }),
        version: nonzero(version),
        _extra: HashMap::new(),
    }
}
