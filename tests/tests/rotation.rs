//! Key rotation: clients holding an old root follow the N -> N+1 chain, refuse a badly signed
//! intermediate root, and recover from fast-forwarded versions once the keys are rotated.

use std::num::NonZeroU64;

use tough::schema::{RoleType, Root, Signed, Targets};
use tuf_oci::claim::{Claim, Withdrawal};
use tuf_oci::keys::SigningKey;
use tuf_oci::{Error, ImageRef, Registry, RegistryConfig, Repository, TrustConfig, Verifier};
use tuf_oci_tests::craft::{self, parse};
use tuf_oci_tests::hostile::{HostileRegistry, Rule};
use tuf_oci_tests::{Org, TestRegistry, expiries};

async fn signed_repo(registry: &TestRegistry) -> Org {
    tuf_oci_tests::solo(registry, true).await.0
}

#[tokio::test]
async fn root_rotation_is_followed_from_the_old_root() {
    let (registry, org, cache) = tuf_oci_tests::solo_trusted().await;

    org.rotate_root_keys(&registry).await;
    // Then the same again: root 3 is signed by root-new and root-newer only.
    let new_root = [org.key("root-new").await];
    let newer = [org.key("root-newer").await];
    org.editor(&registry)
        .await
        .rotate(
            RoleType::Root,
            &new_root,
            &[],
            &newer,
            NonZeroU64::MIN,
            &expiries(),
        )
        .await
        .unwrap();
    org.publish(&registry).await;

    for cache in [cache, tempfile::tempdir().unwrap()] {
        let verified = org.verifier(&registry, cache.path());
        let mut updater = verified
            .updater(&registry.repo("solo/app"), tuf_oci::Expiration::Enforce)
            .await
            .unwrap();
        assert_eq!(updater.root().signed.version.get(), 3);
        updater.find("solo/app:v1", None).await.unwrap();
    }
}

/// A verifier of `registry` trusting `root`, signed with `org`'s root key.
async fn trusting(registry: &TestRegistry, org: &Org, root: &Root) -> Verifier {
    let signed = craft::sign_top(root.clone(), root, &[org.key("root").await]).await;
    Verifier::new(
        registry.client.clone(),
        TrustConfig {
            root: craft::bytes(&signed),
            ..TrustConfig::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_trusted_root_of_the_last_version_has_no_successor_to_ask_for() {
    // Versions are 64-bit: asking for root N+1 of the last one overflowed.
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let root: Signed<Root> = parse(&org.root);
    let mut last = root.signed.clone();
    last.version = NonZeroU64::MAX;
    let verifier = trusting(&registry, &org, &last).await;
    let image = tuf_oci::ImageRef::parse(&format!("{}/solo/app:v1", registry.host)).unwrap();
    verifier.verify(&image).await.unwrap();

    // And it still expires (TUF 5.3.10).
    last.expires = tuf_oci_tests::past();
    let verifier = trusting(&registry, &org, &last).await;
    let err = verifier.verify(&image).await.unwrap_err();
    assert!(
        matches!(&err, Error::Expired { role, .. } if role == "root"),
        "{err}"
    );
}

#[tokio::test]
async fn a_next_root_that_does_not_parse_is_named_by_its_version() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    registry
        .put_file(&org.metadata, "2.root.json", b"{\"signed\": 1}")
        .await;
    let err = org
        .verify_fresh(&registry, "solo/app:v1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RootChain { version: 2, ref message } if message.contains("cannot be parsed")),
        "{err}"
    );
}

#[tokio::test]
async fn root_not_signed_by_its_predecessor_is_refused() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let root: Signed<Root> = parse(&org.root);
    let intruder = org.key("intruder").await;
    let mut next = root.signed.clone();
    next.version = NonZeroU64::new(2).unwrap();
    let id = intruder.public().key_id().unwrap();
    next.keys.insert(id.clone(), intruder.public().clone());
    next.roles.get_mut(&RoleType::Root).unwrap().keyids = vec![id];
    // Signed by the new root key only: the old root's threshold is not met.
    let signed = craft::sign_top(next.clone(), &next, &[intruder]).await;
    registry
        .put_file(&org.metadata, "2.root.json", &craft::bytes(&signed))
        .await;

    let err = org
        .verify_fresh(&registry, "solo/app:v1")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RootChain { version: 2, .. }), "{err}");
}

