//! Publishing reads the roles that moved: top-level targets, roles with a version after the
//! published one, and the roles a moved role delegates. Every other role keeps the file the
//! published snapshot names, so one signer's change among many roles costs reading that role.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use tuf_oci::Error;
use tuf_oci::claim::{Claim, Withdrawal};
use tuf_oci::keys::SigningKey;
use tuf_oci_tests::hostile::{HostileRegistry, Rule};
use tuf_oci_tests::{Org, TestRegistry, craft, delegation, expiries};

/// An organisation delegating `team-<i>/*` to role `team-<i>` for each of `teams`, each
/// having signed `team-<i>/app:v1`, published; with the roles' keys.
async fn teams(registry: &TestRegistry, teams: usize) -> (Org, Vec<SigningKey>) {
    let org = Org::init(registry, "org/tuf").await;
    let targets = org.targets_key().await;
    let mut keys = Vec::new();
    for i in 0..teams {
        let role = format!("team-{i}");
        let key = org.key(&role).await;
        let paths = format!("team-{i}/*");
        org.delegate(
            registry,
            "targets",
            &targets,
            &delegation(&role, &[&paths], &[&key], 1),
        )
        .await;
        let image = format!("team-{i}/app");
        registry.push_image(&image, "v1", &image).await;
        org.sign(
            registry,
            &registry.image(&format!("{image}:v1")),
            &role,
            std::slice::from_ref(&key),
        )
        .await;
        keys.push(key);
    }
    org.publish(registry).await;
    (org, keys)
}

/// Verifies `reference` with a new client told where the metadata lives.
async fn verify(org: &Org, registry: &TestRegistry, reference: &str) -> tuf_oci::Result<String> {
    let cache = tempfile::tempdir().unwrap();
    let verifier = tuf_oci::Verifier::new(
        registry.client.clone(),
        org.trust(Some(org.metadata.clone()), Some(cache.path())),
    )
    .unwrap();
    let verified = verifier.verify(&registry.image(reference)).await?;
    Ok(verified.role().to_string())
}

async fn publish(org: &Org, registry: &TestRegistry) -> tuf_oci::Result<u64> {
    let snapshot = [org.key("snapshot").await];
    let timestamp = [org.key("timestamp").await];
    org.editor(registry)
        .await
        .publish(&snapshot, &timestamp, &expiries())
        .await
}

#[tokio::test]
async fn unchanged_roles_are_kept_without_reading_their_heads() {
    let registry = TestRegistry::start();
    let (org, keys) = teams(&registry, 4).await;
    registry.push_image("team-1/app", "v2", "team-1 v2").await;
    org.sign(
        &registry,
        &registry.image("team-1/app:v2"),
        "team-1",
        std::slice::from_ref(&keys[1]),
    )
    .await;
    // Every other role's head is now garbage: a publish that read them would fail.
    for i in [0, 2, 3] {
        registry
            .put_file(&org.metadata, &format!("team-{i}.json"), b"not metadata")
            .await;
    }
    publish(&org, &registry).await.unwrap();

    assert_eq!(
        verify(&org, &registry, "team-1/app:v2").await.unwrap(),
        "team-1"
    );
    for i in [0, 2, 3] {
        let reference = format!("team-{i}/app:v1");
        assert_eq!(
            verify(&org, &registry, &reference).await.unwrap(),
            format!("team-{i}")
        );
    }
}

