//! Hand-made metadata for attack tests: what someone holding some keys, or registry write
//! access, could produce. Signed with tough's own signer, so only the content is malicious.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU64;

use aws_lc_rs::rand::SystemRandom;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tough::editor::signed::SignedRole;
use tough::schema::decoded::Decoded;
use tough::schema::{
    DelegatedTargets, Delegations, Hashes, KeyHolder, Metafile, Role, RoleType, Root, Signed,
    Snapshot, Timestamp,
};
use tuf_oci::keys::SigningKey;
use tuf_oci::layout::{INDEX_MEDIA_TYPE, METADATA_TAG, index, index_entry};

use crate::{Org, TestRegistry, expiries};

/// Parses signed metadata.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Signed<T> {
    serde_json::from_slice(bytes).expect("metadata parses")
}

/// Serializes signed metadata the way the project stores it.
pub fn bytes<T: Serialize>(signed: &Signed<T>) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(signed).unwrap();
    out.push(b'\n');
    out
}

/// Signs a top-level role with those `keys` that `root` lists for it.
pub async fn sign_top<T: Role + Serialize + Clone>(
    role: T,
    root: &Root,
    keys: &[SigningKey],
) -> Signed<T> {
    sign(role, &KeyHolder::Root(root.clone()), keys).await
}

/// Pushes as `timestamp.json` the current timestamp changed by `edit` and signed with `keys`
/// under `root`: what a holder of the timestamp key (an attacker, or the administrator after
/// a rotation) can publish.
pub async fn forge_timestamp(
    registry: &TestRegistry,
    org: &Org,
    root: &Root,
    keys: &[SigningKey],
    edit: impl FnOnce(&mut Timestamp),
) {
    let current: Signed<Timestamp> =
        parse(&registry.get_file(&org.metadata, "timestamp.json").await);
    let mut forged = current.signed;
    edit(&mut forged);
    let forged = sign_top(forged, root, keys).await;
    registry
        .put_file(&org.metadata, "timestamp.json", &bytes(&forged))
        .await;
}

/// Signs delegated role `name` with those `keys` that `delegations` lists for it.
pub async fn sign_delegated(
    name: &str,
    targets: tough::schema::Targets,
    delegations: &Delegations,
    keys: &[SigningKey],
) -> Signed<tough::schema::Targets> {
    let role = DelegatedTargets {
        name: name.into(),
        targets,
    };
    let signed = sign(role, &KeyHolder::Delegations(delegations.clone()), keys).await;
    Signed {
        signed: signed.signed.targets,
        signatures: signed.signatures,
    }
}

async fn sign<T: Role + Serialize + Clone>(
    role: T,
    holder: &KeyHolder,
    keys: &[SigningKey],
) -> Signed<T> {
    let sources: Vec<_> = keys.iter().map(SigningKey::source).collect();
    SignedRole::new(role, holder, &sources, &SystemRandom::new())
        .await
        .expect("sign")
        .signed()
        .clone()
}

/// Snapshot/timestamp meta for `bytes` at `version`.
pub fn metafile(version: u64, bytes: &[u8]) -> Metafile {
    use sha2::Digest as _;
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: Decoded::from(sha2::Sha256::digest(bytes).to_vec()),
            _extra: HashMap::new(),
        }),
        version: version.try_into().unwrap(),
        _extra: HashMap::new(),
    }
}

/// The published state: the current timestamp and the snapshot it names, with its bytes.
pub struct Published {
    /// `timestamp.json`.
    pub timestamp: Signed<Timestamp>,
    /// The snapshot the timestamp names.
    pub snapshot: Signed<Snapshot>,
    /// The snapshot's bytes as stored.
    pub snapshot_bytes: Vec<u8>,
}

/// Reads the org's published state from `registry`.
pub async fn published(registry: &TestRegistry, org: &Org) -> Published {
    let timestamp: Signed<Timestamp> =
        parse(&registry.get_file(&org.metadata, "timestamp.json").await);
    let version = timestamp.signed.meta["snapshot.json"].version;
    let snapshot_bytes = registry
        .get_file(&org.metadata, &format!("{version}.snapshot.json"))
        .await;
    Published {
        timestamp,
        snapshot: parse(&snapshot_bytes),
        snapshot_bytes,
    }
}

