//! Two signers writing at once lose nothing: different roles signing the same image both land
//! in its referrers index (merged with read-back on a registry without compare-and-swap), and
//! two signers of the same role never both get one version: a writer that meets another's
//! fresh claim steps back with `Conflict` (`tuf_oci::claim`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tuf_oci::claim::{Claim, WINDOW, Withdrawal};
use tuf_oci::keys::SigningKey;
use tuf_oci::layout::{
    EMPTY_BLOB, EMPTY_MEDIA_TYPE, FILENAME_ANNOTATION, MANIFEST_MEDIA_TYPE, Manifest, referrers_tag,
};
use tuf_oci::{Error, ImageRef};
use tuf_oci_tests::hostile::{HostileRegistry, Rule};
use tuf_oci_tests::{Org, TestRegistry, delegation, expiries};

/// An organisation delegating `shared/*` to each of `roles`, with `shared/app` pointing at it;
/// the roles' keys.
async fn shared_roles(registry: &TestRegistry, roles: &[&str]) -> (Org, Vec<SigningKey>) {
    let org = Org::init(registry, "org/tuf").await;
    let targets = org.targets_key().await;
    let mut keys = Vec::new();
    for role in roles {
        let key = org.key(role).await;
        org.delegate(
            registry,
            "targets",
            &targets,
            &delegation(role, &["shared/*"], &[&key], 1),
        )
        .await;
        keys.push(key);
    }
    org.publish(registry).await;
    tuf_oci::editor::set_pointer(
        &registry.client,
        &registry.repo("shared/app"),
        "../../org/tuf",
    )
    .await
    .unwrap();
    (org, keys)
}

/// The files listed in the referrers index of `subject` (a digest in `shared/app`), sorted.
async fn referrers(registry: &TestRegistry, subject: &str) -> Vec<String> {
    let tag = registry.repo("shared/app").tagged(&referrers_tag(subject));
    let index = registry
        .client
        .manifest(&tag, 1 << 20)
        .await
        .unwrap()
        .expect("referrers index");
    let mut files: Vec<String> = Manifest::parse("referrers", &index.bytes)
        .unwrap()
        .manifests
        .iter()
        .map(|m| m.annotations[FILENAME_ANNOTATION].clone())
        .collect();
    files.sort();
    files
}

/// Signs `shared/app:<tag>` into `role-a`.
async fn sign(
    org: &Org,
    registry: &TestRegistry,
    key: &SigningKey,
    tag: &str,
) -> Result<(), Error> {
    let image = registry.image(&format!("shared/app:{tag}"));
    org.editor(registry)
        .await
        .sign(
            std::slice::from_ref(&image),
            "role-a",
            std::slice::from_ref(key),
            expiries().targets,
        )
        .await
        .map(|_| ())
}

/// Signs `shared/app:<tag>` into `role-a` through `proxy`.
async fn sign_through(
    org: &Org,
    proxy: &HostileRegistry,
    key: &SigningKey,
    tag: &str,
) -> Result<(), Error> {
    let image = ImageRef::parse(&format!("{}/shared/app:{tag}", proxy.host)).unwrap();
    org.editor_through(&proxy.host)
        .await
        .sign(
            &[image],
            "role-a",
            std::slice::from_ref(key),
            expiries().targets,
        )
        .await
        .map(|_| ())
}

/// `role-a` delegated as by [`shared_roles`], `shared/app:v1`, `v2` and `v3` pushed, and `v1`
/// signed (role-a version 1); the role's key.
async fn v1_signed_of_three(registry: &TestRegistry) -> (Org, SigningKey) {
    let (org, mut keys) = shared_roles(registry, &["role-a"]).await;
    let key = keys.remove(0);
    for tag in ["v1", "v2", "v3"] {
        registry.push_image("shared/app", tag, tag).await;
    }
    sign(&org, registry, &key, "v1").await.unwrap();
    (org, key)
}

#[tokio::test]
async fn a_fresh_claim_holds_a_version_until_withdrawn_or_stale() {
    let registry = TestRegistry::start();
    let (org, key) = v1_signed_of_three(&registry).await;
    let key = &key;

    // Another writer is storing version 2 of role-a right now.
    let rival = Claim::new("2.role-a.json").unwrap();
    registry.stake(&org.metadata, &rival, "2.role-a.json").await;
    let err = sign(&org, &registry, key, "v2").await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(err.to_string().contains(&rival.tag), "{err}");

    // It stepped back: the version is free again.
    rival
        .withdraw(
            &registry.client,
            &registry.repo("org/tuf"),
            Withdrawal::NothingWritten,
        )
        .await
        .unwrap();
    sign(&org, &registry, key, "v2").await.unwrap();

    // A claim older than the window (a writer that crashed) holds nothing.
    let old = jiff::Timestamp::now() - jiff::SignedDuration::try_from(WINDOW * 2).unwrap();
    let crashed = Claim::made_at("3.role-a.json", old).unwrap();
    registry
        .stake(&org.metadata, &crashed, "3.role-a.json")
        .await;
    sign(&org, &registry, key, "v3").await.unwrap();

    org.publish(&registry).await;
    for tag in ["v1", "v2", "v3"] {
        let verified = org
            .verify_fresh(&registry, &format!("shared/app:{tag}"))
            .await
            .unwrap();
        assert_eq!(verified.role(), "role-a");
    }
}