#[tokio::test]
async fn roles_under_a_changed_delegation_are_checked_again() {
    let registry = TestRegistry::start();
    let (org, _) = teams(&registry, 3).await;
    // Another tool gives team-2 a new key in top-level targets (`delegate` refuses keys that
    // cannot read the role's newest version); team-2 has not re-signed with it yet.
    let new_key = org.key("team-2-new").await;
    let new_id = new_key.public().key_id().unwrap();
    let mut targets: tough::schema::Signed<tough::schema::Targets> =
        craft::parse(&registry.get_file(&org.metadata, "targets.json").await);
    let delegations = targets.signed.delegations.as_mut().unwrap();
    delegations
        .keys
        .insert(new_id.clone(), new_key.public().clone());
    let team_2 = delegations
        .roles
        .iter_mut()
        .find(|r| r.name == "team-2")
        .unwrap();
    team_2.keyids = vec![new_id];
    let version = targets.signed.version.get() + 1;
    targets.signed.version = std::num::NonZeroU64::new(version).unwrap();
    let root: tough::schema::Signed<tough::schema::Root> = craft::parse(&org.root);
    let signed = craft::sign_top(targets.signed, &root.signed, &org.targets_key().await).await;
    for name in [
        "targets.json".to_string(),
        format!("{version}.targets.json"),
    ] {
        registry
            .put_file(&org.metadata, &name, &craft::bytes(&signed))
            .await;
    }
    let err = publish(&org, &registry).await.unwrap_err();
    assert!(
        matches!(err, Error::Signature { ref role, .. } if role == "team-2"),
        "{err}"
    );
}

#[tokio::test]
async fn a_change_under_an_unchanged_role_is_found() {
    let registry = TestRegistry::start();
    let (org, keys) = teams(&registry, 2).await;
    // team-0 delegates team-0/sub/* to `sub`, published; then `sub` alone signs.
    let sub = org.key("sub").await;
    org.editor(&registry)
        .await
        .delegate(
            "team-0",
            &delegation("sub", &["team-0/sub/*"], &[&sub], 1),
            std::slice::from_ref(&keys[0]),
            expiries().targets,
        )
        .await
        .unwrap();
    publish(&org, &registry).await.unwrap();
    registry.push_image("team-0/sub/app", "v1", "sub").await;
    org.sign(
        &registry,
        &registry.image("team-0/sub/app:v1"),
        "sub",
        std::slice::from_ref(&sub),
    )
    .await;
    publish(&org, &registry).await.unwrap();

    assert_eq!(
        verify(&org, &registry, "team-0/sub/app:v1").await.unwrap(),
        "sub"
    );
    assert_eq!(
        verify(&org, &registry, "team-1/app:v1").await.unwrap(),
        "team-1"
    );
}

