//! Writing TUF metadata into registries: creating a repository, delegating, signing and
//! revoking targets, publishing snapshot and timestamp, and rotating keys.
//!
//! Writers work on the newest signed version of each role, its *head* (tag `<role>.json` in the
//! metadata repository), which may be ahead of what snapshot publishes. Every head is verified
//! from the trusted root down before it is edited, and may not be older than the published
//! version, so a registry cannot make a writer re-sign content it injected or rolled back.
//!
//! This module edits TUF metadata; its `writer` stores it in the registry layout.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::num::NonZeroU64;

use aws_lc_rs::rand::SystemRandom;
use futures_util::StreamExt;
use serde_json::json;
use tough::TargetName;
use tough::editor::signed::SignedRole;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;
use tough::schema::{
    DelegatedRole, DelegatedTargets, Delegations, KeyHolder, Metafile, PathPattern, PathSet, Role,
    RoleKeys, RoleType, Root, Signed, Target, Targets, Timestamp,
};

use crate::descriptor::target_from_descriptor;
use crate::error::{Error, Result};
use crate::keys::SigningKey;
use crate::layout::{
    Entry, FILENAME_ANNOTATION, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, METADATA_ARTIFACT_TYPE,
    METADATA_TAG, Manifest, POINTER_ANNOTATION, check_role_name, index, index_entry,
    parse_versioned_file, versioned_file,
};
use crate::location::{ImageRef, Repository};
use crate::registry::Registry;
use crate::targets_metadata::TargetsMetadata;
use crate::updater::{Expiration, is_named_by, parse, trusted_root};
use crate::verify::Verifier;
use writer::{RoleFile, Writer};

mod writer;

/// The TUF specification version written into new metadata.
const SPEC_VERSION: &str = "1.0.0";
/// Largest head or image manifest a writer reads.
const WRITER_READ_LIMIT: u64 = 32 * 1024 * 1024;
/// Registry requests a writer keeps in flight at once (attachments of a many-image signing,
/// reading the heads of many roles).
const WRITE_CONCURRENCY: usize = 16;

/// Keys and thresholds of the four top-level roles, for `init`.
#[derive(Debug)]
pub struct TopLevelKeys {
    /// Root keys and how many must sign.
    pub root: (Vec<SigningKey>, NonZeroU64),
    /// Top-level targets keys and threshold.
    pub targets: (Vec<SigningKey>, NonZeroU64),
    /// Snapshot keys and threshold.
    pub snapshot: (Vec<SigningKey>, NonZeroU64),
    /// Timestamp keys and threshold.
    pub timestamp: (Vec<SigningKey>, NonZeroU64),
}

/// Expiry times for the metadata a command writes.
#[derive(Debug, Clone, Copy)]
pub struct Expiries {
    /// For root metadata.
    pub root: jiff::Timestamp,
    /// For targets metadata (top-level and delegated).
    pub targets: jiff::Timestamp,
    /// For snapshot metadata.
    pub snapshot: jiff::Timestamp,
    /// For timestamp metadata.
    pub timestamp: jiff::Timestamp,
}

/// A delegation to add (or replace) in a targets role.
#[derive(Debug, Clone)]
pub struct NewDelegation {
    /// The delegated role's name.
    pub role: String,
    /// Path patterns of target names it may sign (`team-a/*`).
    pub paths: Vec<String>,
    /// Its public keys.
    pub keys: Vec<tough::schema::key::Key>,
    /// How many of them must sign.
    pub threshold: NonZeroU64,
    /// Whether the search stops at this role (TUF 5.6.7.2.1).
    pub terminating: bool,
}

/// An image as the registry serves it, ready to sign.
#[derive(Debug)]
struct Served {
    name: TargetName,
    target: Target,
    repository: Repository,
    subject: Entry,
}

/// One role's head: its signed metadata and exact bytes.
#[derive(Debug, Clone)]
pub struct Head {
    /// The role name (`targets` for top-level targets).
    pub role: String,
    /// The verified metadata.
    pub signed: Signed<Targets>,
    /// The bytes as stored.
    pub bytes: Vec<u8>,
    /// The highest version of the role stored, one that does not verify included: versions
    /// are written once, so the next goes past it.
    pub taken: u64,
}

/// A delegation [`Editor::undelegate`] withdrew.
#[derive(Debug)]
pub struct Withdrawn {
    /// The delegating role's new version.
    pub version: u64,
    /// The other roles still delegating the role (with the same keys: role names are unique),
    /// through which a compromised key stays trusted until each withdraws it; or why they
    /// could not be listed (the withdrawal is stored either way).
    pub still_delegated_by: Result<Vec<String>>,
}

/// How the target names an edit gives must lead to the role it edits ([`Editor::find_role`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A client's search for each name comes to the role (signing: what no pull would find is
    /// not signed).
    Searched,
    /// The role's delegation covers each name, whatever comes before it in a search.
    Covered,
}

impl Head {
    /// The version the role's next version is written as.
    pub fn next_version(&self) -> NonZeroU64 {
        NonZeroU64::MIN.saturating_add(self.taken.max(self.signed.signed.version.get()))
    }
}

/// How far past a role's head [`Editor::head`] looks for versions stored.
const MAX_VERSIONS_AHEAD: u64 = 100;

/// The versions of `role` among the `stored` files past version `from`, at most
/// [`MAX_VERSIONS_AHEAD`] past it, lowest first.
fn versions_ahead(stored: &HashSet<String>, role: &str, from: u64) -> Vec<u64> {
    let mut ahead: Vec<u64> = stored
        .iter()
        .filter_map(|tag| parse_versioned_file(tag))
        .filter(|(version, stored_role)| {
            *stored_role == role && *version > from && *version - from <= MAX_VERSIONS_AHEAD
        })
        .map(|(version, _)| version)
        .collect();
    ahead.sort_unstable();
    ahead
}