#[tokio::test]
async fn a_listed_claim_that_reads_as_missing_still_holds_its_version() {
    // Claims are withdrawn, never removed: one a listing names but a read does not find (a
    // registry whose listing runs ahead of its reads) is another writer's at work.
    let registry = TestRegistry::start();
    let (org, key) = v1_signed_of_three(&registry).await;
    let rival = Claim::new("2.role-a.json").unwrap();
    registry.stake(&org.metadata, &rival, "2.role-a.json").await;
    let hide = Rule::Hide {
        path_suffix: format!("/manifests/{}", rival.tag),
    };
    let proxy = HostileRegistry::start(&registry.host, vec![hide]).await;
    let err = sign_through(&org, &proxy, &key, "v2").await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(err.to_string().contains(&rival.tag), "{err}");
}

#[tokio::test]
async fn a_version_whose_write_failed_is_free_again_at_once() {
    // A writer that claimed a version and then failed to store it (the registry answering
    // 500 every time) withdraws its claim: signing again at once goes through rather than
    // meeting the claim as another writer's until it goes stale.
    let registry = TestRegistry::start();
    let (org, key) = v1_signed_of_three(&registry).await;
    let fail = Rule::Fail {
        path_suffix: "/manifests/2.role-a.json".into(),
        method: "PUT",
        // The first try and the client's two tries again after a server error.
        times: Arc::new(AtomicUsize::new(3)),
    };
    let proxy = HostileRegistry::start(&registry.host, vec![fail]).await;
    let sign_v2 = || sign_through(&org, &proxy, &key, "v2");
    let err = sign_v2().await.unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    sign_v2().await.unwrap();
    org.publish(&registry).await;
    let verified = org.verify_fresh(&registry, "shared/app:v2").await.unwrap();
    assert_eq!(verified.role(), "role-a");
}

