//! Freeze attacks: expired root, timestamp, snapshot, top-level or delegated targets are refused
//! with the expired role named.

use std::num::NonZeroU64;

use tough::schema::RoleType;
use tuf_oci::Error;
use tuf_oci::editor::Expiries;
use tuf_oci_tests::{Org, TestRegistry, delegation, expiries, past};

/// A verifier of `org`'s images in `registry` that reuses an update for 5 minutes, with its
/// trusted metadata in `cache`.
fn verifier_with_interval(
    org: &Org,
    registry: &TestRegistry,
    cache: &std::path::Path,
) -> tuf_oci::Verifier {
    let mut trust = org.trust(None, Some(cache));
    trust.refresh_interval = std::time::Duration::from_secs(300);
    tuf_oci::Verifier::new(registry.client.clone(), trust).unwrap()
}

/// Waits until a second past `expires`.
async fn sleep_past(expires: jiff::Timestamp) {
    let wait = jiff::Timestamp::now().duration_until(expires + jiff::SignedDuration::from_secs(1));
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
}

fn expired_role(err: &Error) -> &str {
    match err {
        Error::Expired { role, .. } => role,
        other => panic!("expected Expired, got {other}"),
    }
}

async fn verify_error(registry: &TestRegistry, org: &Org) -> Error {
    let cache = tempfile::tempdir().unwrap();
    org.verifier(registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap_err()
}

async fn signed_repo(registry: &TestRegistry) -> Org {
    tuf_oci_tests::solo(registry, false).await.0
}

#[tokio::test]
async fn expired_timestamp() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let mut expires = expiries();
    expires.timestamp = past();
    org.publish_with(&registry, &expires).await;
    assert_eq!(
        expired_role(&verify_error(&registry, &org).await),
        "timestamp"
    );

    // Refreshing timestamp alone (the cron job) repairs it.
    org.editor(&registry)
        .await
        .refresh_timestamp(&[org.key("timestamp").await], expiries().timestamp)
        .await
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    org.verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn metadata_expiring_within_the_refresh_interval_is_read_again() {
    // A verifier holding metadata for a refresh interval reads the repository again once what
    // it holds expires: a new timestamp is out by then, and expired metadata would fail every
    // pull until the interval ended.
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let mut expires = expiries();
    // Long enough for the first verification on a slow machine.
    expires.timestamp = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(8);
    org.publish_with(&registry, &expires).await;
    let cache = tempfile::tempdir().unwrap();
    let verifier = verifier_with_interval(&org, &registry, cache.path());
    let image = registry.image("solo/app:v1");
    verifier.verify(&image).await.unwrap();
    org.editor(&registry)
        .await
        .refresh_timestamp(&[org.key("timestamp").await], expiries().timestamp)
        .await
        .unwrap();
    sleep_past(expires.timestamp).await;
    verifier.verify(&image).await.unwrap();
}

#[tokio::test]
async fn a_delegated_role_expiring_within_the_refresh_interval_is_read_again() {
    // The same for a delegated role the verifier holds: its new version is named by a new
    // snapshot, which only an update reads.
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "solo/app").await;
    let team = [org.key("team").await];
    org.delegate_from_targets(&registry, &delegation("team", &["solo/*"], &[&team[0]], 1))
        .await;
    registry.push_image("solo/app", "v1", "one").await;
    let image = registry.image("solo/app:v1");
    let sign = |expires| {
        let (org, registry, image, team) = (&org, &registry, &image, &team);
        async move {
            org.editor(registry)
                .await
                .sign(std::slice::from_ref(image), "team", team, expires)
                .await
                .unwrap();
            org.publish(registry).await;
        }
    };
    // Long enough for the first verification on a slow machine.
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(8);
    sign(soon).await;
    let cache = tempfile::tempdir().unwrap();
    let verifier = verifier_with_interval(&org, &registry, cache.path());
    assert_eq!(verifier.verify(&image).await.unwrap().role(), "team");
    sign(expiries().targets).await;
    sleep_past(soon).await;
    assert_eq!(verifier.verify(&image).await.unwrap().role(), "team");
}

#[tokio::test]
async fn expired_snapshot() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let mut expires = expiries();
    expires.snapshot = past();
    org.publish_with(&registry, &expires).await;
    assert_eq!(
        expired_role(&verify_error(&registry, &org).await),
        "snapshot"
    );
}

#[tokio::test]
async fn expired_top_level_targets() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "solo/app").await;
    registry.push_image("solo/app", "v1", "one").await;
    org.editor(&registry)
        .await
        .sign(
            &[registry.image("solo/app:v1")],
            "targets",
            &org.targets_key().await,
            past(),
        )
        .await
        .unwrap();
    org.publish(&registry).await;
    assert_eq!(
        expired_role(&verify_error(&registry, &org).await),
        "targets"
    );
}

#[tokio::test]
async fn expired_delegated_targets() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "solo/app").await;
    let team = org.key("team").await;
    org.delegate_from_targets(&registry, &delegation("team", &["solo/*"], &[&team], 1))
        .await;
    org.publish(&registry).await;
    let pushed = registry.push_image("solo/app", "v1", "one").await;
    org.editor(&registry)
        .await
        .sign(&[registry.image("solo/app:v1")], "team", &[team], past())
        .await
        .unwrap();
    org.publish(&registry).await;
    assert_eq!(expired_role(&verify_error(&registry, &org).await), "team");
    // By digest the expired role is named too, not taken for one that signs nothing.
    let cache = tempfile::tempdir().unwrap();
    let err = org
        .verifier(&registry, cache.path())
        .verify(&registry.image(&format!("solo/app@{}", pushed.digest)))
        .await
        .unwrap_err();
    assert_eq!(expired_role(&err), "team");
}

#[tokio::test]
async fn expired_root() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    org.publish(&registry).await;
    // Root version 2 (same keys) that expired already.
    let root_key = [org.key("root").await];
    let timestamp_key = [org.key("timestamp").await];
    org.editor(&registry)
        .await
        .rotate(
            RoleType::Timestamp,
            &root_key,
            &[],
            &timestamp_key,
            NonZeroU64::MIN,
            &Expiries {
                root: past(),
                ..expiries()
            },
        )
        .await
        .unwrap();
    assert_eq!(expired_role(&verify_error(&registry, &org).await), "root");
}

#[tokio::test]
async fn clock_skew_tolerance_is_explicit() {
    let registry = TestRegistry::start();
    let org = signed_repo(&registry).await;
    let mut expires = expiries();
    // Expired half a minute ago, as a node whose clock runs ahead would see it.
    expires.timestamp = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(30))
        .unwrap();
    org.publish_with(&registry, &expires).await;
    let verify = |skew: u64| {
        let mut trust = org.trust(None, None);
        trust.limits.clock_skew = std::time::Duration::from_secs(skew);
        let verifier = tuf_oci::Verifier::new(registry.client.clone(), trust).unwrap();
        let image = registry.image("solo/app:v1");
        async move { verifier.verify(&image).await }
    };
    assert_eq!(expired_role(&verify(0).await.unwrap_err()), "timestamp");
    assert_eq!(expired_role(&verify(10).await.unwrap_err()), "timestamp");
    verify(120).await.unwrap();
}
