//! Endless data: metadata larger than its limit is refused whatever size the registry claims,
//! and content that does not hash to its digest is refused.

use tough::schema::{Root, Signed};
use tuf_oci::Error;
use tuf_oci_tests::craft::{self, parse};
use tuf_oci_tests::{Org, TestRegistry};

async fn signed_repo(registry: &TestRegistry) -> Org {
    tuf_oci_tests::solo(registry, true).await.0
}

#[tokio::test]
async fn oversized_timestamp_is_refused() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let huge = vec![b' '; 1 << 20];
    registry
        .put_file(&org.metadata, "timestamp.json", &huge)
        .await;
    let err = org
        .verify_fresh(&registry, "solo/app:v1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { ref what, limit: 16384 } if what.contains("timestamp.json")),
        "{err}"
    );
}

/// A length signed in snapshot lowers the client's limit for a role, never raises it: a
/// role longer than the client takes is refused unread (a compromised snapshot key naming
/// gigabytes cannot make clients read them).
#[tokio::test]
async fn a_signed_length_does_not_lift_the_limit() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    let mut trust = org.trust(None, Some(cache.path()));
    trust.limits.targets = 100;
    let err = tuf_oci::Verifier::new(registry.client.clone(), trust)
        .unwrap()
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { ref what, limit: 100 } if what.contains("targets.json") && what.contains("as signed")),
        "{err}"
    );
}

#[tokio::test]
async fn size_lie_in_the_manifest_does_not_lift_the_limit() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let huge = vec![b' '; 1 << 20];
    registry
        .put_file_with_layer(&org.metadata, "timestamp.json", &huge, Some(100))
        .await;
    let err = org
        .verify_fresh(&registry, "solo/app:v1")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn tampered_snapshot_tags_are_never_used() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    // The registry's `2.snapshot.json` tag and the snapshot head now embed other bytes. Clients
    // use a snapshot only when it hashes to what timestamp signs: both are passed over for the
    // blob of that digest.
    let snapshot = registry.get_file(&org.metadata, "2.snapshot.json").await;
    let mut value: serde_json::Value = serde_json::from_slice(&snapshot).unwrap();
    value["signed"]["meta"]["targets.json"]["length"] = 10.into();
    let tampered = serde_json::to_vec(&value).unwrap();
    for tag in ["2.snapshot.json", "snapshot.json"] {
        registry.put_file(&org.metadata, tag, &tampered).await;
    }
    org.verify_fresh(&registry, "solo/app:v1").await.unwrap();
}

#[tokio::test]
async fn snapshot_bytes_other_than_timestamp_names_are_refused() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    // A timestamp naming other bytes for the snapshot (no such blob: the tag's bytes are
    // read, and do not hash to what timestamp names).
    let root: Signed<Root> = parse(&org.root);
    let keys = [org.key("timestamp").await];
    craft::forge_timestamp(&registry, &org, &root.signed, &keys, |timestamp| {
        let meta = timestamp.meta.get_mut("snapshot.json").unwrap();
        meta.hashes.as_mut().unwrap().sha256 = vec![0; 32].into();
    })
    .await;
    let err = org
        .verify_fresh(&registry, "solo/app:v1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MetaHashMismatch { ref role, ref named_by } if role == "snapshot" && named_by == "timestamp"),
        "{err}"
    );
}

#[tokio::test]
async fn deeply_nested_indexes_are_not_followed() {
    use tuf_oci::layout::{Entry, INDEX_MEDIA_TYPE};
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let repo = registry.repo("solo/app");
    let mut child = registry.push_image("solo/app", "leaf", "leaf").await;
    for level in 0..10 {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [child],
        }))
        .unwrap();
        let reference = if level == 9 {
            repo.tagged("deep")
        } else {
            repo.digested(&tuf_oci::layout::sha256_digest(&index))
        };
        child = registry
            .client
            .push_manifest(&reference, &index, INDEX_MEDIA_TYPE)
            .await
            .unwrap();
        assert_eq!(child, Entry::of(INDEX_MEDIA_TYPE, &index));
    }
    org.sign_in_targets(&registry, "solo/app:deep").await;
    org.publish(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.json"), &org.root).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(tuf_oci_tests::cli_binary())
            .args(["--insecure-registry", &registry.host, "--root"])
            .arg(dir.path().join("root.json"))
            .args(args)
            .output()
            .unwrap()
    };
    let image = format!("{}/solo/app:deep", registry.host);
    assert!(
        run(&["verify", &image]).status.success(),
        "the signed root itself verifies"
    );
    let layout = format!("oci:{}", dir.path().join("layout").display());
    for args in [
        vec!["verify", &image, "--deep"],
        vec!["copy", &image, &layout],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("nested deeper than 8 levels"),
            "{args:?}: {err}"
        );
    }
}