#[tokio::test]
async fn other_artifacts_named_like_attached_files_are_left_out_of_the_index() {
    // Anyone who can push to an image's repository can tag another artifact naming the
    // image (an SBOM, or one meant to mislead) the way attached TUF files are tagged. It is
    // no TUF file, and the referrers index does not list it as one.
    let registry = TestRegistry::start();
    let (org, keys) = shared_roles(&registry, &["role-a"]).await;
    let pushed = registry.push_image("shared/app", "v1", "v1").await;
    let repository = registry.repo("shared/app");
    let empty = registry
        .client
        .push_blob(&repository, EMPTY_MEDIA_TYPE, EMPTY_BLOB)
        .await
        .unwrap();
    let sbom = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": "application/spdx+json",
        "config": empty,
        "layers": [empty],
        "subject": pushed,
    });
    let hex = &pushed.digest["sha256:".len()..];
    registry
        .client
        .push_manifest(
            &repository.tagged(&format!("ref-{}-sbom.json", &hex[..16])),
            &serde_json::to_vec(&sbom).unwrap(),
            MANIFEST_MEDIA_TYPE,
        )
        .await
        .unwrap();
    let image = registry.image("shared/app:v1");
    org.sign(&registry, &image, "role-a", &keys).await;
    assert_eq!(
        referrers(&registry, &pushed.digest).await,
        ["1.role-a.json"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_role_signed_twice_at_once_loses_nothing() {
    let registry = TestRegistry::start();
    let (org, keys) = shared_roles(&registry, &["role-a"]).await;
    let key = &keys[0];
    let mut signed = Vec::new();
    for round in 0..6 {
        let (first, second) = (format!("a{round}"), format!("b{round}"));
        registry.push_image("shared/app", &first, &first).await;
        registry.push_image("shared/app", &second, &second).await;
        let (ra, rb) = tokio::join!(
            sign(&org, &registry, key, &first),
            sign(&org, &registry, key, &second),
        );
        for (result, tag) in [(ra, first), (rb, second)] {
            match result {
                Ok(()) => signed.push(tag),
                Err(Error::Conflict { .. }) => {}
                Err(e) => panic!("{tag}: {e}"),
            }
        }
    }
    assert!(!signed.is_empty());
    // Every signer told it succeeded is in the published metadata.
    org.publish(&registry).await;
    for tag in &signed {
        org.verify_fresh(&registry, &format!("shared/app:{tag}"))
            .await
            .unwrap_or_else(|e| panic!("{tag} was reported signed but is lost: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_roles_sign_the_same_image_at_once() {
    let registry = TestRegistry::start();
    let (org, keys) = shared_roles(&registry, &["role-a", "role-b"]).await;
    let (a, b) = (&keys[0], &keys[1]);
    for round in 0..3 {
        let tag = format!("v{round}");
        let pushed = registry.push_image("shared/app", &tag, &tag).await;
        let image = registry.image(&format!("shared/app:{tag}"));
        let (editor_a, editor_b) = (org.editor(&registry).await, org.editor(&registry).await);
        let (key_a, key_b) = (vec![a.clone()], vec![b.clone()]);
        let expires = expiries().targets;
        let (ra, rb) = tokio::join!(
            editor_a.sign(std::slice::from_ref(&image), "role-a", &key_a, expires),
            editor_b.sign(std::slice::from_ref(&image), "role-b", &key_b, expires),
        );
        ra.unwrap();
        rb.unwrap();
        let files = referrers(&registry, &pushed.digest).await;
        let version = round + 1;
        assert_eq!(
            files,
            [
                format!("{version}.role-a.json"),
                format!("{version}.role-b.json")
            ]
        );
    }
    org.publish(&registry).await;
    let verified = org.verify_fresh(&registry, "shared/app:v2").await.unwrap();
    assert_eq!(verified.role(), "role-a");
}

#[tokio::test]
async fn new_images_cost_four_requests_each_to_sign() {
    // Reading what the registry serves, attaching the role version, and reading and writing
    // the referrers index, which is not read again once written (the next listing names no
    // file it lacks).
    let registry = TestRegistry::start();
    let (org, keys) = shared_roles(&registry, &["role-a"]).await;
    let mut requests = Vec::new();
    let mut pushed = Vec::new();
    for (batch, count) in [("a", 4), ("b", 12)] {
        let mut images = Vec::new();
        for i in 0..count {
            let tag = format!("{batch}{i}");
            pushed.push(registry.push_image("shared/app", &tag, &tag).await);
            images.push(registry.image(&format!("shared/app:{tag}")));
        }
        let editor = org.editor(&registry).await;
        let before = registry.client.traffic().requests();
        editor
            .sign(&images, "role-a", &keys, expiries().targets)
            .await
            .unwrap();
        requests.push(registry.client.traffic().requests() - before);
    }
    assert_eq!((requests[1] - requests[0]) / 8, 4, "{requests:?}");
    assert_eq!((requests[1] - requests[0]) % 8, 0, "{requests:?}");
    for (i, image) in pushed.iter().enumerate() {
        let version = if i < 4 { 1 } else { 2 };
        assert_eq!(
            referrers(&registry, &image.digest).await,
            [format!("{version}.role-a.json")]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_referrers_index_written_over_another_writers_is_mended() {
    // Without compare-and-swap, a signer can write an image's referrers index with its own
    // entry only after another signer wrote it with both and saw it complete. The late writer
    // lists the files again after its write and puts the other's entry back.
    let registry = TestRegistry::start();
    let (org, keys) = shared_roles(&registry, &["role-a", "role-b"]).await;
    let pushed = registry.push_image("shared/app", "v1", "v1").await;
    let (permits, arrived) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let hold = Rule::HoldWrites {
        path_suffix: format!("/manifests/{}", referrers_tag(&pushed.digest)),
        permits: permits.clone(),
        arrived: arrived.clone(),
    };
    let proxy = HostileRegistry::start(&registry.host, vec![hold]).await;
    let editor_a = org.editor_through(&proxy.host).await;
    let image = ImageRef::parse(&format!("{}/shared/app:v1", proxy.host)).unwrap();
    let late = editor_a.sign(
        std::slice::from_ref(&image),
        "role-a",
        &keys[..1],
        expiries().targets,
    );
    let meanwhile = async {
        // role-a's writer has read the index (there is none yet) and its write is held...
        for _ in 0..500 {
            if arrived.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(arrived.load(Ordering::SeqCst), 1, "role-a's index write");
        // ...while role-b's writer lists both files and writes the index with both.
        let image = registry.image("shared/app:v1");
        org.sign(&registry, &image, "role-b", &keys[1..]).await;
        assert_eq!(
            referrers(&registry, &pushed.digest).await,
            ["1.role-a.json", "1.role-b.json"]
        );
        permits.add_permits(100);
    };
    let (late, ()) = tokio::join!(late, meanwhile);
    late.expect("role-a signs");
    assert_eq!(
        referrers(&registry, &pushed.digest).await,
        ["1.role-a.json", "1.role-b.json"]
    );
}

#[tokio::test]
async fn a_version_left_behind_the_head_is_kept() {
    let registry = TestRegistry::start();
    let (org, key) = v1_signed_of_three(&registry).await;
    let key = &key;
    let metadata = registry.repo("org/tuf");
    let head_at_1 = registry
        .client
        .manifest(&metadata.tagged("role-a.json"), 1 << 20)
        .await
        .unwrap()
        .expect("head");
    sign(&org, &registry, key, "v2").await.unwrap();
    // Version 2's writer never moved the head (interrupted, or its head write was overtaken):
    // the head says version 1 again.
    registry
        .client
        .push_manifest(
            &metadata.tagged("role-a.json"),
            &head_at_1.bytes,
            MANIFEST_MEDIA_TYPE,
        )
        .await
        .unwrap();
    // The next signer builds on version 2 rather than colliding with it, and publishing keeps
    // what version 2 signed.
    sign(&org, &registry, key, "v3").await.unwrap();
    org.publish(&registry).await;
    for tag in ["v1", "v2", "v3"] {
        org.verify_fresh(&registry, &format!("shared/app:{tag}"))
            .await
            .unwrap_or_else(|e| panic!("{tag}: {e}"));
    }
}

#[tokio::test]
async fn a_junk_version_of_a_role_blocks_neither_its_signers_nor_publish() {
    // Anyone who can push to the metadata repository (every signer) can tag a file at a
    // role's next versions, and versions are written once: junk, an older version tagged
    // again, a version as far as versions go. The writers of the role go past them, keep a
    // real version stored after them, and publish names the role's real head.
    let registry = TestRegistry::start();
    let tuf_oci_tests::TeamA { org, .. } = tuf_oci_tests::TeamA::create(&registry).await;
    let head = || async {
        tuf_oci_tests::craft::parse::<tough::schema::Targets>(
            &registry.get_file(&org.metadata, "team-a.json").await,
        )
        .signed
        .version
        .get()
    };
    let sign = |tag: &'static str| {
        let (registry, org) = (&registry, &org);
        async move {
            registry.push_image("team-a/app", tag, tag).await;
            org.sign(
                registry,
                &registry.image(&format!("team-a/app:{tag}")),
                "team-a",
                &[org.key("team-a").await],
            )
            .await;
        }
    };
    sign("v2").await;
    org.publish(&registry).await;
    let before = head().await;
    let file = |version: u64| format!("{version}.team-a.json");
    // Older than the published version: taken for the head, it would be a rollback.
    let older = registry.get_file(&org.metadata, &file(before - 1)).await;
    registry
        .put_file(&org.metadata, &file(before + 1), br#"{"signed": "junk"}"#)
        .await;
    registry
        .put_file(&org.metadata, &file(before + 2), &older)
        .await;
    registry
        .put_file(&org.metadata, &file(u64::MAX), br#"{"signed": "junk"}"#)
        .await;
    org.publish(&registry).await;
    sign("v3").await;
    assert_eq!(head().await, before + 3);
    // The head tag left behind (a writer interrupted before moving it): the version stored
    // past the junk is still the one built on.
    registry
        .put_file(&org.metadata, "team-a.json", &older)
        .await;
    sign("v4").await;
    assert_eq!(head().await, before + 4);
    org.publish(&registry).await;
    for tag in ["v1", "v2", "v3", "v4"] {
        org.verify_fresh(&registry, &format!("team-a/app:{tag}"))
            .await
            .unwrap();
    }

    // Junk at the first version of a role never written yet.
    let team_z = org.key("team-z").await;
    org.delegate_from_targets(
        &registry,
        &delegation("team-z", &["team-z/*"], &[&team_z], 1),
    )
    .await;
    org.publish(&registry).await;
    registry
        .put_file(&org.metadata, "1.team-z.json", br#"{"signed": "junk"}"#)
        .await;
    let image = registry.push_image("team-z/app", "v1", "z").await;
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo("team-z/app"), "/org/tuf")
        .await
        .unwrap();
    org.sign(
        &registry,
        &registry.image("team-z/app:v1"),
        "team-z",
        &[team_z],
    )
    .await;
    org.publish(&registry).await;
    let verified = org.verify_fresh(&registry, "team-z/app:v1").await.unwrap();
    assert_eq!(verified.digest(), image.digest);
}