#[tokio::test]
async fn fast_forwarded_timestamp_is_recovered_by_rotating_its_key() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let root: Signed<Root> = parse(&org.root);
    let timestamp_key = [org.key("timestamp").await];

    // The timestamp key leaks; a timestamp with version 1000 reaches a client.
    craft::forge_timestamp(&registry, &org, &root.signed, &timestamp_key, |inflated| {
        inflated.version = NonZeroU64::new(1000).unwrap();
    })
    .await;
    let cache = tempfile::tempdir().unwrap();
    org.verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();

    // The administrator rotates the timestamp key and restarts the version count.
    let (fresh, new_root) = craft::rotate_to_new_key(&registry, &org, RoleType::Timestamp).await;
    craft::forge_timestamp(&registry, &org, &new_root.signed, &[fresh], |restarted| {
        restarted.version = NonZeroU64::new(3).unwrap();
    })
    .await;

    let verifier = org.verifier(&registry, cache.path());
    let mut updater = verifier
        .updater(&registry.repo("solo/app"), tuf_oci::Expiration::Enforce)
        .await
        .unwrap();
    assert_eq!(updater.timestamp().unwrap().signed.version.get(), 3);
    updater.find("solo/app:v1", None).await.unwrap();
}

/// A snapshot key that signed an inflated version is rotated out, and clients recover: the
/// trusted timestamp and snapshot are forgotten (TUF 5.3.11), also when the root update that
/// forgets them was cut short by a crash (`root.pending` left).
#[tokio::test]
async fn fast_forwarded_snapshot_is_recovered_by_rotating_its_key_even_if_cut_short() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let root: Signed<Root> = parse(&org.root);
    let snapshot_key = [org.key("snapshot").await];
    let cache = tempfile::tempdir().unwrap();
    let verify = || async {
        org.verifier(&registry, cache.path())
            .verify(&registry.image("solo/app:v1"))
            .await
    };
    verify().await.unwrap();
    let craft::Published {
        timestamp,
        snapshot: legit,
        ..
    } = craft::published(&registry, &org).await;
    let published = legit.signed.version.get();
    let next_timestamp = |n: u64| timestamp.signed.version.get() + n;

    // The snapshot key leaks; a client trusts a snapshot naming targets version 1000.
    let mut inflated = legit.signed.clone();
    inflated.version = NonZeroU64::new(published + 100).unwrap();
    let targets = inflated.meta.get_mut("targets.json").unwrap();
    *targets = craft::metafile(1000, b"never published");
    craft::publish_snapshot(
        &registry,
        &org,
        &root.signed,
        &snapshot_key,
        inflated,
        next_timestamp(1),
    )
    .await;
    let err = verify().await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");

    // The real state, re-signed with the same key, is now a rollback for that client.
    let mut real = legit.signed.clone();
    real.version = NonZeroU64::new(published + 1).unwrap();
    craft::publish_snapshot(
        &registry,
        &org,
        &root.signed,
        &snapshot_key,
        real.clone(),
        3,
    )
    .await;
    let err = verify().await.unwrap_err();
    assert!(
        matches!(err, Error::Rollback { ref role, trusted, .. } if role == "snapshot" && trusted == published + 100),
        "{err}"
    );

    // The timestamp the client trusts now, naming the inflated snapshot.
    let trust_dir = tuf_oci::verify::trust_dir(cache.path(), &org.root).unwrap();
    let fast_forwarded = std::fs::read(trust_dir.join("timestamp.json")).unwrap();

    // The administrator rotates the snapshot key: the client drops the trusted snapshot and
    // timestamp (TUF 5.3.11) and accepts the real state under the new key.
    let (fresh, new_root) = craft::rotate_to_new_key(&registry, &org, RoleType::Snapshot).await;
    real.version = NonZeroU64::new(published + 2).unwrap();
    craft::publish_snapshot(
        &registry,
        &org,
        &new_root.signed,
        &[fresh],
        real,
        next_timestamp(3),
    )
    .await;
    let verified = verify().await.unwrap();
    assert_eq!(verified.name(), "solo/app:v1");
    let updater = org
        .verifier(&registry, cache.path())
        .updater(&registry.repo("solo/app"), tuf_oci::Expiration::Enforce)
        .await
        .unwrap();
    assert_eq!(
        updater.snapshot().unwrap().signed.version.get(),
        published + 2
    );

    // A root update cut short (a crash): root 1 stored, root 2 pending, the snapshot forgotten
    // already and the fast-forwarded timestamp (its key unchanged) not yet. Read through a
    // mirror withholding root 2, the client still trusts it, finishes the update and verifies
    // the current state.
    let root_2 = std::fs::read(trust_dir.join("root.json")).unwrap();
    std::fs::write(trust_dir.join("root.json"), &org.root).unwrap();
    std::fs::write(trust_dir.join("root.pending"), &root_2).unwrap();
    std::fs::write(trust_dir.join("timestamp.json"), &fast_forwarded).unwrap();
    std::fs::remove_file(trust_dir.join("snapshot.json")).unwrap();
    let mirror = Mirror::start(&registry).await;
    let verified = mirror
        .verifier(&org, cache.path())
        .verify(&mirror.image)
        .await;
    assert_eq!(verified.unwrap().name(), "solo/app:v1");
    assert_finished(&trust_dir, &root_2);
}

