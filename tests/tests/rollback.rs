//! Rollback and mix-and-match: older or mismatched metadata pushed back into the registry is
//! refused, also by a new client process reading the same trusted-metadata cache.

use tough::schema::{RoleType, Root, Signed};
use tuf_oci::Error;
use tuf_oci_tests::craft::{self, parse};
use tuf_oci_tests::{Org, TestRegistry};

async fn signed_repo(registry: &TestRegistry) -> Org {
    tuf_oci_tests::solo(registry, true).await.0
}

/// A signed repository, a cache directory, and in it the directory of the org's trusted root.
async fn with_trust_dir() -> (TestRegistry, Org, tempfile::TempDir, std::path::PathBuf) {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    let dir = tuf_oci::verify::trust_dir(cache.path(), &org.root).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    (registry, org, cache, dir)
}

/// Publishes anew, has a client keeping its trusted metadata in the directory returned verify
/// the new state, then pushes the timestamp of before back to the registry.
async fn trusted_then_timestamp_pushed_back(
    registry: &TestRegistry,
    org: &Org,
) -> tempfile::TempDir {
    let old_timestamp = registry.get_file(&org.metadata, "timestamp.json").await;
    org.publish(registry).await;
    let cache = tempfile::tempdir().unwrap();
    org.verifier(registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();
    registry
        .put_file(&org.metadata, "timestamp.json", &old_timestamp)
        .await;
    cache
}

#[tokio::test]
async fn older_timestamp_pushed_back_is_refused_across_restarts() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let cache = trusted_then_timestamp_pushed_back(&registry, &org).await;
    // A fresh verifier: only the on-disk trusted metadata remembers the newer version.
    let err = org
        .verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Rollback { ref role, trusted: 3, fetched: 2 } if role == "timestamp"),
        "{err}"
    );
}

#[tokio::test]
async fn timestamp_naming_an_older_snapshot_is_refused() {
    let (registry, org, cache) = tuf_oci_tests::solo_trusted().await;

    // Someone holding the timestamp key signs a newer timestamp naming snapshot version 1.
    let root: Signed<Root> = parse(&org.root);
    let old_snapshot = registry.get_file(&org.metadata, "1.snapshot.json").await;
    let keys = [org.key("timestamp").await];
    craft::forge_timestamp(&registry, &org, &root.signed, &keys, |forged| {
        forged.version = forged.version.saturating_add(1);
        forged
            .meta
            .insert("snapshot.json".into(), craft::metafile(1, &old_snapshot));
    })
    .await;

    let err = org
        .verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Rollback { ref role, trusted: 2, fetched: 1 } if role == "snapshot"),
        "{err}"
    );
}

#[tokio::test]
async fn a_timestamp_naming_no_snapshot_is_not_kept() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let root: Signed<Root> = parse(&org.root);
    let keys = [org.key("timestamp").await];
    let good = registry.get_file(&org.metadata, "timestamp.json").await;
    // Signed with the timestamp key, but naming no snapshot (a tooling mistake).
    craft::forge_timestamp(&registry, &org, &root.signed, &keys, |broken| {
        broken.version = broken.version.saturating_add(1);
        broken.meta.clear();
    })
    .await;
    let cache = tempfile::tempdir().unwrap();
    let err = org
        .verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Parse { ref role, ref message } if role == "timestamp" && message.contains("no snapshot.json")),
        "{err}"
    );
    // The next timestamp, correct again, verifies with the same trusted metadata.
    registry
        .put_file(&org.metadata, "timestamp.json", &good)
        .await;
    craft::forge_timestamp(&registry, &org, &root.signed, &keys, |fixed| {
        fixed.version = fixed.version.saturating_add(2);
    })
    .await;
    org.verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn targets_swapped_in_from_another_state_are_never_used() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    // targets version 2 signs v1; version 3 also signs v2. Swap 2's bytes in under 3's name.
    let targets_v2 = registry.get_file(&org.metadata, "2.targets.json").await;
    registry.push_image("solo/app", "v2", "two").await;
    org.sign_in_targets(&registry, "solo/app:v2").await;
    org.publish(&registry).await;
    for tag in ["3.targets.json", "targets.json"] {
        registry.put_file(&org.metadata, tag, &targets_v2).await;
    }

    // Clients use targets only when they hash to what snapshot signs: the swapped copies under
    // the version's tag and the head are passed over for the blob of that digest (v2, signed
    // only by version 3, verifies). Other bytes served for that digest are refused by the
    // digest check (hostile_registry::blob_with_other_bytes_is_refused).
    let verified = org.verify_fresh(&registry, "solo/app:v2").await.unwrap();
    assert_eq!(verified.role(), "targets");
}