/// Publishes `roles` (name, signed bytes) with the org's snapshot and timestamp keys, without
/// any of the editor's checks: a new snapshot on top of the current one and a timestamp for it.
pub async fn publish_raw(registry: &TestRegistry, org: &Org, roles: &[(&str, Vec<u8>)]) {
    let repo = &org.metadata;
    let root: Signed<Root> = parse(&org.root);
    let Published {
        timestamp,
        mut snapshot,
        ..
    } = published(registry, org).await;
    for (role, bytes) in roles {
        let version =
            serde_json::from_slice::<serde_json::Value>(bytes).unwrap()["signed"]["version"]
                .as_u64()
                .unwrap();
        registry
            .put_file(repo, &format!("{version}.{role}.json"), bytes)
            .await;
        snapshot
            .signed
            .meta
            .insert(format!("{role}.json"), metafile(version, bytes));
    }
    let mut new_snapshot = snapshot.signed;
    new_snapshot.version = new_snapshot.version.saturating_add(1);
    let snapshot_keys = [org.key("snapshot").await];
    let signed = bytes(&sign_top(new_snapshot.clone(), &root.signed, &snapshot_keys).await);
    registry
        .put_file(
            repo,
            &format!("{}.snapshot.json", new_snapshot.version),
            &signed,
        )
        .await;
    // The snapshot head, as `publish` leaves it.
    registry.put_file(repo, "snapshot.json", &signed).await;
    let mut new_timestamp = timestamp.signed;
    new_timestamp.version = new_timestamp.version.saturating_add(1);
    new_timestamp.meta.insert(
        "snapshot.json".into(),
        metafile(new_snapshot.version.get(), &signed),
    );
    let timestamp_keys = [org.key("timestamp").await];
    let timestamp = bytes(&sign_top(new_timestamp, &root.signed, &timestamp_keys).await);
    registry.put_file(repo, "timestamp.json", &timestamp).await;
    // The `tuf-metadata` index of the published files, as `publish` leaves it.
    let mut entries = vec![
        index_entry(&format!("{}.snapshot.json", new_snapshot.version), &signed),
        index_entry("timestamp.json", &timestamp),
        index_entry(&format!("{}.root.json", root.signed.version), &org.root),
    ];
    let given: HashMap<String, &Vec<u8>> = roles
        .iter()
        .map(|(role, bytes)| (format!("{role}.json"), bytes))
        .collect();
    for (file, meta) in &new_snapshot.meta {
        let versioned = format!("{}.{file}", meta.version);
        let bytes = match given.get(file) {
            Some(bytes) => bytes.to_vec(),
            None => registry.get_file(repo, &versioned).await,
        };
        entries.push(index_entry(&versioned, &bytes));
    }
    registry
        .client
        .push_manifest(
            &repo.tagged(METADATA_TAG),
            &index(&entries, &BTreeMap::new()),
            INDEX_MEDIA_TYPE,
        )
        .await
        .unwrap();
}

/// Has the administrator move online role `role` to a new key (`<role>-new`) with the root
/// key; the new key and the new root.
pub async fn rotate_to_new_key(
    registry: &TestRegistry,
    org: &Org,
    role: RoleType,
) -> (SigningKey, Signed<Root>) {
    let fresh = org.key(&format!("{role}-new")).await;
    let current = match role {
        RoleType::Targets => org.targets_key().await,
        _ => Vec::new(),
    };
    let new_root = org
        .editor(registry)
        .await
        .rotate(
            role,
            &[org.key("root").await],
            &current,
            std::slice::from_ref(&fresh),
            NonZeroU64::MIN,
            &expiries(),
        )
        .await
        .unwrap();
    (fresh, parse(&new_root))
}

/// Pushes `snapshot` signed with `snapshot_keys`, and a timestamp at `timestamp_version` naming
/// it signed with the org's timestamp key: what a holder of the snapshot key can publish.
pub async fn publish_snapshot(
    registry: &TestRegistry,
    org: &Org,
    root: &Root,
    snapshot_keys: &[SigningKey],
    snapshot: Snapshot,
    timestamp_version: u64,
) {
    let version = snapshot.version.get();
    let signed = bytes(&sign_top(snapshot, root, snapshot_keys).await);
    registry
        .put_file(&org.metadata, &format!("{version}.snapshot.json"), &signed)
        .await;
    forge_timestamp(
        registry,
        org,
        root,
        &[org.key("timestamp").await],
        |timestamp| {
            timestamp.version = NonZeroU64::new(timestamp_version).unwrap();
            timestamp
                .meta
                .insert("snapshot.json".into(), metafile(version, &signed));
        },
    )
    .await;
}

/// Publishes the current snapshot again, one version up, signed by `key` under `root`: the
/// administrator's step after rotating the snapshot key.
pub async fn resign_snapshot(registry: &TestRegistry, org: &Org, root: &Root, key: &SigningKey) {
    let Published {
        timestamp,
        mut snapshot,
        ..
    } = published(registry, org).await;
    snapshot.signed.version = snapshot.signed.version.saturating_add(1);
    publish_snapshot(
        registry,
        org,
        root,
        std::slice::from_ref(key),
        snapshot.signed,
        timestamp.signed.version.get() + 1,
    )
    .await;
}