/// A proxy in front of the registry that never serves root 2.
struct Mirror {
    proxy: HostileRegistry,
    /// `solo/app:v1` through it.
    image: ImageRef,
}

impl Mirror {
    async fn start(registry: &TestRegistry) -> Self {
        let hide = Rule::Hide {
            path_suffix: "/2.root.json".into(),
        };
        let proxy = HostileRegistry::start(&registry.host, vec![hide]).await;
        let image = ImageRef::parse(&format!("{}/solo/app:v1", proxy.host)).unwrap();
        Mirror { proxy, image }
    }

    /// A verifier of `org` reading everything through the mirror, keeping trusted metadata
    /// in `cache`.
    fn verifier(&self, org: &Org, cache: &std::path::Path) -> Verifier {
        let client = Registry::new(&RegistryConfig {
            insecure_hosts: vec![self.proxy.host.clone()],
            ..RegistryConfig::default()
        })
        .unwrap();
        let metadata = Repository {
            registry: self.proxy.host.clone(),
            path: org.metadata.path.clone(),
        };
        Verifier::new(client, org.trust(Some(metadata), Some(cache))).unwrap()
    }
}

/// Asserts that the update to root `root` (its bytes) finished in `trust_dir`, the root kept
/// by version too.
fn assert_finished(trust_dir: &std::path::Path, root: &[u8]) {
    assert!(!trust_dir.join("root.pending").exists());
    assert_eq!(std::fs::read(trust_dir.join("root.json")).unwrap(), root);
    let version = parse::<Root>(root).signed.version;
    let kept = trust_dir.join(format!("{version}.root.json"));
    assert_eq!(std::fs::read(kept).unwrap(), root);
}

#[tokio::test]
async fn targets_signed_by_a_rotated_out_key_is_not_kept() {
    // The administrator moves top-level targets to a new key (root N+1, which re-signs targets
    // as a new version). Whoever holds the snapshot and timestamp keys keeps naming the old
    // targets version: a client holding that version must check it against root N+1's keys,
    // not keep it because its version is unchanged.
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    let verify = || async {
        org.verifier(&registry, cache.path())
            .verify(&registry.image("solo/app:v1"))
            .await
    };
    verify().await.unwrap();
    let craft::Published {
        timestamp,
        snapshot: old_state,
        ..
    } = craft::published(&registry, &org).await;
    let published = old_state.signed.version.get();
    let (_, new_root) = craft::rotate_to_new_key(&registry, &org, RoleType::Targets).await;
    let mut stale = old_state.signed.clone();
    stale.version = NonZeroU64::new(published + 1).unwrap();
    craft::publish_snapshot(
        &registry,
        &org,
        &new_root.signed,
        &[org.key("snapshot").await],
        stale,
        timestamp.signed.version.get() + 1,
    )
    .await;
    let err = verify().await.unwrap_err();
    assert!(
        matches!(err, Error::Signature { ref role, .. } if role == "targets"),
        "{err}"
    );
}