#[tokio::test]
async fn a_lost_index_is_rebuilt_from_the_files() {
    use std::collections::BTreeMap;
    use tuf_oci::layout::{INDEX_MEDIA_TYPE, METADATA_TAG, Manifest, index, index_entry};

    let registry = TestRegistry::start();
    let (org, _) = teams(&registry, 3).await;
    let tag = org.metadata.tagged(METADATA_TAG);
    // The `tuf-metadata` index is unsigned: someone replaces it with an empty one.
    registry
        .client
        .push_manifest(&tag, &index(&[], &BTreeMap::new()), INDEX_MEDIA_TYPE)
        .await
        .unwrap();
    publish(&org, &registry).await.unwrap();

    let fetched = registry
        .client
        .manifest(&tag, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let listed = Manifest::parse(METADATA_TAG, &fetched.bytes)
        .unwrap()
        .manifests;
    for i in 0..3 {
        let file = format!("1.team-{i}.json");
        let expected = index_entry(&file, &registry.get_file(&org.metadata, &file).await);
        assert!(listed.contains(&expected), "{file} missing from {listed:?}");
    }
}

#[tokio::test]
async fn a_delegated_role_rotates_its_key_without_stopping_anyone() {
    // The guide's rotation: delegate the role to its old and new keys, let it sign with the new
    // one, then delegate the new key alone. Publishing works at every step.
    let registry = TestRegistry::start();
    let (org, keys) = teams(&registry, 3).await;
    let new_key = org.key("team-2-new").await;
    org.delegate_from_targets(
        &registry,
        &delegation("team-2", &["team-2/*"], &[&keys[2], &new_key], 1),
    )
    .await;
    publish(&org, &registry).await.unwrap();
    registry.push_image("team-2/app", "v2", "two").await;
    org.sign(
        &registry,
        &registry.image("team-2/app:v2"),
        "team-2",
        std::slice::from_ref(&new_key),
    )
    .await;
    org.delegate_from_targets(
        &registry,
        &delegation("team-2", &["team-2/*"], &[&new_key], 1),
    )
    .await;
    publish(&org, &registry).await.unwrap();
    for reference in ["team-2/app:v1", "team-2/app:v2", "team-0/app:v1"] {
        let role = verify(&org, &registry, reference).await.unwrap();
        assert_eq!(role, reference.split('/').next().unwrap(), "{reference}");
    }
}

#[tokio::test]
async fn a_stale_editor_does_not_overwrite_a_newer_timestamp() {
    // A timestamp cron that read the state just before a publish must not then store a
    // timestamp naming the older snapshot over the publish's.
    let registry = TestRegistry::start();
    let (org, _) = teams(&registry, 1).await;
    let stale = org.editor(&registry).await;
    registry.push_image("team-0/app", "v2", "two").await;
    org.sign(
        &registry,
        &registry.image("team-0/app:v2"),
        "team-0",
        &[org.key("team-0").await],
    )
    .await;
    org.publish(&registry).await;
    let timestamp_keys = [org.key("timestamp").await];
    let err = stale
        .refresh_timestamp(&timestamp_keys, expiries().timestamp)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    let err = stale
        .publish(&[org.key("snapshot").await], &timestamp_keys, &expiries())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(
        verify(&org, &registry, "team-0/app:v2").await.unwrap(),
        "team-0"
    );
}

#[tokio::test]
async fn a_timestamp_version_another_writer_is_storing_is_left_to_it() {
    // Two publishes (or a publish and a timestamp refresh) within milliseconds both find the
    // stored timestamp the one before theirs. Each claims its timestamp version, as writers of
    // version files do, so at most one stores it: clients never see two timestamps of one
    // version naming different snapshots.
    let registry = TestRegistry::start();
    let (org, _) = teams(&registry, 1).await;
    let timestamp_version = || async {
        let bytes = registry.get_file(&org.metadata, "timestamp.json").await;
        let timestamp: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        timestamp["signed"]["version"].as_u64().expect("a version")
    };
    let version = timestamp_version().await;
    let next = format!("{}.timestamp.json", version + 1);
    let rival = Claim::new(&next).unwrap();
    registry.stake(&org.metadata, &rival, &next).await;
    let timestamp_keys = [org.key("timestamp").await];
    let editor = org.editor(&registry).await;
    let err = editor
        .refresh_timestamp(&timestamp_keys, expiries().timestamp)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(err.to_string().contains(&rival.tag), "{err}");
    assert_eq!(timestamp_version().await, version);
    // Nor did the writer that stepped back leave its signed timestamp anywhere in the
    // registry, as a blob or embedded in its claim: fresh, it would serve its state as long
    // as it lived.
    let signed_next = |bytes: &[u8]| {
        let version_of = |bytes: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(bytes).ok()?["signed"]["version"].as_u64()
        };
        let embedded = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|manifest| {
                use base64::Engine as _;
                let data = manifest["layers"][0]["data"].as_str()?.to_string();
                base64::engine::general_purpose::STANDARD.decode(data).ok()
            });
        version_of(bytes) == Some(version + 1)
            || embedded.is_some_and(|file| version_of(&file) == Some(version + 1))
    };
    assert!(!registry.stored_blobs().iter().any(|blob| signed_next(blob)));

    // The rival stepped back: the version is free again.
    rival
        .withdraw(&registry.client, &org.metadata, Withdrawal::NothingWritten)
        .await
        .unwrap();
    editor
        .refresh_timestamp(&timestamp_keys, expiries().timestamp)
        .await
        .unwrap();
    assert_eq!(timestamp_version().await, version + 1);
    assert!(registry.stored_blobs().iter().any(|blob| signed_next(blob)));
}