#[tokio::test]
async fn snapshot_dropping_a_role_is_refused() {
    let (registry, org, cache) = tuf_oci_tests::solo_trusted().await;
    publish_snapshot_dropping_targets(&registry, &org).await;
    let err = org
        .verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RoleRemoved { ref role, version: 3 } if role == "targets.json"),
        "{err}"
    );
}

#[tokio::test]
async fn snapshot_dropping_a_role_is_refused_after_a_root_update_cut_short() {
    // A crash left a root update half done (root 2 pending beside root 1): the first update
    // after it compares with the timestamp and snapshot stored as any other does.
    let (registry, org, cache, dir) = with_trust_dir().await;
    let root_2 = org
        .editor(&registry)
        .await
        .rotate(
            RoleType::Root,
            &[org.key("root").await],
            &[],
            &[org.key("root-new").await],
            std::num::NonZeroU64::MIN,
            &tuf_oci_tests::expiries(),
        )
        .await
        .unwrap();
    let verify = || async {
        org.verifier(&registry, cache.path())
            .verify(&registry.image("solo/app:v1"))
            .await
    };
    verify().await.unwrap();
    std::fs::write(dir.join("root.json"), &org.root).unwrap();
    std::fs::write(dir.join("root.pending"), &root_2).unwrap();
    publish_snapshot_dropping_targets(&registry, &org).await;
    let err = verify().await.unwrap_err();
    assert!(
        matches!(err, Error::RoleRemoved { ref role, version: 3 } if role == "targets.json"),
        "{err}"
    );
}

/// With the online keys, publishes snapshot version 3 listing no role (the org's snapshot is
/// at version 2), and a timestamp naming it.
async fn publish_snapshot_dropping_targets(registry: &TestRegistry, org: &Org) {
    let root: Signed<Root> = parse(&org.root);
    let mut snapshot: Signed<tough::schema::Snapshot> =
        parse(&registry.get_file(&org.metadata, "2.snapshot.json").await);
    snapshot.signed.meta.clear();
    snapshot.signed.version = 3.try_into().unwrap();
    let snapshot = craft::bytes(
        &craft::sign_top(snapshot.signed, &root.signed, &[org.key("snapshot").await]).await,
    );
    registry
        .put_file(&org.metadata, "3.snapshot.json", &snapshot)
        .await;
    let keys = [org.key("timestamp").await];
    craft::forge_timestamp(registry, org, &root.signed, &keys, |timestamp| {
        timestamp.version = timestamp.version.saturating_add(1);
        timestamp
            .meta
            .insert("snapshot.json".into(), craft::metafile(3, &snapshot));
    })
    .await;
}

/// Has a client trust the state published now, cuts the stored root short (a crash), and
/// serves `older`, an older timestamp: it must be refused as a rollback.
async fn a_damaged_root_keeps_out(
    registry: &TestRegistry,
    org: &Org,
    cache: &std::path::Path,
    dir: &std::path::Path,
    older: &[u8],
) {
    let verify = || async {
        org.verifier(registry, cache)
            .verify(&registry.image("solo/app:v1"))
            .await
    };
    verify().await.unwrap();
    let root = std::fs::read(dir.join("root.json")).unwrap();
    std::fs::write(dir.join("root.json"), &root[..root.len() / 2]).unwrap();
    registry
        .put_file(&org.metadata, "timestamp.json", older)
        .await;
    let err = verify().await.unwrap_err();
    assert!(
        matches!(err, Error::Rollback { ref role, .. } if role == "timestamp"),
        "{err}"
    );
}