/// Rotates top-level targets to `new` while another writer's fresh claim on version file
/// `file` stops it from being stored; the claim is withdrawn afterwards. The rotation's error.
async fn rotate_targets_against_a_claim_on(
    registry: &TestRegistry,
    org: &Org,
    file: &str,
    new: &SigningKey,
) -> Error {
    let rival = Claim::new(file).unwrap();
    registry.put_file(&org.metadata, &rival.tag, b"{}").await;
    let err = org
        .editor(registry)
        .await
        .rotate(
            RoleType::Targets,
            &[org.key("root").await],
            &org.targets_key().await,
            std::slice::from_ref(new),
            NonZeroU64::MIN,
            &expiries(),
        )
        .await
        .unwrap_err();
    rival
        .withdraw(&registry.client, &org.metadata, Withdrawal::NothingWritten)
        .await
        .unwrap();
    err
}

/// A rotation of top-level targets cut short, before or after its new targets version is
/// stored, leaves signing, publishing and verifying working under the current root, and
/// goes through when run again: the new version is signed with the current key too, and is
/// stored before the new root.
#[tokio::test]
async fn a_targets_rotation_cut_short_leaves_the_current_root_working() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let head =
        || async { parse::<Targets>(&registry.get_file(&org.metadata, "targets.json").await) };
    let before = head().await.signed.version.get();
    let fresh = org.key("targets-new").await;

    let next = format!("{}.targets.json", before + 1);
    let err = rotate_targets_against_a_claim_on(&registry, &org, &next, &fresh).await;
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    let err = rotate_targets_against_a_claim_on(&registry, &org, "2.root.json", &fresh).await;
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(head().await.signed.version.get(), before + 1);

    let second = registry.push_image("solo/app", "v2", "two").await;
    org.sign_in_targets(&registry, "solo/app:v2").await;
    org.publish(&registry).await;
    let verified = org.verify_fresh(&registry, "solo/app:v2").await.unwrap();
    assert_eq!(verified.digest(), second.digest);

    // As `tuf-oci rotate` does: rotate, then publish with the same editor.
    let mut editor = org.editor(&registry).await;
    let root = editor
        .rotate(
            RoleType::Targets,
            &[org.key("root").await],
            &org.targets_key().await,
            std::slice::from_ref(&fresh),
            NonZeroU64::MIN,
            &expiries(),
        )
        .await
        .unwrap();
    let root: Signed<Root> = parse(&root);
    assert_eq!(root.signed.version.get(), 2);
    root.signed.verify_role(&head().await).unwrap();
    org.publish_in(&editor, &expiries()).await;
    let verified = org.verify_fresh(&registry, "solo/app:v2").await.unwrap();
    assert_eq!(verified.digest(), second.digest);
}

/// Without a threshold of the current targets keys (lost, or a stale key file), rotating
/// top-level targets goes through on the new keys alone, the new root stored first.
/// Rotates top-level targets to `fresh` without its current key (a stale one given instead).
async fn rotate_targets_without_its_key(
    editor: &mut tuf_oci::editor::Editor,
    org: &Org,
    fresh: &SigningKey,
) -> Result<Vec<u8>, Error> {
    editor
        .rotate(
            RoleType::Targets,
            &[org.key("root").await],
            &[org.key("stale").await],
            std::slice::from_ref(fresh),
            NonZeroU64::MIN,
            &expiries(),
        )
        .await
}

