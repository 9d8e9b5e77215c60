//! The unsigned `tuf-metadata` pointer: forging it can only deny service; clients may override
//! it; a missing or dangling pointer gives a clear error.

use std::sync::Arc;
use std::time::Duration;

use tough::schema::RoleType;
use tuf_oci::{Error, Verifier};
use tuf_oci_tests::hostile::{HostileRegistry, Rule};
use tuf_oci_tests::{Org, TestRegistry, craft, solo};

/// Copies `solo/app` with its metadata from `from` to `to`, as a mirror would.
fn copy_solo(from: &TestRegistry, to: &TestRegistry) {
    let copied = std::process::Command::new(tuf_oci_tests::cli_binary())
        .args(["--insecure-registry", &from.host])
        .args(["--insecure-registry", &to.host])
        .arg("copy")
        .arg(format!("{}/solo/app", from.host))
        .arg(format!("{}/solo/app", to.host))
        .arg("--all-tags")
        .output()
        .unwrap();
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
}

/// `solo/app` signed in one registry and copied with its metadata to another.
struct Mirrored {
    registry: TestRegistry,
    mirror: TestRegistry,
    org: Org,
    /// For trusted metadata.
    cache: tempfile::TempDir,
    /// Reaches both registries.
    client: tuf_oci::Registry,
}

async fn mirrored() -> Mirrored {
    let registry = TestRegistry::start();
    let mirror = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    copy_solo(&registry, &mirror);
    let client = client_for(&[&registry.host, &mirror.host]);
    Mirrored {
        registry,
        mirror,
        org,
        cache: tempfile::tempdir().unwrap(),
        client,
    }
}

/// The mirror behind a proxy that holds requests ending with a suffix until the test hands
/// out permits, and a verifier that has read the mirror through it once.
struct Held {
    lagging: HostileRegistry,
    /// None left once the verifier has read the mirror.
    permits: Arc<tokio::sync::Semaphore>,
    verifier: Verifier,
    /// `solo/app:v1` through the proxy.
    image: tuf_oci::ImageRef,
}

impl Mirrored {
    async fn held(&self, suffix: &str) -> Held {
        let permits = Arc::new(tokio::sync::Semaphore::new(1000));
        let lagging = HostileRegistry::start(
            &self.mirror.host,
            vec![Rule::Hold {
                path_suffix: suffix.into(),
                permits: permits.clone(),
            }],
        )
        .await;
        let client = client_for(&[&self.registry.host, &lagging.host]);
        let verifier =
            Verifier::new(client, self.org.trust(None, Some(self.cache.path()))).unwrap();
        let image = tuf_oci::ImageRef::parse(&format!("{}/solo/app:v1", lagging.host)).unwrap();
        verifier.verify(&image).await.unwrap();
        permits.forget_permits(permits.available_permits());
        Held {
            lagging,
            permits,
            verifier,
            image,
        }
    }
}

/// A registry client reaching `hosts` over plain HTTP.
fn client_for(hosts: &[&str]) -> tuf_oci::Registry {
    tuf_oci::Registry::new(&tuf_oci::RegistryConfig {
        insecure_hosts: hosts.iter().map(|host| host.to_string()).collect(),
        ..Default::default()
    })
    .expect("registry client")
}

/// Asserts that `verifier` refuses `image` as no longer signed.
async fn refused_as_revoked(verifier: &Verifier, image: &tuf_oci::ImageRef) {
    let err = verifier.verify(image).await.unwrap_err();
    assert!(
        matches!(err, Error::TargetNotSigned { .. }),
        "{image}: {err}"
    );
}

/// Asserts that each of `verifiers` refuses `image` as a rollback of `role`.
async fn refused_as_rollback(
    verifiers: impl IntoIterator<Item = Verifier>,
    image: &tuf_oci::ImageRef,
    role: &str,
) {
    for verifier in verifiers {
        let err = verifier.verify(image).await.unwrap_err();
        assert!(
            matches!(err, Error::Rollback { role: ref refused, .. } if refused == role),
            "{err}"
        );
    }
}

