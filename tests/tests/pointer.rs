//! The unsigned `tuf-metadata` pointer: forging it can only deny service; clients may override
//! it; a missing or dangling pointer gives a clear error.

use tuf_oci::{Error, Verifier};
use tuf_oci_tests::{Org, TestRegistry, solo};

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
    let registry = TestRegistry::start();
    let mirror = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let copied = std::process::Command::new(tuf_oci_tests::cli_binary())
        .args(["--insecure-registry", &registry.host])
        .args(["--insecure-registry", &mirror.host])
        .arg("copy")
        .arg(format!("{}/solo/app", registry.host))
        .arg(format!("{}/solo/app", mirror.host))
        .arg("--all-tags")
        .output()
        .unwrap();
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let cache = tempfile::tempdir().unwrap();
    let client = tuf_oci::Registry::new(&tuf_oci::RegistryConfig {
        insecure_hosts: vec![registry.host.clone(), mirror.host.clone()],
        ..Default::default()
    });
    let verifier = || Verifier::new(client.clone(), org.trust(None, Some(cache.path()))).unwrap();
    let first = verifier();
    first.verify(&registry.image("solo/app:v1")).await.unwrap();
    // The copy is current yet: the verifier reads it too.
    first.verify(&mirror.image("solo/app:v1")).await.unwrap();
    let targets = org.targets_key().await;
    org.editor(&registry)
        .await
        .remove(
            "solo/app:v1",
            "targets",
            &targets,
            tuf_oci_tests::expiries().targets,
        )
        .await
        .unwrap();
    org.publish(&registry).await;
    let err = first
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TargetNotSigned { .. }), "{err}");

    let old_copy = format!("{}/solo/app", mirror.host);
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo("solo/app"), &old_copy)
        .await
        .unwrap();
    // The same verifier, and one started afresh on the same trusted metadata.
    for verifier in [first, verifier()] {
        let err = verifier
            .verify(&registry.image("solo/app:v1"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Rollback { ref role, .. } if role == "timestamp"),
            "{err}"
        );
    }
}