#[tokio::test]
async fn a_publish_whose_timestamp_write_failed_runs_again_at_once() {
    // A publish claims its timestamp version before writing it. When the write fails (the
    // registry answers 500 every time), the claim is withdrawn: run again at once, the publish would
    // otherwise meet its own claim as another writer's until it went stale (5 minutes).
    let registry = TestRegistry::start();
    let (org, _) = teams(&registry, 1).await;
    let fail = Rule::Fail {
        path_suffix: "/manifests/timestamp.json".into(),
        method: "PUT",
        // The first try and the client's two tries again after a server error.
        times: Arc::new(AtomicUsize::new(3)),
    };
    let proxy = HostileRegistry::start(&registry.host, vec![fail]).await;
    let (snapshot_keys, timestamp_keys) =
        ([org.key("snapshot").await], [org.key("timestamp").await]);
    let err = org
        .editor_through(&proxy.host)
        .await
        .publish(&snapshot_keys, &timestamp_keys, &expiries())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    org.editor_through(&proxy.host)
        .await
        .publish(&snapshot_keys, &timestamp_keys, &expiries())
        .await
        .unwrap();
    assert_eq!(
        verify(&org, &registry, "team-0/app:v1").await.unwrap(),
        "team-0"
    );
}

/// Junk pushed over a head tag (anyone who may push to the metadata repository can) stops no
/// writer: the editor goes on from the published version and the versions stored after it,
/// and the next write replaces the junk.
#[tokio::test]
async fn junk_over_a_head_tag_stops_no_writer() {
    let registry = TestRegistry::start();
    let (org, _) = tuf_oci_tests::solo(&registry, true).await;
    // A version signed and not yet published, then junk over its head.
    let second = registry.push_image("solo/app", "v2", "two").await;
    org.sign_in_targets(&registry, "solo/app:v2").await;
    registry
        .put_file(&org.metadata, "targets.json", b"junk")
        .await;
    org.publish(&registry).await;
    let verified = org.verify_fresh(&registry, "solo/app:v2").await.unwrap();
    assert_eq!(verified.digest(), second.digest);

    // Metadata signed by no one over the head, then a signer's new version.
    let unsigned = br#"{"signed": {"_type": "targets", "spec_version": "1.0.0", "version": 99,
        "expires": "2030-01-01T00:00:00Z", "targets": {}}, "signatures": []}"#;
    registry
        .put_file(&org.metadata, "targets.json", unsigned)
        .await;
    let third = registry.push_image("solo/app", "v3", "three").await;
    org.sign_in_targets(&registry, "solo/app:v3").await;
    org.publish(&registry).await;
    for (tag, image) in [("v2", &second), ("v3", &third)] {
        let verified = org
            .verify_fresh(&registry, &format!("solo/app:{tag}"))
            .await
            .unwrap();
        assert_eq!(verified.digest(), image.digest);
    }
}

/// The same for a role signed and never published: junk over its head stops no writer.
#[tokio::test]
async fn junk_over_an_unpublished_roles_head_stops_no_writer() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let key = org.key("team-a").await;
    org.delegate(
        &registry,
        "targets",
        &org.targets_key().await,
        &delegation("team-a", &["team-a/*"], &[&key], 1),
    )
    .await;
    registry.push_image("team-a/app", "v1", "app").await;
    org.sign(
        &registry,
        &registry.image("team-a/app:v1"),
        "team-a",
        std::slice::from_ref(&key),
    )
    .await;
    registry
        .put_file(&org.metadata, "team-a.json", b"junk")
        .await;
    org.publish(&registry).await;
    assert_eq!(
        verify(&org, &registry, "team-a/app:v1").await.unwrap(),
        "team-a"
    );
}