/// Has top-level targets stop signing `solo/app:v1` (published separately).
async fn revoke(registry: &TestRegistry, org: &Org) {
    org.editor(registry)
        .await
        .remove(
            "solo/app:v1",
            "targets",
            &org.targets_key().await,
            tuf_oci_tests::expiries().targets,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn forged_pointer_to_another_root_is_refused() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let evil = Org::init(&registry, "evil/tuf").await;
    registry
        .push_image("team-a/app", "v1", "evil content")
        .await;
    // The attacker's own repository signs the image and the pointer is redirected to it.
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo("team-a/app"), "/evil/tuf")
        .await
        .unwrap();
    evil.sign_in_targets(&registry, "team-a/app:v1").await;
    evil.publish(&registry).await;

    // The attacker's own root accepts it; ours does not.
    let cache = tempfile::tempdir().unwrap();
    evil.verifier(&registry, cache.path())
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap();
    let err = org
        .verify_fresh(&registry, "team-a/app:v1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Signature { ref role, .. } if role == "timestamp"),
        "{err}"
    );
}

#[tokio::test]
async fn override_ignores_the_pointer() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    registry.push_image("team-a/app", "v1", "good").await;
    org.sign_in_targets(&registry, "team-a/app:v1").await;
    org.publish(&registry).await;
    // The pointer leads nowhere useful, but the client was told where metadata lives.
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo("team-a/app"), "../nowhere")
        .await
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let verifier = Verifier::new(
        registry.client.clone(),
        org.trust(Some(org.metadata.clone()), Some(cache.path())),
    )
    .unwrap();
    verifier
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap();

    let err = org
        .verifier(&registry, cache.path())
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { ref what } if what.contains("timestamp.json")),
        "{err}"
    );
}

#[tokio::test]
async fn missing_or_malformed_pointer_names_the_repository() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    registry.push_image("team-a/app", "v1", "x").await;
    let cache = tempfile::tempdir().unwrap();
    let verifier = org.verifier(&registry, cache.path());
    let err = verifier
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Pointer { ref repository, .. } if repository.ends_with("team-a/app")),
        "{err}"
    );

    let err = tuf_oci::editor::set_pointer(
        &registry.client,
        &registry.repo("team-a/app"),
        "../../../up",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Pointer { .. }), "{err}");
}

#[tokio::test]
async fn unreachable_registry_is_a_clear_error() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let dead = format!("127.0.0.1:{}", tuf_oci_tests::free_port());
    tuf_oci::editor::set_pointer(
        &registry.client,
        &registry.repo("team-a/app"),
        &format!("{dead}/org/tuf"),
    )
    .await
    .unwrap();
    let err = org
        .verify_fresh(&registry, "team-a/app:v1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Registry { ref reference, .. } if reference.contains(&dead)),
        "{err}"
    );
}

#[tokio::test]
async fn pointer_to_an_older_copy_is_a_rollback() {
    // An older copy of the same metadata, signed by the same root: a mirror that lags, or a
    // copy an attacker kept. A forged pointer leading there must not undo a revocation.
    let Mirrored {
        registry,
        mirror,
        org,
        cache,
        client,
    } = mirrored().await;
    let verifier = || Verifier::new(client.clone(), org.trust(None, Some(cache.path()))).unwrap();
    let first = verifier();
    first.verify(&registry.image("solo/app:v1")).await.unwrap();
    // The copy is current yet: the verifier reads it too.
    first.verify(&mirror.image("solo/app:v1")).await.unwrap();
    revoke(&registry, &org).await;
    org.publish(&registry).await;
    refused_as_revoked(&first, &registry.image("solo/app:v1")).await;

    let old_copy = format!("{}/solo/app", mirror.host);
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo("solo/app"), &old_copy)
        .await
        .unwrap();
    // The same verifier, and one started afresh on the same trusted metadata.
    refused_as_rollback(
        [first, verifier()],
        &registry.image("solo/app:v1"),
        "timestamp",
    )
    .await;
}