#[tokio::test]
async fn a_targets_rotation_without_the_current_key_goes_through() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let old_root: Signed<Root> = parse(&org.root);
    let fresh = org.key("targets-new").await;
    let mut editor = org.editor(&registry).await;
    let root = rotate_targets_without_its_key(&mut editor, &org, &fresh)
        .await
        .unwrap();
    org.publish_in(&editor, &expiries()).await;
    let head: Signed<Targets> = parse(&registry.get_file(&org.metadata, "targets.json").await);
    parse::<Root>(&root).signed.verify_role(&head).unwrap();
    assert!(old_root.signed.verify_role(&head).is_err());
    org.verify_fresh(&registry, "solo/app:v1").await.unwrap();
}

/// A rotation of top-level targets without its current key signs the new version with the
/// new key alone, which root N does not trust: that version is stored before the new root, so
/// a rotation stopped before it (another writer's claim) stores nothing and runs again, and
/// one cut short after the root (the head never moved) is finished by the next publish,
/// which finds the version ahead of the head.
#[tokio::test]
async fn a_targets_rotation_without_the_current_key_cut_short_is_finished() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let fresh = org.key("targets-new").await;
    let head = parse::<Targets>(&registry.get_file(&org.metadata, "targets.json").await);
    let next = head.signed.version.get() + 1;
    let rotate = || async {
        let mut editor = org.editor(&registry).await;
        rotate_targets_without_its_key(&mut editor, &org, &fresh).await
    };
    // The rotation, met by another writer's claim on `file`, which then steps back.
    let (at, metadata, rotate) = (&registry, &org.metadata, &rotate);
    let stopped_by_claim_on = |file: String| async move {
        let rival = Claim::new(&file).unwrap();
        at.put_file(metadata, &rival.tag, b"{}").await;
        let err = rotate().await.unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        rival
            .withdraw(&at.client, metadata, Withdrawal::NothingWritten)
            .await
            .unwrap();
    };
    stopped_by_claim_on(format!("{next}.targets.json")).await;
    // Nothing stored: root 2 is not there, and the current root still verifies.
    org.verify_fresh(&registry, "solo/app:v1").await.unwrap();
    org.publish(&registry).await;

    // Stopped at the root (another writer's claim on it), after the new-key version is
    // stored: writers and clients under the current root pass over that version.
    stopped_by_claim_on("2.root.json".into()).await;
    org.publish(&registry).await;
    org.verify_fresh(&registry, "solo/app:v1").await.unwrap();

    // Through, but cut short after the root: the head left where it was.
    let old_head = registry.get_file(&org.metadata, "targets.json").await;
    rotate().await.unwrap();
    registry
        .put_file(&org.metadata, "targets.json", &old_head)
        .await;
    let editor = org.editor(&registry).await;
    editor
        .publish(
            &[org.key("snapshot").await],
            &[org.key("timestamp").await],
            &expiries(),
        )
        .await
        .unwrap();
    let verified = org.verify_fresh(&registry, "solo/app:v1").await.unwrap();
    assert_eq!(verified.name(), "solo/app:v1");
}

/// Rotates the root key (root 2; the online keys stay) and leaves, in `cache`'s trust
/// directory for the org's root, the state a crash in the middle of storing root 2 leaves:
/// `root.json` still root 1, root 2 pending. Root 2's bytes.
async fn root_update_cut_short(
    registry: &TestRegistry,
    org: &Org,
    cache: &std::path::Path,
) -> Vec<u8> {
    org.rotate_root_keys(registry).await;
    // Not published: the timestamp stays, and an open session has nothing new to store.
    let root_2 = registry.get_file(&org.metadata, "2.root.json").await;
    let trust_dir = tuf_oci::verify::trust_dir(cache, &org.root).unwrap();
    std::fs::write(trust_dir.join("root.json"), &org.root).unwrap();
    std::fs::write(trust_dir.join("root.pending"), &root_2).unwrap();
    root_2
}

