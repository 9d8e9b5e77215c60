//! Key rotation: clients holding an old root follow the N -> N+1 chain, refuse a badly signed
//! intermediate root, and recover from fast-forwarded versions once the keys are rotated.

use std::num::NonZeroU64;

use tough::schema::{RoleType, Root, Signed};
use tuf_oci::Error;
use tuf_oci::keys::SigningKey;
use tuf_oci_tests::craft::{self, parse};
use tuf_oci_tests::{Org, TestRegistry, expiries};

async fn signed_repo(registry: &TestRegistry) -> Org {
    tuf_oci_tests::solo(registry, true).await.0
}

#[tokio::test]
async fn root_rotation_is_followed_from_the_old_root() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    org.verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();

    let old_root = [org.key("root").await];
    let new_root = [org.key("root-new").await];
    org.editor(&registry)
        .await
        .rotate(
            RoleType::Root,
            &old_root,
            &new_root,
            NonZeroU64::MIN,
            &expiries(),
        )
        .await
        .unwrap();
    // Then the same again: root 3 is signed by root-new and root-newer only.
    let newer = [org.key("root-newer").await];
    org.editor(&registry)
        .await
        .rotate(
            RoleType::Root,
            &new_root,
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
    let fresh: SigningKey = org.key("timestamp-new").await;
    let new_root = org
        .editor(&registry)
        .await
        .rotate(
            RoleType::Timestamp,
            &[org.key("root").await],
            std::slice::from_ref(&fresh),
            NonZeroU64::MIN,
            &expiries(),
        )
        .await
        .unwrap();
    let new_root: Signed<Root> = parse(&new_root);
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