#[tokio::test]
async fn a_damaged_trusted_root_loses_no_newer_timestamp() {
    // A crash can leave the stored root cut short. The verifier then starts again from the
    // root it was given, and follows the chain over a snapshot key rotation: that has it
    // forget the timestamp and snapshot held (TUF 5.3.11), but not those the new keys sign,
    // which are the newest it has seen. Forgotten, an older state would pass.
    let (registry, org, cache, dir) = with_trust_dir().await;
    let (fresh, root) = craft::rotate_to_new_key(&registry, &org, RoleType::Snapshot).await;
    craft::resign_snapshot(&registry, &org, &root.signed, &fresh).await;
    let fresh = std::slice::from_ref(&fresh);
    let publish = || async {
        org.editor(&registry)
            .await
            .publish(
                fresh,
                &[org.key("timestamp").await],
                &tuf_oci_tests::expiries(),
            )
            .await
            .unwrap();
    };
    publish().await;
    let older = registry.get_file(&org.metadata, "timestamp.json").await;
    publish().await;
    a_damaged_root_keeps_out(&registry, &org, cache.path(), &dir, &older).await;
}

#[tokio::test]
async fn a_damaged_trusted_root_loses_no_timestamp_signed_two_rotations_on() {
    // As above, over two rotations of the timestamp key: the chain's first step (its new keys
    // not the newest) must not forget a timestamp the last root's keys sign. Forgotten, the
    // older timestamp those keys signed would pass.
    let (registry, org, cache, dir) = with_trust_dir().await;
    let snapshot = [org.key("snapshot").await];
    let publish = |timestamp: Vec<_>| {
        let (org, registry, snapshot) = (&org, &registry, &snapshot);
        async move {
            org.editor(registry)
                .await
                .publish(snapshot, &timestamp, &tuf_oci_tests::expiries())
                .await
                .unwrap();
        }
    };
    for name in ["timestamp-new", "timestamp-newer"] {
        let fresh = org.key(name).await;
        let root = org
            .editor(&registry)
            .await
            .rotate(
                RoleType::Timestamp,
                &[org.key("root").await],
                &[],
                std::slice::from_ref(&fresh),
                std::num::NonZeroU64::MIN,
                &tuf_oci_tests::expiries(),
            )
            .await
            .unwrap();
        // The published timestamp signed anew with the new key, for the next editor to open.
        let root: Signed<Root> = parse(&root);
        craft::forge_timestamp(&registry, &org, &root.signed, &[fresh], |_| {}).await;
    }
    let timestamp = org.key("timestamp-newer").await;
    publish(vec![timestamp.clone()]).await;
    let older = registry.get_file(&org.metadata, "timestamp.json").await;
    publish(vec![timestamp]).await;
    a_damaged_root_keeps_out(&registry, &org, cache.path(), &dir, &older).await;
}