/// A root update cut short counts for a session already open: a copy whose chain stops at
/// root 1 is a rollback for it. A verifier opened afterwards trusts root 2 at once, and
/// finishes the update.
#[tokio::test]
async fn a_root_update_cut_short_holds_for_sessions_open_and_new() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::start(&registry).await;
    let open = mirror.verifier(&org, cache.path());
    open.verify(&mirror.image).await.unwrap();

    let root_2 = root_update_cut_short(&registry, &org, cache.path()).await;
    let err = open.verify(&mirror.image).await.unwrap_err();
    assert!(
        matches!(err, Error::Rollback { ref role, trusted: 2, fetched: 1 } if role == "root"),
        "{err}"
    );
    let fresh = mirror.verifier(&org, cache.path());
    fresh.verify(&mirror.image).await.unwrap();
    assert_finished(
        &tuf_oci::verify::trust_dir(cache.path(), &org.root).unwrap(),
        &root_2,
    );
}

/// A root update stopped after storing its root and before removing what it was storing:
/// finished, the root is kept by version too (a directory configured with it later starts from
/// this one's state).
#[tokio::test]
async fn a_root_update_stopped_after_storing_its_root_keeps_it_by_version() {
    let (registry, org, cache) = tuf_oci_tests::solo_trusted().await;
    let root_2 = root_update_cut_short(&registry, &org, cache.path()).await;
    let trust_dir = tuf_oci::verify::trust_dir(cache.path(), &org.root).unwrap();
    std::fs::write(trust_dir.join("root.json"), &root_2).unwrap();
    org.verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();
    assert_finished(&trust_dir, &root_2);
}

/// Configured with root 2 where the trust directory of root 1 holds an update to root 2 cut
/// short, a verifier starts from that directory's state and finishes the update there.
#[tokio::test]
async fn configuring_a_root_whose_update_was_cut_short_takes_up_that_state() {
    let (registry, org, cache) = tuf_oci_tests::solo_trusted().await;
    let root_2 = root_update_cut_short(&registry, &org, cache.path()).await;

    let trust = TrustConfig {
        root: root_2.clone(),
        cache_dir: Some(cache.path().to_path_buf()),
        ..TrustConfig::default()
    };
    Verifier::new(registry.client.clone(), trust)
        .unwrap()
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();
    assert_finished(
        &tuf_oci::verify::trust_dir(cache.path(), &root_2).unwrap(),
        &root_2,
    );
}

/// `tuf-oci rotate` stores the new root, then publishes under its keys. Cut short between the
/// two (killed, or its publish failing), the published files are signed by keys the newest root
/// no longer trusts: clients refuse them until the next publish, and every writer's reading
/// refused them too, so nothing could publish. Writers now read the published state under the
/// root before the newest, and the next publish, with the new keys, finishes the rotation.
#[tokio::test]
async fn a_rotation_cut_short_before_its_publish_is_finished_by_the_next() {
    for role in [RoleType::Timestamp, RoleType::Snapshot, RoleType::Targets] {
        let registry = TestRegistry::start();
        let org = signed_repo(&registry).await;
        let (fresh, _) = craft::rotate_to_new_key(&registry, &org, role).await;
        let err = org
            .verify_fresh(&registry, "solo/app:v1")
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Signature { role: ref refused, .. } if *refused == role.to_string()),
            "{role}: {err}"
        );

        let mut snapshot = vec![org.key("snapshot").await];
        let mut timestamp = vec![org.key("timestamp").await];
        match role {
            RoleType::Timestamp => timestamp = vec![fresh],
            RoleType::Snapshot => snapshot = vec![fresh],
            _ => {}
        }
        let editor = org.editor(&registry).await;
        assert!(editor.finishes_a_rotation(), "{role}");
        editor
            .publish(&snapshot, &timestamp, &expiries())
            .await
            .unwrap();
        let verified = org.verify_fresh(&registry, "solo/app:v1").await.unwrap();
        assert_eq!(verified.name(), "solo/app:v1", "{role}");
        assert!(!org.editor(&registry).await.finishes_a_rotation(), "{role}");
    }
}