#[tokio::test]
async fn a_whole_state_another_process_stored_is_used_while_the_copy_lags() {
    // A long-lived client (the verification service) reads a copy that lags. Another process
    // sharing its trusted metadata verifies through the current copy and stores that update:
    // the timestamp first, the snapshot and targets after. A call in between takes up the
    // timestamp alone and, the state not whole, reads the lagging copy (a rollback). Once the
    // rest is stored, the client answers from the whole state rather than from its copy.
    let Mirrored {
        registry,
        mirror,
        org,
        cache,
        client,
    } = mirrored().await;
    let trust = tuf_oci::TrustConfig {
        refresh_interval: Duration::from_secs(3600),
        ..org.trust(None, Some(cache.path()))
    };
    let service = Verifier::new(client.clone(), trust).unwrap();
    let image = mirror.image("solo/app:v1");
    service.verify(&image).await.unwrap();
    org.publish(&registry).await;
    let other = tempfile::tempdir().unwrap();
    org.verifier(&registry, other.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();
    let (shared, stored) = (
        tuf_oci::verify::trust_dir(cache.path(), &org.root).unwrap(),
        tuf_oci::verify::trust_dir(other.path(), &org.root).unwrap(),
    );
    let copy = |name: &str| std::fs::copy(stored.join(name), shared.join(name)).unwrap();
    copy("timestamp.json");
    refused_as_rollback([service.clone()], &image, "timestamp").await;
    copy("snapshot.json");
    copy("targets.json");
    let found = service.verify(&image).await.unwrap();
    assert_eq!(found.name(), "solo/app:v1");
}

#[tokio::test]
async fn copies_read_at_once_cannot_store_an_older_state() {
    // Two images lead to two copies of the metadata, and the client reads both at the same
    // time: the lagging copy's answer arrives after the current copy's. Storing it would roll
    // the client's trusted metadata back for every later verification.
    let mirrored = mirrored().await;
    let Held {
        lagging,
        permits,
        verifier,
        image,
    } = mirrored.held("/manifests/timestamp.json").await;
    let Mirrored {
        registry,
        mirror,
        org,
        cache: _cache,
        ..
    } = mirrored;

    // The mirror takes one publication, the registry one more.
    org.publish(&registry).await;
    copy_solo(&registry, &mirror);
    org.publish(&registry).await;
    let through_mirror = tokio::spawn({
        let verifier = verifier.clone();
        async move { verifier.verify(&image).await }
    });
    lagging.asked("/manifests/timestamp.json", 2).await;
    verifier
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();
    // Its copy is read once more (another verification stored a newer state meanwhile), and
    // is behind then too.
    permits.add_permits(2);
    let err = through_mirror.await.unwrap().unwrap_err();
    assert!(
        matches!(err, Error::Rollback { ref role, trusted, fetched } if role == "timestamp" && trusted == fetched + 1),
        "{err}"
    );
}

#[tokio::test]
async fn a_publication_landing_while_a_copy_is_read_is_no_rollback() {
    // One verification reads a copy's timestamp just before a publication reaches it, another
    // on the same trusted metadata reads it just after and stores it first. The first then
    // holds a state older than the stored one without the copy being behind: it reads the
    // copy again, and verifies.
    let mirrored = mirrored().await;
    let Held {
        lagging,
        permits,
        verifier,
        image,
    } = mirrored.held("/manifests/2.root.json").await;
    let reading = tokio::spawn({
        let verifier = verifier.clone();
        async move { verifier.verify(&image).await }
    });
    lagging.asked("/manifests/2.root.json", 2).await;
    lagging.asked("/manifests/timestamp.json", 2).await;
    mirrored.org.publish(&mirrored.registry).await;
    copy_solo(&mirrored.registry, &mirrored.mirror);
    let other = Verifier::new(
        mirrored.client.clone(),
        mirrored.org.trust(None, Some(mirrored.cache.path())),
    )
    .unwrap();
    other
        .verify(&mirrored.mirror.image("solo/app:v1"))
        .await
        .unwrap();
    permits.add_permits(10);
    let verified = reading.await.unwrap().unwrap();
    assert_eq!(verified.name(), "solo/app:v1");
}

#[tokio::test]
async fn a_pointer_to_a_hanging_copy_holds_up_only_its_own_images() {
    // Pointers are unsigned: whoever can tag one repository can point it at a copy of the
    // metadata that never answers. Images whose pointers lead elsewhere must not wait for it.
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let hanging = HostileRegistry::start(
        &registry.host,
        vec![Rule::Stall {
            path_suffix: "/manifests/timestamp.json".into(),
        }],
    )
    .await;
    registry.push_image("other/app", "v1", "other").await;
    tuf_oci::editor::set_pointer(
        &registry.client,
        &registry.repo("other/app"),
        &format!("{}/solo/app", hanging.host),
    )
    .await
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let client = tuf_oci::Registry::new(&tuf_oci::RegistryConfig {
        insecure_hosts: vec![registry.host.clone(), hanging.host.clone()],
        timeout: Duration::from_secs(60),
    })
    .expect("registry client");
    let verifier = Verifier::new(client, org.trust(None, Some(cache.path()))).unwrap();
    let held_up = tokio::spawn({
        let (verifier, image) = (verifier.clone(), registry.image("other/app:v1"));
        async move { verifier.verify(&image).await }
    });
    hanging.asked("/manifests/timestamp.json", 1).await;
    let verified = tokio::time::timeout(
        Duration::from_secs(20),
        verifier.verify(&registry.image("solo/app:v1")),
    )
    .await
    .expect("held up by another image's hanging copy")
    .unwrap();
    assert_eq!(verified.name(), "solo/app:v1");
    held_up.abort();
}

#[tokio::test]
async fn a_copy_left_behind_a_root_rotation_is_a_rollback() {
    // The root keys rotate (root 2) while a mirror keeps root 1. A verifier that has seen
    // root 2 through one copy must not go on trusting root 1 through the other.
    let Mirrored {
        registry,
        mirror,
        org,
        cache,
        client,
    } = mirrored().await;
    let verifier = Verifier::new(client, org.trust(None, Some(cache.path()))).unwrap();
    verifier.verify(&mirror.image("solo/app:v1")).await.unwrap();

    org.rotate_root_keys(&registry).await;
    org.publish(&registry).await;
    verifier
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();
    let err = verifier
        .verify(&mirror.image("solo/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Rollback { ref role, trusted: 2, fetched: 1 } if role == "root"),
        "{err}"
    );
}

#[tokio::test]
async fn a_copy_taken_after_a_key_rotation_cannot_bring_back_a_revoked_image() {
    // The snapshot key rotates (root 2, after which clients drop their trusted timestamp and
    // snapshot: TUF 5.3.11). A mirror takes the state right after; then the registry revokes
    // an image. Whoever follows root 2 first keeps what it stores since; a session for the
    // mirror that still held root 1, or a verifier started again, must compare the mirror's
    // state with it.
    let Mirrored {
        registry,
        mirror,
        org,
        cache,
        client,
    } = mirrored().await;
    let verifier = Verifier::new(client.clone(), org.trust(None, Some(cache.path()))).unwrap();
    verifier.verify(&mirror.image("solo/app:v1")).await.unwrap();

    let (fresh, root) = craft::rotate_to_new_key(&registry, &org, RoleType::Snapshot).await;
    craft::resign_snapshot(&registry, &org, &root.signed, &fresh).await;
    copy_solo(&registry, &mirror);
    revoke(&registry, &org).await;
    org.editor(&registry)
        .await
        .publish(
            std::slice::from_ref(&fresh),
            &[org.key("timestamp").await],
            &tuf_oci_tests::expiries(),
        )
        .await
        .unwrap();
    refused_as_revoked(&verifier, &registry.image("solo/app:v1")).await;

    let restarted = Verifier::new(client, org.trust(None, Some(cache.path()))).unwrap();
    refused_as_rollback(
        [verifier, restarted],
        &mirror.image("solo/app:v1"),
        "timestamp",
    )
    .await;
}

#[tokio::test]
async fn a_session_left_on_an_older_root_stores_nothing_beside_a_newer_one() {
    // A session reading a mirror still at root 1 has passed its root check when another
    // session takes root 2 (a new snapshot key) and stores what that key signs. What the first
    // session then read is signed by the replaced key: storing it would leave the client
    // without a snapshot it can check.
    let mirrored = mirrored().await;
    let Held {
        lagging,
        permits,
        verifier,
        image,
    } = mirrored.held(".snapshot.json").await;
    let Mirrored {
        registry,
        mirror,
        org,
        cache: _cache,
        ..
    } = mirrored;

    // The mirror takes one more publication; then the snapshot key rotates.
    org.publish(&registry).await;
    copy_solo(&registry, &mirror);
    let (fresh, root) = craft::rotate_to_new_key(&registry, &org, RoleType::Snapshot).await;
    craft::resign_snapshot(&registry, &org, &root.signed, &fresh).await;

    let through_mirror = tokio::spawn({
        let verifier = verifier.clone();
        async move { verifier.verify(&image).await }
    });
    lagging.asked(".snapshot.json", 1).await;
    verifier
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();
    permits.add_permits(1000);
    let err = through_mirror.await.unwrap().unwrap_err();
    assert!(
        matches!(err, Error::Rollback { ref role, trusted: 2, fetched: 1 } if role == "root"),
        "{err}"
    );
}

#[tokio::test]
async fn a_revocation_seen_through_one_copy_holds_for_all_within_the_refresh_interval() {
    // With a refresh interval a copy is not read again for a while. A revocation the verifier
    // has seen through another copy meanwhile holds for it anyway.
    let Mirrored {
        registry,
        mirror,
        org,
        cache,
        client,
    } = mirrored().await;
    let mut trust = org.trust(None, Some(cache.path()));
    trust.refresh_interval = Duration::from_secs(600);
    let verifier = Verifier::new(client, trust).unwrap();
    verifier.verify(&mirror.image("solo/app:v1")).await.unwrap();
    revoke(&registry, &org).await;
    org.publish(&registry).await;
    for image in [registry.image("solo/app:v1"), mirror.image("solo/app:v1")] {
        refused_as_revoked(&verifier, &image).await;
    }
}

#[tokio::test]
async fn a_key_rotation_seen_through_one_copy_holds_for_all_within_the_refresh_interval() {
    // Root 2 moves the timestamp to a new key and starts its versions again (TUF 5.3.11);
    // then an image is revoked. A session still at root 1 holds a higher timestamp version
    // than the new one and cannot check what the new key signs: within its refresh interval
    // it must read its copy (which lacks root 2) rather than answer from what it holds.
    let Mirrored {
        registry,
        mirror,
        org,
        cache,
        client,
    } = mirrored().await;
    for _ in 0..3 {
        org.publish(&registry).await;
    }
    copy_solo(&registry, &mirror);
    let mut trust = org.trust(None, Some(cache.path()));
    trust.refresh_interval = Duration::from_secs(600);
    let verifier = Verifier::new(client, trust).unwrap();
    verifier.verify(&mirror.image("solo/app:v1")).await.unwrap();
    let (fresh, root) = craft::rotate_to_new_key(&registry, &org, RoleType::Timestamp).await;
    let fresh = std::slice::from_ref(&fresh);
    craft::forge_timestamp(&registry, &org, &root.signed, fresh, |timestamp| {
        timestamp.version = std::num::NonZeroU64::MIN;
    })
    .await;
    revoke(&registry, &org).await;
    org.editor(&registry)
        .await
        .publish(
            &[org.key("snapshot").await],
            fresh,
            &tuf_oci_tests::expiries(),
        )
        .await
        .unwrap();
    refused_as_revoked(&verifier, &registry.image("solo/app:v1")).await;
    refused_as_rollback([verifier], &mirror.image("solo/app:v1"), "root").await;
}

#[tokio::test]
async fn part_of_an_update_stored_by_another_process_is_not_answered_from() {
    // A copy answers with the current timestamp, then with junk for the snapshot it names:
    // the verifier reading it stores the timestamp, not the snapshot. Another verifier on the
    // same trusted metadata, within its refresh interval, takes up that timestamp and must not
    // answer from the older snapshot it holds.
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let cache = tempfile::tempdir().unwrap();
    let mut trust = org.trust(None, Some(cache.path()));
    trust.refresh_interval = Duration::from_secs(600);
    let verifier = Verifier::new(client_for(&[&registry.host]), trust.clone()).unwrap();
    verifier
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();

    revoke(&registry, &org).await;
    org.publish(&registry).await;
    let published = craft::published(&registry, &org).await;
    let version = published.snapshot.signed.version;
    let snapshot_digest = tuf_oci::layout::sha256_digest(&published.snapshot_bytes);
    let junk = |path_suffix: String| Rule::Replace {
        path_suffix,
        body: b"junk".to_vec(),
        content_type: "application/octet-stream".into(),
    };
    let broken = HostileRegistry::start(
        &registry.host,
        vec![
            junk(format!("/{version}.snapshot.json")),
            junk(snapshot_digest.clone()),
        ],
    )
    .await;
    let other = Verifier::new(client_for(&[&broken.host]), trust).unwrap();
    let through_broken = tuf_oci::ImageRef::parse(&format!("{}/solo/app:v1", broken.host)).unwrap();
    let err = other.verify(&through_broken).await.unwrap_err();
    assert!(err.to_string().contains(&snapshot_digest), "{err}");

    refused_as_revoked(&verifier, &registry.image("solo/app:v1")).await;
}

#[tokio::test]
async fn a_copy_with_the_new_root_but_an_older_timestamp_is_a_rollback() {
    // Root 2 changes only the root keys; a mirror takes it, then the registry revokes an
    // image. A session reading the mirror follows it to root 2, and must then compare the
    // mirror's timestamp with what was stored under root 2, not with what it held before.
    let Mirrored {
        registry,
        mirror,
        org,
        cache,
        client,
    } = mirrored().await;
    let verifier = Verifier::new(client, org.trust(None, Some(cache.path()))).unwrap();
    verifier.verify(&mirror.image("solo/app:v1")).await.unwrap();
    org.rotate_root_keys(&registry).await;
    copy_solo(&registry, &mirror);
    revoke(&registry, &org).await;
    org.publish(&registry).await;
    refused_as_revoked(&verifier, &registry.image("solo/app:v1")).await;
    refused_as_rollback([verifier], &mirror.image("solo/app:v1"), "timestamp").await;
}

/// In single-repository mode the `tuf-metadata` index lists every role's file, about 260
/// bytes each: a repository of a few hundred roles verifies, from the registry and from a
/// layout copied from it (its index was read up to 64 KiB, so about 250 roles).
#[tokio::test]
async fn a_single_repository_index_of_many_roles_is_read() {
    use tuf_oci::layout::{INDEX_MEDIA_TYPE, METADATA_TAG, Manifest, index};
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let tag = registry.repo("solo/app").tagged(METADATA_TAG);
    let published = registry
        .client
        .manifest(&tag, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let mut entries = Manifest::parse("index", &published.bytes)
        .unwrap()
        .manifests;
    // Entries as long as a role's, each naming a manifest the registry holds.
    let listed = entries[0].clone();
    for i in 0..400 {
        let mut entry = listed.clone();
        entry.annotations.insert(
            tuf_oci::layout::FILENAME_ANNOTATION.into(),
            format!("1.team-{i:03}.json"),
        );
        entries.push(entry);
    }
    let grown = index(&entries, &std::collections::BTreeMap::new());
    assert!(grown.len() > 100 * 1024, "{}", grown.len());
    registry
        .client
        .push_manifest(&tag, &grown, INDEX_MEDIA_TYPE)
        .await
        .unwrap();

    org.verify_fresh(&registry, "solo/app:v1").await.unwrap();
    let layout = tempfile::tempdir().unwrap();
    tuf_oci_tests::tuf_oci_copy(
        &registry.host,
        &format!("{}/solo/app:v1", registry.host),
        &format!("oci:{}", layout.path().display()),
    );
    let store = tuf_oci::store::LayoutStore::open(layout.path(), false).unwrap();
    tuf_oci::verify_in_store(store, "solo/app", "v1", &org.trust(None, None), true)
        .await
        .unwrap();
}