#[tokio::test]
async fn top_level_targets_signed_anew_at_its_version_replaces_the_copy_held() {
    // TUF 5.6: targets metadata is the file snapshot names, by its hash too. Signed anew at
    // the version a client holds (here without the target), the copy held is not that file:
    // a client holding it must read the new one, as a client holding none does.
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    let verify = || async {
        org.verifier(&registry, cache.path())
            .verify(&registry.image("solo/app:v1"))
            .await
    };
    verify().await.unwrap();
    let mut targets: Signed<tough::schema::Targets> =
        parse(&registry.get_file(&org.metadata, "targets.json").await);
    targets.signed.targets.clear();
    let root: Signed<Root> = parse(&org.root);
    let resigned = craft::sign_top(targets.signed, &root.signed, &org.targets_key().await).await;
    craft::publish_raw(&registry, &org, &[("targets", craft::bytes(&resigned))]).await;
    let err = verify().await.unwrap_err();
    assert!(
        matches!(err, Error::TargetNotSigned { ref name } if name == "solo/app:v1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_delegated_role_signed_anew_at_its_version_replaces_the_copy_held() {
    // The same for a delegated role, whether held in memory (a verifier's session) or in the
    // trusted store (a new process).
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let team_a = org.key("team-a").await;
    org.delegate_from_targets(
        &registry,
        &tuf_oci_tests::delegation("team-a", &["team-a/*"], &[&team_a], 1),
    )
    .await;
    registry.push_image("team-a/app", "v1", "signed").await;
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo("team-a/app"), "/org/tuf")
        .await
        .unwrap();
    org.sign(
        &registry,
        &registry.image("team-a/app:v1"),
        "team-a",
        std::slice::from_ref(&team_a),
    )
    .await;
    org.publish(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    let session = org.verifier(&registry, cache.path());
    session
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap();

    let published = craft::published(&registry, &org).await;
    let version = published.snapshot.signed.meta["team-a.json"].version;
    let emptied =
        tough::schema::Targets::new("1.0.0".into(), version, tuf_oci_tests::expiries().targets);
    let top: Signed<tough::schema::Targets> =
        parse(&registry.get_file(&org.metadata, "targets.json").await);
    let resigned = craft::sign_delegated(
        "team-a",
        emptied,
        &top.signed.delegations.unwrap(),
        std::slice::from_ref(&team_a),
    )
    .await;
    craft::publish_raw(&registry, &org, &[("team-a", craft::bytes(&resigned))]).await;
    let fresh = tempfile::tempdir().unwrap();
    let expected = org
        .verifier(&registry, fresh.path())
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap_err()
        .to_string();
    for (held, verifier) in [
        ("in memory", &session),
        ("stored", &org.verifier(&registry, cache.path())),
    ] {
        let err = verifier
            .verify(&registry.image("team-a/app:v1"))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), expected, "{held}");
    }
}

#[tokio::test]
async fn trusted_metadata_that_cannot_be_read_fails_closed() {
    // A stored file that is there but cannot be read (an I/O error; here a link to itself) is
    // not "nothing stored": taken so, the trusted root or an older timestamp would be stored
    // in its place, and the versions it held would no longer be compared with.
    let (registry, org, cache, dir) = with_trust_dir().await;
    for name in ["root.json", "timestamp.json", "snapshot.json"] {
        let looped = dir.join(name);
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        let err = org
            .verifier(&registry, cache.path())
            .verify(&registry.image("solo/app:v1"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Io { ref path, .. } if *path == looped),
            "{name}: {err}"
        );
        std::fs::remove_file(&looped).unwrap();
    }
}

#[tokio::test]
async fn a_store_locked_too_long_by_another_process_fails_closed() {
    // Updaters sharing a store directory (the service and the executable containerd runs per
    // pull) take its lock to compare and store. A process that keeps it does not hang
    // verification: the wait is bounded and the error names the lock.
    let (registry, org, cache, dir) = with_trust_dir().await;
    let lock = dir.join(".lock");
    let held = std::fs::File::create(&lock).unwrap();
    held.lock().unwrap();
    let err = org
        .verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Io { ref path, ref cause } if *path == lock && cause.to_string().contains("locked by another process")),
        "{err}"
    );
    held.unlock().unwrap();
    org.verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();
}