/// A timestamp rotation whose publish met another writer's claim on the next timestamp: both
/// stepped back before writing it, so the claims tell of no timestamp written after the one
/// the old key signed, and the next publish finishes the rotation. A claim whose writer may
/// have written under it still keeps writers from reading across, naming it.
#[tokio::test]
async fn a_timestamp_rotation_whose_publish_stepped_back_is_finished_by_the_next() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let (fresh, _) = craft::rotate_to_new_key(&registry, &org, RoleType::Timestamp).await;
    let next = craft::published(&registry, &org)
        .await
        .timestamp
        .signed
        .version
        .get()
        + 1;
    let file = format!("{next}.timestamp.json");
    let (snapshot, fresh) = (&[org.key("snapshot").await], &fresh);
    let publish = |editor: tuf_oci::editor::Editor| async move {
        assert!(editor.finishes_a_rotation());
        editor
            .publish(snapshot, std::slice::from_ref(fresh), &expiries())
            .await
    };
    // The rival claims once this writer has read the published state.
    let editor = org.editor(&registry).await;
    let rival = Claim::new(&file).unwrap();
    registry.stake(&org.metadata, &rival, &file).await;
    let err = publish(editor).await.unwrap_err();
    assert!(
        matches!(err, Error::Conflict { ref reason, .. } if reason.contains(&rival.tag)),
        "{err}"
    );
    rival
        .withdraw(&registry.client, &org.metadata, Withdrawal::NothingWritten)
        .await
        .unwrap();
    publish(org.editor(&registry).await).await.unwrap();
    org.verify_fresh(&registry, "solo/app:v1").await.unwrap();

    // The same, but the rival may have written its timestamp.
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    craft::rotate_to_new_key(&registry, &org, RoleType::Timestamp).await;
    let rival = Claim::new(&file).unwrap();
    registry.stake(&org.metadata, &rival, &file).await;
    rival
        .withdraw(&registry.client, &org.metadata, Withdrawal::MayHaveWritten)
        .await
        .unwrap();
    let err = editor_refused(&registry, &org).await;
    assert!(
        matches!(err, Error::Signature { ref role, ref message } if role == "timestamp" && message.contains(&rival.tag)),
        "{err}"
    );
}

/// Why the administrator's editor of `org` does not open.
async fn editor_refused(registry: &TestRegistry, org: &Org) -> Error {
    let admin = Verifier::new(
        registry.client.clone(),
        org.trust(Some(org.metadata.clone()), None),
    )
    .unwrap();
    match tuf_oci::editor::Editor::open(&admin, &org.metadata).await {
        Ok(_) => panic!("the editor opened"),
        Err(err) => err,
    }
}

/// Writers read across a rotation only when it was cut short: a timestamp the old key signed,
/// tagged again after the rotation went through (a timestamp was written after it), and a
/// published file whose signature fails under the root before too, are refused to them, as
/// ever. Read across, an old state would be signed anew by the cron job's next run.
#[tokio::test]
async fn writers_do_not_read_across_a_rotation_that_went_through() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let old = registry.get_file(&org.metadata, "timestamp.json").await;
    let (fresh, _) = craft::rotate_to_new_key(&registry, &org, RoleType::Timestamp).await;
    org.editor(&registry)
        .await
        .publish(&[org.key("snapshot").await], &[fresh], &expiries())
        .await
        .unwrap();
    let open = || editor_refused(&registry, &org);
    registry
        .put_file(&org.metadata, "timestamp.json", &old)
        .await;
    let err = open().await;
    assert!(
        matches!(err, Error::Signature { ref role, .. } if role == "timestamp"),
        "{err}"
    );

    // A timestamp changed after it was signed fails under every root.
    let mut timestamp: Signed<tough::schema::Timestamp> = parse(&old);
    timestamp.signed.version = timestamp.signed.version.saturating_add(1);
    registry
        .put_file(&org.metadata, "timestamp.json", &craft::bytes(&timestamp))
        .await;
    let err = open().await;
    assert!(
        matches!(err, Error::Signature { ref role, .. } if role == "timestamp"),
        "{err}"
    );
}