/// Creates a new TUF repository in `metadata`: root, empty targets, snapshot and timestamp,
/// all version 1, and the `tuf-metadata` index. The root is settled first (stored, before
/// anything else); [`NewRepository::finish`] stores the rest.
///
/// An init that stopped part way, before its timestamp, is taken up where it stopped when run
/// again with the same keys: the root and targets it stored are kept, as they cannot be
/// stored again. A repository holding anything else (a timestamp, a `tuf-metadata` index, a
/// second version of a role) is another's, or published: never initialised again.
pub async fn init(
    registry: &Registry,
    metadata: &Repository,
    keys: &TopLevelKeys,
    expires: &Expiries,
) -> Result<NewRepository> {
    let writer = Writer {
        registry: registry.clone(),
        metadata: metadata.clone(),
    };
    if let Some(tag) = registry
        .tags(metadata)
        .await?
        .into_iter()
        .find(|tag| (tag == METADATA_TAG || tag.ends_with(".json")) && !left_by_init(tag))
    {
        return Err(Error::Usage(format!(
            "{metadata} already holds a TUF repository ({tag})"
        )));
    }
    let mut root = Root {
        spec_version: SPEC_VERSION.into(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires: whole_seconds(expires.root),
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    for (role, (role_keys, threshold)) in [
        (RoleType::Root, &keys.root),
        (RoleType::Targets, &keys.targets),
        (RoleType::Snapshot, &keys.snapshot),
        (RoleType::Timestamp, &keys.timestamp),
    ] {
        set_role_keys(&mut root, role, role_keys, *threshold)?;
    }
    let (root, root_bytes) = match writer.read_file("1.root.json").await? {
        Some(stored) => resumed_root(metadata, root, stored)?,
        None => {
            let holder = KeyHolder::Root(root.clone());
            let signed = sign_role(root.clone(), &holder, &keys.root.0).await?;
            writer.push_version("1.root.json", signed.buffer()).await?;
            (root, signed.buffer().clone())
        }
    };
    Ok(NewRepository {
        writer,
        root,
        root_bytes,
    })
}

/// Whether `tag`, a metadata file's, is one an init stores before its timestamp: what an
/// init that stopped part way may have left, and may take up. (Images of a repository that
/// will hold its own metadata have tags of their own, and their referrers `sha256-…`.)
fn left_by_init(tag: &str) -> bool {
    matches!(
        tag,
        "1.root.json" | "1.targets.json" | "targets.json" | "snapshot.json"
    ) || tag
        .strip_suffix(".snapshot.json")
        .is_some_and(|version| version.parse::<u64>().is_ok())
}

/// A TUF repository whose root is settled ([`init`]).
#[derive(Debug)]
pub struct NewRepository {
    writer: Writer,
    root: Root,
    root_bytes: Vec<u8>,
}

impl NewRepository {
    /// The root metadata, the clients' bootstrap. It is stored already: keep it before
    /// [`Self::finish`], which may stop part way.
    pub fn root(&self) -> &[u8] {
        &self.root_bytes
    }

    /// Stores the empty top-level targets (or keeps what an earlier init stored), then the
    /// snapshot, the timestamp and the `tuf-metadata` index.
    pub async fn finish(self, keys: &TopLevelKeys, expires: &Expiries) -> Result<()> {
        let NewRepository {
            writer,
            root,
            root_bytes,
        } = self;
        let holder = KeyHolder::Root(root.clone());
        let targets = match writer.read_file("1.targets.json").await? {
            Some(stored) => resumed_targets(&writer.metadata, &root, stored)?,
            None => {
                let targets = Targets::new(
                    SPEC_VERSION.into(),
                    NonZeroU64::MIN,
                    whole_seconds(expires.targets),
                );
                let targets = sign_role(targets, &holder, &keys.targets.0).await?;
                writer
                    .push_version("1.targets.json", targets.buffer())
                    .await?;
                targets.buffer().clone()
            }
        };
        writer.push_head("targets", &targets).await?;
        let mut roles = BTreeMap::new();
        roles.insert("targets".to_string(), RoleFile::of("targets", 1, &targets));
        writer
            .publish_files(
                &holder,
                (&root_bytes, 1),
                &roles,
                1,
                1,
                &keys.snapshot.0,
                &keys.timestamp.0,
                expires,
            )
            .await
    }
}

/// The root an earlier init stored (`stored`), when it is the root this one would store
/// (`root`) but for its expiry, signed by its own keys and not expired: the same keys, so the
/// init can go on with it. Any other root is another's, and is left as it is.
fn resumed_root(metadata: &Repository, mut root: Root, stored: Vec<u8>) -> Result<(Root, Vec<u8>)> {
    let refused = |reason: String| {
        Error::Usage(format!(
            "{metadata} holds the root of an unfinished repository (1.root.json) {reason}"
        ))
    };
    let signed = trusted_root(&stored).map_err(|e| refused(format!("that is unusable: {e}")))?;
    root.expires = signed.signed.expires;
    if signed.signed != root {
        // Named for the message: which roles' keys or thresholds differ, if any.
        let differing: Vec<String> = [
            RoleType::Root,
            RoleType::Targets,
            RoleType::Snapshot,
            RoleType::Timestamp,
        ]
        .into_iter()
        .filter(|role| signed.signed.roles.get(role) != root.roles.get(role))
        .map(|role| role.to_string())
        .collect();
        return Err(refused(format!(
            "with other keys or thresholds than these ({})",
            if differing.is_empty() {
                "its own fields".to_string()
            } else {
                differing.join(", ")
            }
        )));
    }
    if signed.signed.expires <= jiff::Timestamp::now() {
        return Err(refused(format!(
            "that expired at {}",
            signed.signed.expires
        )));
    }
    Ok((signed.signed, stored))
}

/// The top-level targets an earlier init stored (`stored`), when it is what init stores:
/// version 1 of `root`'s targets role, signing nothing, delegating nothing, not expired.
fn resumed_targets(metadata: &Repository, root: &Root, stored: Vec<u8>) -> Result<Vec<u8>> {
    let targets = TargetsMetadata::verified("targets", &stored, root)?;
    let reason = if targets.version() != NonZeroU64::MIN {
        Some(format!("is version {}", targets.version()))
    } else if targets.target_names().next().is_some() || !targets.delegations().is_empty() {
        Some("signs or delegates targets".to_string())
    } else if targets.expires() <= jiff::Timestamp::now() {
        Some(format!("expired at {}", targets.expires()))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::Usage(format!(
            "{metadata} holds the targets of an unfinished repository (1.targets.json) that \
             {reason}, not what init stores"
        ))),
        None => Ok(stored),
    }
}

/// A writer's view of a TUF repository: the trusted root and published versions, plus the heads
/// read on demand.
#[derive(Debug)]
pub struct Editor {
    writer: Writer,
    root: Signed<Root>,
    root_bytes: Vec<u8>,
    /// What the trusted snapshot names, by file name (`team-a.json`).
    published: BTreeMap<String, Metafile>,
    snapshot_version: u64,
    /// When the published snapshot expires.
    snapshot_expires: jiff::Timestamp,
    timestamp: Signed<Timestamp>,
    /// The published state was read under the root before the newest ([`Editor::open`]).
    across_rotation: bool,
}

impl Editor {
    /// Opens the repository holding metadata for `repository` (itself, or where its pointer or
    /// the verifier's override leads), reading the published state from the trusted root on.
    /// Expired published metadata is accepted here, since writers are the ones replacing it.
    ///
    /// A key rotation cut short between storing the new root and publishing under its keys
    /// (a killed `tuf-oci rotate`, a publish that failed) leaves published files the newest
    /// root's keys do not sign, which every writer's reading would refuse. When a signature
    /// fails, the published state is read under the root before the newest instead, and the
    /// editor writes under the newest: the next publish, with the new keys, finishes the
    /// rotation.
    pub async fn open(verifier: &Verifier, repository: &Repository) -> Result<Self> {
        let (role, message) = match verifier
            .updater(repository, Expiration::UnsafeIgnoreForRepair)
            .await
        {
            Ok(updater) => {
                let metadata = updater.source().metadata_repository().clone();
                return Ok(Editor::reading(verifier, metadata, &updater, &updater));
            }
            Err(Error::Signature { role, message }) => (role, message),
            Err(e) => return Err(e),
        };
        // Read under the root before the newest: what its keys sign is the state the
        // rotation's publish would have carried on (a file they do not sign either is refused).
        // Only while no timestamp was written after the one read: old files the old keys
        // signed, tagged again after the rotation went through, must not have writers sign
        // their state anew. A claim on the next timestamp withdrawn before anything was
        // written under it (a publish that met another writer's claim) is no such timestamp.
        let Ok(Some((before, newest))) = verifier.under_root_before_last(repository).await else {
            return Err(Error::Signature { role, message });
        };
        let next_timestamp = before
            .timestamp()
            .expect("refreshed")
            .signed
            .version
            .get()
            .saturating_add(1);
        let metadata = before.source().inner.metadata_repository().clone();
        let tags = verifier.registry().tags(&metadata).await?;
        let next = versioned_file("timestamp", next_timestamp);
        if let Some(claim) =
            crate::claim::may_have_written(verifier.registry(), &metadata, &next, &tags).await?
        {
            return Err(Error::Signature {
                role,
                message: format!(
                    "{message}; not read under the root before the newest either, since {next} \
                     may have been written after it (claim {claim} in {metadata})"
                ),
            });
        }
        Ok(Editor {
            across_rotation: true,
            ..Editor::reading(verifier, metadata, &before, &newest)
        })
    }

    /// Whether the published state is signed with keys the newest root no longer trusts (a
    /// key rotation cut short), and was read under the root before it: publishing with the
    /// new keys finishes the rotation.
    pub fn finishes_a_rotation(&self) -> bool {
        self.across_rotation
    }

    /// An editor of `metadata` in the state `published` read, writing under the root `rooted`
    /// holds.
    fn reading<S: crate::source::MetadataSource, R: crate::source::MetadataSource>(
        verifier: &Verifier,
        metadata: Repository,
        published: &crate::updater::Updater<S>,
        rooted: &crate::updater::Updater<R>,
    ) -> Self {
        let snapshot = published.snapshot().expect("refreshed");
        Editor {
            writer: Writer {
                registry: verifier.registry().clone(),
                metadata,
            },
            root: rooted.root().clone(),
            root_bytes: rooted.root_bytes().to_vec(),
            published: snapshot.signed.meta.clone().into_iter().collect(),
            snapshot_version: snapshot.signed.version.get(),
            snapshot_expires: snapshot.signed.expires,
            timestamp: published.timestamp().expect("refreshed").clone(),
            across_rotation: false,
        }
    }

    /// The metadata repository written to.
    pub fn metadata_repository(&self) -> &Repository {
        &self.writer.metadata
    }

    /// The trusted root.
    pub fn root(&self) -> &Signed<Root> {
        &self.root
    }

    /// Whether the metadata repository stores file `name` (`3.root.json`).
    pub async fn has_file(&self, name: &str) -> Result<bool> {
        Ok(self.writer.read_file(name).await?.is_some())
    }

    /// The head of top-level targets, verified with the root's keys.
    pub async fn top_targets(&self) -> Result<Head> {
        self.top_targets_among(&self.stored_files().await?).await
    }

    /// [`Editor::top_targets`], given the metadata repository's tags.
    async fn top_targets_among(&self, stored: &HashSet<String>) -> Result<Head> {
        let head = self.head("targets", stored, |signed| {
            self.root
                .signed
                .verify_role(signed)
                .map_err(|e| e.to_string())
        });
        head.await?.ok_or_else(|| Error::NotFound {
            what: format!("targets.json in {}", self.writer.metadata),
        })
    }

    /// The metadata repository's tags (its stored files), read once per operation.
    async fn stored_files(&self) -> Result<HashSet<String>> {
        let tags = self.writer.registry.tags(&self.writer.metadata).await?;
        Ok(tags.into_iter().collect())
    }

    /// Every role reachable from top-level targets (their heads), top-level targets first.
    pub async fn all_roles(&self) -> Result<Vec<Head>> {
        let stored = self.stored_files().await?;
        self.walk_into(&stored, |_, _| true).await
    }

    /// Finds `role` among the roles whose paths cover `targets` (or anywhere, without
    /// targets): the delegations that vouch for it (those of a parent on the first target's
    /// path), its head if it has one, and the highest version of it stored ([`Head::taken`];
    /// for a role not written yet, junk anyone can tag, which its first version goes past).
    /// Every target must lead to it: through delegations whose paths cover the name, from
    /// top-level targets down, and, with [`Reach::Searched`], as a client's search for the
    /// name goes (TUF 5.6.7).
    pub async fn find_role(
        &self,
        role: &str,
        targets: &[TargetName],
        reach: Reach,
    ) -> Result<(Delegations, Option<Head>, u64)> {
        let stored = self.stored_files().await?;
        let heads = self
            .walk_into(&stored, |_, child| {
                targets.is_empty() || targets.iter().any(|t| covers(child, t))
            })
            .await?;
        let unreached = |target: Option<&TargetName>| Error::Delegation {
            target: target.map_or_else(|| role.to_string(), |t| t.raw().to_string()),
            reason: format!(
                "no role delegates {role}{}",
                if target.is_some() {
                    " for this target"
                } else {
                    ""
                }
            ),
        };
        let by_role: HashMap<&str, &Head> = heads.iter().map(|h| (h.role.as_str(), h)).collect();
        let searched = matches!(reach, Reach::Searched);
        if let Some(outside) = targets
            .iter()
            .find(|t| searched && !reaches(&by_role, role, t))
        {
            return Err(unreached(Some(outside)));
        }
        let first = targets.first();
        for parent in &heads {
            let Some(delegations) = &parent.signed.signed.delegations else {
                continue;
            };
            let delegated = delegations.roles.iter().find(|r| r.name == role);
            if delegated.is_some_and(|r| first.is_none_or(|t| covers(r, t))) {
                let head = heads.iter().find(|h| h.role == role).cloned();
                let taken = head.as_ref().map_or_else(
                    || {
                        versions_ahead(&stored, role, 0)
                            .last()
                            .copied()
                            .unwrap_or(0)
                    },
                    |head| head.taken,
                );
                return Ok((delegations.clone(), head, taken));
            }
        }
        Err(unreached(first))
    }

    /// Adds a delegation at the end of `parent`'s (top-level `targets` or a delegated role), or
    /// replaces it where it stands; signed with `parent_keys`.
    pub async fn delegate(
        &self,
        parent: &str,
        delegation: &NewDelegation,
        parent_keys: &[SigningKey],
        expires: jiff::Timestamp,
    ) -> Result<u64> {
        check_role_name(&delegation.role)?;
        let keys = distinct_keys(&delegation.role, &delegation.keys, delegation.threshold)?;
        let keyids: Vec<Decoded<Hex>> = keys.iter().map(|(id, _)| id.clone()).collect();
        let paths = delegation
            .paths
            .iter()
            .map(|p| PathPattern::new(p).map_err(|e| Error::Usage(format!("path {p:?}: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let role = DelegatedRole {
            name: delegation.role.clone(),
            keyids: keyids.clone(),
            threshold: delegation.threshold,
            paths: PathSet::Paths(paths),
            terminating: delegation.terminating,
            targets: None,
        };
        let stored = self.stored_files().await?;
        // Delegated elsewhere but not signed yet, a role is in no snapshot: the tree is read.
        self.refuse_namesake(
            &stored,
            parent,
            &delegation.role,
            &keyids,
            delegation.threshold,
        )
        .await?;
        // Keys that cannot read the role's newest version would stop every writer's walk of
        // the tree at it, and every client's search.
        let delegated = Delegations {
            keys: keys.iter().cloned().collect(),
            roles: vec![role.clone()],
        };
        self.head(&delegation.role, &stored, |signed| {
            delegated
                .verify_role(signed, &delegation.role)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| match e {
            Error::Signature { .. } => Error::InvalidDelegation {
                role: delegation.role.clone(),
                reason: format!(
                    "its newest version stored cannot be read with these keys ({e}): delegate \
                     it to the keys that signed it and the new ones until it has signed with \
                     the new; a role whose key is lost or compromised is withdrawn \
                     (undelegate) and replaced by a role of another name"
                ),
            },
            other => other,
        })?;
        self.edit(parent, parent_keys, expires, &[], |targets| {
            let delegations = targets.delegations.get_or_insert_with(Delegations::new);
            delegations.keys.extend(keys);
            // A role delegated again (a new key, new paths) keeps its place: the order is the
            // search order (TUF 5.6.7.2), and moving it behind a later role would let that
            // role's targets win, or a terminating role hide it.
            match delegations.roles.iter_mut().find(|r| r.name == role.name) {
                Some(existing) => *existing = role,
                None => delegations.roles.push(role),
            }
            Ok(())
        })
        .await
    }

    /// Withdraws `parent`'s delegation of `role` (the keys no other of its delegations uses go
    /// with it), signed with `parent_keys`: once published, the search for a name no longer
    /// comes to the role, and nothing it signed is found through `parent`, whatever versions
    /// of it stay stored. The snapshot keeps naming the role's last version, as every later
    /// snapshot must name a role an earlier one named (TUF 5.5.5).
    pub async fn undelegate(
        &self,
        parent: &str,
        role: &str,
        parent_keys: &[SigningKey],
        expires: jiff::Timestamp,
    ) -> Result<Withdrawn> {
        let version = self
            .edit(parent, parent_keys, expires, &[], |targets| {
                let delegations = targets
                    .delegations
                    .as_mut()
                    .filter(|d| d.roles.iter().any(|r| r.name == role))
                    .ok_or_else(|| Error::InvalidDelegation {
                        role: role.to_string(),
                        reason: format!("not delegated by {parent}"),
                    })?;
                delegations.roles.retain(|r| r.name != role);
                let used: HashSet<&Decoded<Hex>> =
                    delegations.roles.iter().flat_map(|r| &r.keyids).collect();
                delegations.keys.retain(|id, _| used.contains(id));
                Ok(())
            })
            .await?;
        // Read after the withdrawal is stored, whatever the reading meets.
        let still_delegated_by = self.all_roles().await.map(|heads| {
            heads
                .into_iter()
                .filter(|head| {
                    head.role != parent
                        && head
                            .signed
                            .signed
                            .delegations
                            .as_ref()
                            .is_some_and(|d| d.roles.iter().any(|r| r.name == role))
                })
                .map(|head| head.role)
                .collect()
        });
        Ok(Withdrawn {
            version,
            still_delegated_by,
        })
    }

    /// Refuses delegating `role` from `parent` with `keyids` and `threshold` when another role
    /// delegates it with other keys or another threshold: snapshot and tags name roles by name
    /// alone, so one name held by two sets of keys leaves one delegation unable to read the
    /// role, and every writer's walk of the tree fails on it.
    async fn refuse_namesake(
        &self,
        stored: &HashSet<String>,
        parent: &str,
        role: &str,
        keyids: &[Decoded<Hex>],
        threshold: NonZeroU64,
    ) -> Result<()> {
        let wanted: BTreeSet<&Decoded<Hex>> = keyids.iter().collect();
        for head in self.walk_into(stored, |_, _| true).await? {
            let Some(delegations) = head.signed.signed.delegations.as_ref() else {
                continue;
            };
            let other = delegations.roles.iter().find(|r| {
                r.name == role
                    && head.role != parent
                    && (r.threshold != threshold
                        || r.keyids.iter().collect::<BTreeSet<_>>() != wanted)
            });
            if other.is_some() {
                return Err(Error::Delegation {
                    target: role.to_string(),
                    reason: format!(
                        "{} delegates a role of that name with other keys or another \
                         threshold: role names are unique across the delegation tree",
                        head.role
                    ),
                });
            }
        }
        Ok(())
    }

    /// Signs the descriptors the registry serves for `images` (by tag) into `role`, in one new
    /// version of the role, and attaches that version to each image as a referrer. Returns the
    /// target names and targets, in the order of `images`.
    pub async fn sign(
        &self,
        images: &[ImageRef],
        role: &str,
        keys: &[SigningKey],
        expires: jiff::Timestamp,
    ) -> Result<Vec<(String, Target)>> {
        let served: Vec<Served> = futures_util::stream::iter(images)
            .map(|image| self.served(image))
            .buffered(WRITE_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let names: Vec<TargetName> = served.iter().map(|s| s.name.clone()).collect();
        let mut subjects: Vec<(Repository, Entry)> = Vec::new();
        for s in &served {
            if !subjects
                .iter()
                .any(|(r, e)| *r == s.repository && e.digest == s.subject.digest)
            {
                subjects.push((s.repository.clone(), s.subject.clone()));
            }
        }
        self.edit_on_paths(
            role,
            &names,
            Reach::Searched,
            keys,
            expires,
            &subjects,
            |targets| {
                for s in &served {
                    targets.targets.insert(s.name.clone(), s.target.clone());
                }
                Ok(())
            },
        )
        .await?;
        Ok(served
            .into_iter()
            .map(|s| (s.name.raw().to_string(), s.target))
            .collect())
    }

    /// What the registry serves for `image`, as the target to sign.
    async fn served(&self, image: &ImageRef) -> Result<Served> {
        let name = image
            .target_name()
            .ok_or_else(|| Error::Usage(format!("{image}: a target needs a tag to name it")))?;
        let reference = image.reference();
        let served = self
            .writer
            .registry
            .manifest(&reference, WRITER_READ_LIMIT)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: reference.whole(),
            })?;
        let manifest = Manifest::parse(&name, &served.bytes)?;
        let mut descriptor = json!({
            "mediaType": served.media_type,
            "digest": served.digest,
            "size": served.bytes.len(),
        });
        if let Some(artifact_type) = manifest.artifact_type {
            descriptor["artifactType"] = json!(artifact_type);
        }
        let descriptor =
            serde_json::from_value(descriptor).map_err(|e| Error::InvalidDescriptor {
                target: name.clone(),
                reason: e.to_string(),
            })?;
        Ok(Served {
            target: target_from_descriptor(&descriptor)?,
            name: TargetName::new(name).map_err(|e| Error::Usage(e.to_string()))?,
            repository: image.repository.clone(),
            subject: served.entry(),
        })
    }

    /// Removes target `name` from `role` (revocation: clients refuse it once published).
    pub async fn remove(
        &self,
        name: &str,
        role: &str,
        keys: &[SigningKey],
        expires: jiff::Timestamp,
    ) -> Result<()> {
        let parsed = TargetName::new(name).map_err(|e| Error::Usage(e.to_string()))?;
        self.edit_on_paths(
            role,
            std::slice::from_ref(&parsed),
            // Revocable wherever the role's delegation covers the name: a target behind a
            // terminating delegation would come back were that delegation withdrawn.
            Reach::Covered,
            keys,
            expires,
            &[],
            |targets| {
                targets
                    .targets
                    .remove(&parsed)
                    .map(|_| ())
                    .ok_or_else(|| Error::TargetNotSigned {
                        name: name.to_string(),
                    })
            },
        )
        .await
        .map(|_| ())
    }

    /// Publishes the heads of every role: a new snapshot naming them, and a timestamp naming it.
    pub async fn publish(
        &self,
        snapshot_keys: &[SigningKey],
        timestamp_keys: &[SigningKey],
        expires: &Expiries,
    ) -> Result<u64> {
        let roles = self.role_files().await?;
        self.publish_roles(&roles, snapshot_keys, timestamp_keys, expires)
            .await
    }

    /// A new snapshot naming `roles`, and a timestamp naming it; returns the snapshot version.
    async fn publish_roles(
        &self,
        roles: &BTreeMap<String, RoleFile>,
        snapshot_keys: &[SigningKey],
        timestamp_keys: &[SigningKey],
        expires: &Expiries,
    ) -> Result<u64> {
        let version = self.snapshot_version + 1;
        self.writer
            .publish_files(
                &KeyHolder::Root(self.root.signed.clone()),
                (&self.root_bytes, self.root.signed.version.get()),
                roles,
                version,
                self.timestamp.signed.version.get() + 1,
                snapshot_keys,
                timestamp_keys,
                expires,
            )
            .await?;
        Ok(version)
    }

    /// The role files the next snapshot names. Only heads that may have moved are read:
    /// top-level targets, the roles with a stored version after the published one, and the
    /// roles a moved role delegates (their keys may have changed with it). Every other
    /// published role keeps the file snapshot names, so publishing after one change among many
    /// roles reads that role, not all of them.
    async fn role_files(&self) -> Result<BTreeMap<String, RoleFile>> {
        let stored = self.stored_files().await?;
        let changed = self.changed_roles(&stored);
        let mut heads = self
            .walk_into(&stored, |delegator, child| {
                self.is_newer(delegator) || changed.contains(&child.name)
            })
            .await?;
        let read = |heads: &[Head]| -> HashSet<String> {
            heads.iter().map(|head| head.role.clone()).collect()
        };
        if !changed.is_subset(&read(&heads)) {
            // A changed role under an unchanged one, or a file no delegation names: read all.
            heads = self.walk_into(&stored, |_, _| true).await?;
        }
        let read = read(&heads);
        let mut files = self.published_files(|role| !read.contains(role)).await?;
        for head in heads {
            let file = RoleFile::of(&head.role, head.signed.signed.version.get(), &head.bytes);
            files.insert(head.role, file);
        }
        Ok(files)
    }

    /// The files the published snapshot names for the roles `keep` selects, as published.
    async fn published_files(
        &self,
        keep: impl Fn(&str) -> bool,
    ) -> Result<BTreeMap<String, RoleFile>> {
        let index = self.published_index().await;
        let mut kept = Vec::new();
        for (file, meta) in &self.published {
            let role = file.strip_suffix(".json").ok_or_else(|| Error::Parse {
                role: "snapshot".into(),
                message: format!("the published snapshot names {file:?}, not a role file"),
            })?;
            if keep(role) {
                kept.push((role, meta));
            }
        }
        // Kept files are read only when the index lacks them: then many at once.
        futures_util::stream::iter(kept)
            .map(|(role, meta)| async {
                let file = self.published_file(role, meta, &index).await?;
                Ok::<_, Error>((role.to_string(), file))
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// Whether the published snapshot expires before `at` (a new timestamp's expiry, say).
    pub fn snapshot_expires_before(&self, at: jiff::Timestamp) -> bool {
        self.snapshot_expires < at
    }

    /// Re-signs the published snapshot as a new version with a new expiry, naming the same role
    /// files, and a timestamp naming it. Roles that do not change are not published again, so
    /// without this a quiet repository's snapshot would expire under a fresh timestamp; the
    /// snapshot key is online, like timestamp's (for cron). Returns the snapshot version.
    pub async fn refresh_snapshot(
        &self,
        snapshot_keys: &[SigningKey],
        timestamp_keys: &[SigningKey],
        expires: &Expiries,
    ) -> Result<u64> {
        let files = self.published_files(|_| true).await?;
        self.publish_roles(&files, snapshot_keys, timestamp_keys, expires)
            .await
    }

    /// Re-signs timestamp with a new version and expiry, naming the same snapshot (for cron).
    pub async fn refresh_timestamp(
        &self,
        timestamp_keys: &[SigningKey],
        expires: jiff::Timestamp,
    ) -> Result<u64> {
        let mut timestamp = self.timestamp.signed.clone();
        timestamp.version = timestamp.version.saturating_add(1);
        timestamp.expires = whole_seconds(expires);
        let version = timestamp.version.get();
        let signed = sign_role(
            timestamp,
            &KeyHolder::Root(self.root.signed.clone()),
            timestamp_keys,
        )
        .await?;
        self.writer.push_timestamp(version, signed.buffer()).await?;
        Ok(version)
    }

    /// Writes root version N+1 in which `role` is held by `new_keys` with `threshold`, signed by
    /// a threshold of the current root keys and, for root itself, of the new ones too (TUF 5.3.4
    /// checks both). When top-level targets rotates, its head is re-signed as a new version
    /// with the new keys and with `current_keys` (the role's keys so far; unused for the other
    /// roles), so that it verifies under root N as under root N+1: it is stored before the new
    /// root, and a rotation cut short between the two leaves every writer working under root N,
    /// and can be run again. Without a threshold of the current keys (lost), the new version
    /// verifies under root N+1 only: it is stored before the new root too, and made the head
    /// after it (writers under root N skip it; under N+1, a head behind it finds it).
    /// The editor then works with the new root: publish next, with the (new) online keys.
    /// Returns the new root metadata.
    pub async fn rotate(
        &mut self,
        role: RoleType,
        root_keys: &[SigningKey],
        current_keys: &[SigningKey],
        new_keys: &[SigningKey],
        threshold: NonZeroU64,
        expires: &Expiries,
    ) -> Result<Vec<u8>> {
        // Read what the old keys signed while the old root still vouches for it.
        let targets_head = match role {
            RoleType::Targets => Some(self.top_targets().await?),
            _ => None,
        };
        let mut root = self.root.signed.clone();
        root.version = root.version.saturating_add(1);
        root.expires = whole_seconds(expires.root);
        set_role_keys(&mut root, role, new_keys, threshold)?;
        let in_use: HashSet<_> = root.roles.values().flat_map(|r| r.keyids.clone()).collect();
        root.keys.retain(|id, _| in_use.contains(id));
        let old = KeyHolder::Root(self.root.signed.clone());
        let new = KeyHolder::Root(root.clone());
        let by_old = sign_role(root.clone(), &old, root_keys).await?;
        let signers = if role == RoleType::Root {
            new_keys
        } else {
            root_keys
        };
        let signed = sign_role(root.clone(), &new, signers)
            .await?
            .add_old_signatures(by_old.signed().signatures.clone())
            .map_err(|e| Error::Sign {
                role: "root".into(),
                message: e.to_string(),
            })?;
        // A root that would not verify is worse than none: check before pushing.
        for holder in [&self.root.signed, &root] {
            holder
                .verify_role(signed.signed())
                .map_err(|e| Error::Sign {
                    role: "root".into(),
                    message: format!("new root is not signed by a threshold of keys: {e}"),
                })?;
        }
        let mut resigned = None;
        if let Some(head) = targets_head {
            let version = head.next_version();
            let mut targets = head.signed.signed;
            targets.version = version;
            targets.expires = whole_seconds(expires.targets);
            let mut both = sign_role(targets.clone(), &new, new_keys).await?;
            // Current keys short of root N's threshold (one lost, a stale file) still let the
            // rotation go through, on the new keys alone; a threshold that fails to sign
            // fails the rotation, before anything is stored.
            if holds_threshold(&self.root.signed, RoleType::Targets, current_keys) {
                let by_current = sign_role(targets, &old, current_keys).await?;
                both = both
                    .add_old_signatures(by_current.signed().signatures.clone())
                    .map_err(|e| Error::Sign {
                        role: "targets".into(),
                        message: e.to_string(),
                    })?;
            }
            if self.root.signed.verify_role(both.signed()).is_ok() {
                self.push_targets(&both).await?;
            } else {
                // Signed by the new keys alone, its version is stored before the new root
                // and becomes the head after it: cut short between the two, the rotation
                // leaves writers under the new root a version ahead of the head that verifies
                // ([`Editor::head`]), and writers under the current one a version to skip.
                let version = both.signed().signed.version.get();
                self.writer
                    .push_version(&versioned_file("targets", version), both.buffer())
                    .await?;
                resigned = Some(both);
            }
        }
        let file = versioned_file("root", root.version.get());
        self.writer.push_version(&file, signed.buffer()).await?;
        self.root = signed.signed().clone();
        self.root_bytes = signed.buffer().clone();
        if let Some(targets) = resigned {
            self.writer.push_head("targets", targets.buffer()).await?;
        }
        Ok(self.root_bytes.clone())
    }

    /// Stores `targets` as the next version and head of top-level targets.
    async fn push_targets(&self, targets: &SignedRole<Targets>) -> Result<()> {
        self.writer
            .push_head_and_version(
                "targets",
                targets.signed().signed.version.get(),
                targets.buffer(),
            )
            .await
    }

    /// Edits `role`, which every target in `names` must lead to ([`Editor::find_role`]).
    #[allow(clippy::too_many_arguments)]
    async fn edit_on_paths(
        &self,
        role: &str,
        names: &[TargetName],
        reach: Reach,
        keys: &[SigningKey],
        expires: jiff::Timestamp,
        attach: &[(Repository, Entry)],
        change: impl FnOnce(&mut Targets) -> Result<()>,
    ) -> Result<u64> {
        if names.is_empty() {
            return Err(Error::Usage("nothing to sign".into()));
        }
        if role == "targets" {
            return self.edit("targets", keys, expires, attach, change).await;
        }
        let (delegations, head, taken) = self.find_role(role, names, reach).await?;
        self.write_delegated(
            role,
            &delegations,
            head,
            taken,
            keys,
            expires,
            attach,
            change,
        )
        .await
    }

    /// Edits `role` (top-level `targets` or delegated, found anywhere in the tree).
    async fn edit(
        &self,
        role: &str,
        keys: &[SigningKey],
        expires: jiff::Timestamp,
        attach: &[(Repository, Entry)],
        change: impl FnOnce(&mut Targets) -> Result<()>,
    ) -> Result<u64> {
        if role != "targets" {
            let (delegations, head, taken) = self.find_role(role, &[], Reach::Covered).await?;
            return self
                .write_delegated(
                    role,
                    &delegations,
                    head,
                    taken,
                    keys,
                    expires,
                    attach,
                    change,
                )
                .await;
        }
        let head = self.top_targets().await?;
        let version = head.next_version();
        let mut targets = head.signed.signed;
        change(&mut targets)?;
        targets.version = version;
        targets.expires = whole_seconds(expires);
        let version = version.get();
        let signed = sign_role(targets, &KeyHolder::Root(self.root.signed.clone()), keys).await?;
        self.writer
            .push_head_and_version("targets", version, signed.buffer())
            .await?;
        self.writer
            .attach("targets", version, signed.buffer(), attach)
            .await?;
        Ok(version)
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_delegated(
        &self,
        role: &str,
        delegations: &Delegations,
        head: Option<Head>,
        taken: u64,
        keys: &[SigningKey],
        expires: jiff::Timestamp,
        attach: &[(Repository, Entry)],
        change: impl FnOnce(&mut Targets) -> Result<()>,
    ) -> Result<u64> {
        let after_published = NonZeroU64::MIN.saturating_add(self.published_version(role));
        let (mut targets, version) = match head {
            Some(head) => {
                let version = head.next_version().max(after_published);
                (head.signed.signed, version)
            }
            // A role not written yet has no version stored: any there is junk, gone past.
            None => (
                Targets::new(SPEC_VERSION.into(), NonZeroU64::MIN, expires),
                NonZeroU64::MIN.saturating_add(taken).max(after_published),
            ),
        };
        change(&mut targets)?;
        targets.version = version;
        targets.expires = whole_seconds(expires);
        let version = version.get();
        let role_metadata = DelegatedTargets {
            name: role.to_string(),
            targets,
        };
        let signed = sign_role(
            role_metadata,
            &KeyHolder::Delegations(delegations.clone()),
            keys,
        )
        .await?;
        self.writer
            .push_head_and_version(role, version, signed.buffer())
            .await?;
        self.writer
            .attach(role, version, signed.buffer(), attach)
            .await?;
        Ok(version)
    }

    /// Reads the head of top-level targets and, in pre-order, of every delegated role that
    /// `descend(delegator's head, delegation)` selects, verifying each with its delegator's
    /// keys; `stored` are the metadata repository's tags.
    async fn walk_into(
        &self,
        stored: &HashSet<String>,
        descend: impl Fn(&Head, &DelegatedRole) -> bool,
    ) -> Result<Vec<Head>> {
        let mut out = Vec::new();
        let mut stack = vec![self.top_targets_among(stored).await?];
        let mut visited = HashSet::new();
        while let Some(head) = stack.pop() {
            if !visited.insert(head.role.clone()) {
                continue;
            }
            if let Some(delegations) = &head.signed.signed.delegations {
                let selected = delegations.roles.iter().filter(|r| descend(&head, r));
                // Children fetched concurrently, kept in delegation order.
                let children: Vec<Option<Head>> = futures_util::stream::iter(selected)
                    .map(|child| {
                        self.head(&child.name, stored, |signed| {
                            delegations.verify_role(signed, &child.name).map_err(|e| {
                                format!(
                                    "{e}; if {} just delegated {} to new keys, delegate it to \
                                     the old and the new ones until it has signed with the new",
                                    head.role, child.name
                                )
                            })
                        })
                    })
                    .buffered(WRITE_CONCURRENCY)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<Result<_>>()?;
                stack.extend(children.into_iter().flatten().rev());
            }
            out.push(head);
        }
        Ok(out)
    }

    /// Reads the head of `role`, checks it with `verify`, and refuses one older than published.
    /// A version after the head's among the `stored` files is the head: its writer stored it
    /// but never moved the head tag (interrupted, or its head write was overtaken), and it
    /// must not be lost.
    /// A head tag that does not verify is passed over for the published version and the
    /// versions stored after it: anyone who may push can put junk over a head tag (heads are
    /// rewritten, versions written once), and it must not stop every writer. Its error stands
    /// when no version verifies either. So is a version file that does not verify as that
    /// version (junk, or an older version tagged again), and the next version written goes
    /// past it ([`Head::taken`]); versions more than [`MAX_VERSIONS_AHEAD`] past the head are
    /// not looked at.
    async fn head(
        &self,
        role: &str,
        stored: &HashSet<String>,
        verify: impl Fn(&Signed<Targets>) -> std::result::Result<(), String>,
    ) -> Result<Option<Head>> {
        let file = format!("{role}.json");
        let published = self.published_version(role);
        let mut refused = None;
        let mut head = match self.writer.read_file(&file).await? {
            Some(bytes) => match self.checked_head(role, bytes, &verify) {
                Ok(head) => Some(head),
                Err(e) => {
                    refused = Some(e);
                    self.published_head(role, published, &verify).await?
                }
            },
            None => None,
        };
        let from = head.as_ref().map_or(0, |h| h.signed.signed.version.get());
        let mut taken = from;
        for version in versions_ahead(stored, role, from) {
            taken = version;
            let Some(bytes) = self
                .writer
                .read_file(&versioned_file(role, version))
                .await?
            else {
                continue;
            };
            if let Ok(newer) = self.checked_head(role, bytes, &verify)
                && newer.signed.signed.version.get() == version
            {
                head = Some(newer);
            }
        }
        let head = head.map(|head| Head { taken, ..head });
        let Some(head) = head else {
            if let Some(refused) = refused {
                return Err(refused);
            }
            if published > 0 {
                return Err(Error::NotFound {
                    what: format!(
                        "{file} (published version {published}) in {}",
                        self.writer.metadata
                    ),
                });
            }
            return Ok(None);
        };
        if head.signed.signed.version.get() < published {
            return Err(Error::Rollback {
                role: role.to_string(),
                trusted: published,
                fetched: head.signed.signed.version.get(),
            });
        }
        Ok(Some(head))
    }

    /// The published version of `role` (`published`, 0 for none), when it is stored and
    /// verifies: where [`Editor::head`] starts over from when the head tag does not verify.
    async fn published_head(
        &self,
        role: &str,
        published: u64,
        verify: impl Fn(&Signed<Targets>) -> std::result::Result<(), String>,
    ) -> Result<Option<Head>> {
        if published == 0 {
            return Ok(None);
        }
        let Some(bytes) = self
            .writer
            .read_file(&versioned_file(role, published))
            .await?
        else {
            return Ok(None);
        };
        Ok(self
            .checked_head(role, bytes, verify)
            .ok()
            .filter(|head| head.signed.signed.version.get() == published))
    }

    /// `bytes` as a head of `role`, checked with `verify`.
    fn checked_head(
        &self,
        role: &str,
        bytes: Vec<u8>,
        verify: impl Fn(&Signed<Targets>) -> std::result::Result<(), String>,
    ) -> Result<Head> {
        let signed: Signed<Targets> = parse(role, &bytes)?;
        verify(&signed).map_err(|message| Error::Signature {
            role: role.to_string(),
            message,
        })?;
        let taken = signed.signed.version.get();
        Ok(Head {
            role: role.to_string(),
            signed,
            bytes,
            taken,
        })
    }

    fn published_version(&self, role: &str) -> u64 {
        self.published
            .get(&format!("{role}.json"))
            .map_or(0, |meta| meta.version.get())
    }

    /// Whether `head` is newer than the published version of its role.
    fn is_newer(&self, head: &Head) -> bool {
        head.signed.signed.version.get() > self.published_version(&head.role)
    }

    /// Roles with a stored version after the published one (any version of a role never
    /// published), from the metadata repository's tags.
    fn changed_roles(&self, stored: &HashSet<String>) -> HashSet<String> {
        stored
            .iter()
            .filter_map(|tag| {
                let (version, role) = parse_versioned_file(tag)?;
                check_role_name(role).ok()?;
                (version > self.published_version(role)).then(|| role.to_string())
            })
            .collect()
    }

    /// The descriptors in the published `tuf-metadata` index, by file name. It is a listing,
    /// not signed: a missing or unreadable one only costs reading the files themselves.
    async fn published_index(&self) -> HashMap<String, Entry> {
        let tag = self.writer.metadata.tagged(METADATA_TAG);
        let read = match self.writer.registry.manifest(&tag, WRITER_READ_LIMIT).await {
            Ok(Some(fetched)) => Manifest::parse(METADATA_TAG, &fetched.bytes),
            Ok(None) => Err(Error::NotFound { what: tag.whole() }),
            Err(e) => Err(e),
        };
        let index = match read {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!(error = %e, "published index unusable; reading the kept files");
                return HashMap::new();
            }
        };
        index
            .manifests
            .into_iter()
            .filter_map(|entry| Some((entry.annotations.get(FILENAME_ANNOTATION)?.clone(), entry)))
            .collect()
    }

    /// The published file of `role` that snapshot names with `meta`, kept as it is; its
    /// descriptor comes from `index`, or from reading the file when the index lacks it.
    async fn published_file(
        &self,
        role: &str,
        meta: &Metafile,
        index: &HashMap<String, Entry>,
    ) -> Result<RoleFile> {
        let file = versioned_file(role, meta.version.get());
        let listed = index.get(&file).filter(|entry| {
            entry.media_type == MANIFEST_MEDIA_TYPE
                && entry.artifact_type.as_deref() == Some(METADATA_ARTIFACT_TYPE)
        });
        let entry = match listed {
            // As this crate writes entries (the file's name, its embedded bytes, which readers
            // check): the unsigned index may carry anything else.
            Some(entry) => Entry {
                annotations: entry
                    .annotations
                    .iter()
                    .filter(|(key, _)| *key == FILENAME_ANNOTATION)
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
                extra: BTreeMap::new(),
                ..entry.clone()
            },
            None => {
                let bytes = self
                    .writer
                    .read_file(&file)
                    .await?
                    .ok_or_else(|| Error::NotFound {
                        what: format!(
                            "{file}, named by the published snapshot, in {}",
                            self.writer.metadata
                        ),
                    })?;
                if !is_named_by(&bytes, meta) {
                    return Err(Error::MetaHashMismatch {
                        role: role.to_string(),
                        named_by: "snapshot".into(),
                    });
                }
                index_entry(&file, &bytes)
            }
        };
        Ok(RoleFile {
            meta: meta.clone(),
            entry,
        })
    }
}

/// Points `repository`'s `tuf-metadata` tag at the metadata repository `to` (relative like
/// `../tuf`, absolute like `/org/tuf`, or a full `host/path`). Checked to resolve first.
pub async fn set_pointer(
    registry: &Registry,
    repository: &Repository,
    to: &str,
) -> Result<Repository> {
    let target = repository.resolve(to)?;
    let mut annotations = BTreeMap::new();
    annotations.insert(POINTER_ANNOTATION.to_string(), to.to_string());
    registry
        .push_manifest(
            &repository.tagged(METADATA_TAG),
            &index(&[], &annotations),
            INDEX_MEDIA_TYPE,
        )
        .await?;
    Ok(target)
}

/// TUF dates are `YYYY-MM-DDTHH:MM:SSZ` (TUF 4.2); fractional seconds would make other clients
/// (python-tuf among them) refuse the metadata.
fn whole_seconds(at: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(at.as_second()).unwrap_or(at)
}

fn nonzero(version: u64) -> NonZeroU64 {
    NonZeroU64::new(version).unwrap_or(NonZeroU64::MIN)
}

/// Whether `keys` include a threshold of `role`'s keys in `root`.
fn holds_threshold(root: &Root, role: RoleType, keys: &[SigningKey]) -> bool {
    let Some(held) = root.roles.get(&role) else {
        return false;
    };
    let ids: HashSet<_> = keys
        .iter()
        .filter_map(|key| key.public().key_id().ok())
        .filter(|id| held.keyids.contains(id))
        .collect();
    ids.len() as u64 >= held.threshold.get()
}

fn set_role_keys(
    root: &mut Root,
    role: RoleType,
    keys: &[SigningKey],
    threshold: NonZeroU64,
) -> Result<()> {
    let public: Vec<Key> = keys.iter().map(|key| key.public().clone()).collect();
    let keys = distinct_keys(&role.to_string(), &public, threshold)?;
    let keyids = keys.iter().map(|(id, _)| id.clone()).collect();
    root.keys.extend(keys);
    root.roles.insert(
        role,
        RoleKeys {
            keyids,
            threshold,
            _extra: HashMap::new(),
        },
    );
    Ok(())
}

/// `role`'s `keys` by key id, each once, in their order, when there are at least `threshold`
/// of them: TUF counts a key once however often it is listed (5.4.2), so a role with fewer
/// distinct keys than its threshold could never be signed.
fn distinct_keys(
    role: &str,
    keys: &[Key],
    threshold: NonZeroU64,
) -> Result<Vec<(Decoded<Hex>, Key)>> {
    let mut distinct: Vec<(Decoded<Hex>, Key)> = Vec::new();
    for key in keys {
        let id = key
            .key_id()
            .map_err(|e| Error::Usage(format!("{role}: a key has no key id: {e}")))?;
        if !distinct.iter().any(|(known, _)| *known == id) {
            distinct.push((id, key.clone()));
        }
    }
    if (distinct.len() as u64) < threshold.get() {
        return Err(Error::Usage(format!(
            "{role}: threshold {threshold} needs at least that many distinct keys, got {}",
            distinct.len()
        )));
    }
    Ok(distinct)
}

/// Signs `role` with those of `keys` that `holder` lists for it; fails below threshold.
async fn sign_role<T: Role + serde::Serialize>(
    role: T,
    holder: &KeyHolder,
    keys: &[SigningKey],
) -> Result<SignedRole<T>> {
    let name = match role.role_id() {
        tough::schema::RoleId::StandardRole(t) => t.to_string(),
        tough::schema::RoleId::DelegatedRole(name) => name,
    };
    let sources: Vec<_> = keys.iter().map(SigningKey::source).collect();
    SignedRole::new(role, holder, &sources, &SystemRandom::new())
        .await
        .map_err(|e| Error::Sign {
            role: name,
            message: e.to_string(),
        })
}

/// Whether the search for `name` among the heads `by_role` comes to `role`, as a client's
/// does (TUF 5.6.7): pre-order from top-level targets, through delegations whose paths cover
/// `name`, nothing after a terminating one taken.
fn reaches(by_role: &HashMap<&str, &Head>, role: &str, name: &TargetName) -> bool {
    let mut stack = vec!["targets"];
    let mut visited = HashSet::new();
    while let Some(current) = stack.pop() {
        if current == role {
            return true;
        }
        if !visited.insert(current) {
            continue;
        }
        let delegations = by_role
            .get(current)
            .and_then(|head| head.signed.signed.delegations.as_ref());
        let mut children = Vec::new();
        for child in delegations
            .iter()
            .flat_map(|d| &d.roles)
            .filter(|child| covers(child, name))
        {
            children.push(child.name.as_str());
            if child.terminating {
                stack.clear();
                break;
            }
        }
        stack.extend(children.into_iter().rev());
    }
    false
}

/// Whether `role`'s paths cover `name` (TUF 5.6.7.2), with tough's own matcher.
fn covers(role: &DelegatedRole, name: &TargetName) -> bool {
    Delegations {
        keys: HashMap::new(),
        roles: vec![role.clone()],
    }
    .target_is_delegated(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head for `role` delegating `children` (name, terminating), each for `team-a/*`.
    fn head(role: &str, children: &[(&str, bool)]) -> Head {
        let roles: Vec<_> = children
            .iter()
            .map(|(name, terminating)| {
                json!({"name": name, "keyids": [], "threshold": 1, "paths": ["team-a/*"],
                       "terminating": terminating})
            })
            .collect();
        let signed = json!({"signed": {"_type": "targets", "spec_version": "1.0.0",
            "version": 1, "expires": "2030-01-01T00:00:00Z", "targets": {},
            "delegations": {"keys": {}, "roles": roles}}, "signatures": []});
        Head {
            role: role.to_string(),
            signed: serde_json::from_value(signed).unwrap(),
            bytes: Vec::new(),
            taken: 1,
        }
    }

    /// A terminating delegation ends the search where a client's ends it: its later siblings
    /// and everything still pending above it are never reached, its own delegations are.
    #[test]
    fn the_search_a_signer_checks_stops_at_a_terminating_delegation() {
        let name = TargetName::new("team-a/app:v1").unwrap();
        for (deep_terminating, reached, hidden) in [
            (true, &["c1", "d1", "e1"][..], &["d2", "c2"][..]),
            (false, &["c1", "d1", "e1", "d2", "c2"][..], &[][..]),
        ] {
            let heads = [
                head("targets", &[("c1", false), ("c2", false)]),
                head("c1", &[("d1", deep_terminating), ("d2", false)]),
                head("d1", &[("e1", false)]),
            ];
            let by_role: HashMap<&str, &Head> =
                heads.iter().map(|h| (h.role.as_str(), h)).collect();
            for role in reached {
                assert!(reaches(&by_role, role, &name), "{role} not reached");
            }
            for role in hidden {
                assert!(!reaches(&by_role, role, &name), "{role} reached");
            }
            let outside = TargetName::new("team-b/app:v1").unwrap();
            assert!(!reaches(&by_role, "c1", &outside));
        }
    }
}
