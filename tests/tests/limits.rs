//! Endless data: metadata larger than its limit is refused whatever size the registry claims,
//! and content that does not hash to its digest is refused.

use tuf_oci::Error;
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
async fn tampered_snapshot_bytes_are_refused() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    // Metadata names a target length the registry object does not have: a snapshot that lists
    // a wrong length for targets.json makes the download stop at the signed length.
    let snapshot = registry.get_file(&org.metadata, "2.snapshot.json").await;
    let mut value: serde_json::Value = serde_json::from_slice(&snapshot).unwrap();
    value["signed"]["meta"]["targets.json"]["length"] = 10.into();
    registry
        .put_file(
            &org.metadata,
            "2.snapshot.json",
            &serde_json::to_vec(&value).unwrap(),
        )
        .await;
    let err = org
        .verify_fresh(&registry, "solo/app:v1")
        .await
        .unwrap_err();
    // The bytes no longer match what timestamp names for the snapshot.
    assert!(
        matches!(err, Error::MetaHashMismatch { ref role, ref named_by } if role == "snapshot" && named_by == "timestamp"),
        "{err}"
    );
}