/// `solo/app:v1` verified by a client configured with `root`, its trusted metadata in `cache`.
async fn verify_configured(
    registry: &TestRegistry,
    root: Vec<u8>,
    cache: &std::path::Path,
) -> tuf_oci::Result<tuf_oci::VerifiedTarget> {
    let trust = tuf_oci::TrustConfig {
        root,
        cache_dir: Some(cache.to_path_buf()),
        ..Default::default()
    };
    tuf_oci::verify::Verifier::new(registry.client.clone(), trust)
        .unwrap()
        .verify(&registry.image("solo/app:v1"))
        .await
}

/// Asserts that a client configured with `root` on `cache` refuses the older timestamp pushed
/// back ([`trusted_then_timestamp_pushed_back`]) as a rollback.
async fn assert_older_timestamp_refused(
    registry: &TestRegistry,
    root: Vec<u8>,
    cache: &std::path::Path,
) {
    let err = verify_configured(registry, root, cache).await.unwrap_err();
    assert!(
        matches!(err, Error::Rollback { ref role, .. } if role == "timestamp"),
        "{err}"
    );
}

#[tokio::test]
async fn configuring_a_root_updates_went_past_keeps_what_they_trusted() {
    // Nodes trusting root 1 followed the chain to root 3; the operator then configures root 2
    // (the newest when the configuration was written). The trusted metadata kept under root 1
    // comes along: an older timestamp pushed back is still refused.
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    org.rotate_root_keys(&registry).await;
    org.publish(&registry).await;
    org.editor(&registry)
        .await
        .rotate(
            tough::schema::RoleType::Root,
            &[org.key("root-new").await],
            &[],
            &[org.key("root-newer").await],
            std::num::NonZeroU64::MIN,
            &tuf_oci_tests::expiries(),
        )
        .await
        .unwrap();
    org.publish(&registry).await;
    let cache = trusted_then_timestamp_pushed_back(&registry, &org).await;
    let root_2 = registry.get_file(&org.metadata, "2.root.json").await;
    assert_older_timestamp_refused(&registry, root_2, cache.path()).await;
}

#[tokio::test]
async fn configuring_the_root_updates_reached_keeps_what_they_trusted() {
    // Nodes trusting root 1 followed the chain to root 2; the operator then configures root 2
    // itself (sparing new nodes the chain). The trusted metadata kept under root 1 comes
    // along: an older timestamp pushed back is still refused.
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    org.rotate_root_keys(&registry).await;
    org.publish(&registry).await;
    let cache = trusted_then_timestamp_pushed_back(&registry, &org).await;

    let root_2 = registry.get_file(&org.metadata, "2.root.json").await;
    // Spelt otherwise than the registry's copy: what counts is what its signatures sign.
    let respelt =
        serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(&root_2).unwrap())
            .unwrap();
    for root in [root_2, respelt] {
        assert_older_timestamp_refused(&registry, root, cache.path()).await;
    }
    // Root 1 deployed again, spelt otherwise (as configuration tools rewrite JSON): the same
    // root, whose trusted metadata is kept, not a fresh start.
    let mut root_1 =
        serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(&org.root).unwrap())
            .unwrap();
    root_1.extend_from_slice(b"\r\n\n");
    assert_ne!(root_1, org.root);
    assert_older_timestamp_refused(&registry, root_1, cache.path()).await;
}

#[tokio::test]
async fn a_root_the_updates_never_reached_starts_afresh() {
    // Nodes trusting root 1 never updated past it; the operator configures root 2, which no
    // update reached: the operator's bootstrap decision, which starts afresh (and takes the
    // older timestamp pushed back), while root 1's state still refuses it.
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let cache = trusted_then_timestamp_pushed_back(&registry, &org).await;
    let pushed_back = registry.get_file(&org.metadata, "timestamp.json").await;
    org.rotate_root_keys(&registry).await;
    registry
        .put_file(&org.metadata, "timestamp.json", &pushed_back)
        .await;
    let root_2 = registry.get_file(&org.metadata, "2.root.json").await;
    verify_configured(&registry, root_2, cache.path())
        .await
        .unwrap();
    assert_older_timestamp_refused(&registry, org.root.clone(), cache.path()).await;
}
