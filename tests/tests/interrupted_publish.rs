//! A publish interrupted between its pushes leaves clients on the previous consistent state:
//! snapshot is pushed before the timestamp that names it, and writers' new role versions are
//! invisible until a snapshot names them.

use tough::schema::{Root, Signed, Snapshot, Timestamp};
use tuf_oci_tests::craft::{self, parse};
use tuf_oci_tests::{TestRegistry, expiries, solo};

#[tokio::test]
async fn every_interruption_point_keeps_the_previous_state() {
    let registry = TestRegistry::start();
    let (org, first) = solo(&registry, true).await;
    let repo = &org.metadata;

    // Interrupted before publish: v2 is signed (targets head and version pushed) but no
    // snapshot names it. Clients still see exactly the published state.
    let second = registry.push_image("solo/app", "v2", "two").await;
    org.sign_in_targets(&registry, "solo/app:v2").await;
    assert_eq!(
        org.verify_fresh(&registry, "solo/app:v1")
            .await
            .unwrap()
            .digest(),
        first.digest
    );
    assert!(org.verify_fresh(&registry, "solo/app:v2").await.is_err());

    // Interrupted after the new snapshot, before the timestamp naming it.
    let root: Signed<Root> = parse(&org.root);
    let timestamp: Signed<Timestamp> = parse(&registry.get_file(repo, "timestamp.json").await);
    let current = timestamp.signed.meta["snapshot.json"].version.get();
    let mut snapshot: Signed<Snapshot> = parse(
        &registry
            .get_file(repo, &format!("{current}.snapshot.json"))
            .await,
    );
    let targets = registry.get_file(repo, "targets.json").await;
    let targets_version = parse::<tough::schema::Targets>(&targets)
        .signed
        .version
        .get();
    snapshot.signed.meta.insert(
        "targets.json".into(),
        craft::metafile(targets_version, &targets),
    );
    snapshot.signed.version = snapshot.signed.version.saturating_add(1);
    snapshot.signed.expires = expiries().snapshot;
    let snapshot =
        craft::sign_top(snapshot.signed, &root.signed, &[org.key("snapshot").await]).await;
    registry
        .put_file(
            repo,
            &format!("{}.snapshot.json", current + 1),
            &craft::bytes(&snapshot),
        )
        .await;
    assert_eq!(
        org.verify_fresh(&registry, "solo/app:v1")
            .await
            .unwrap()
            .digest(),
        first.digest
    );
    assert!(org.verify_fresh(&registry, "solo/app:v2").await.is_err());

    // A complete publish afterwards moves everyone on (the orphaned snapshot version is skipped
    // over, not reused).
    org.publish(&registry).await;
    assert_eq!(
        org.verify_fresh(&registry, "solo/app:v2")
            .await
            .unwrap()
            .digest(),
        second.digest
    );
}
