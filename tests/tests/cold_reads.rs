//! What a new client reads, and when: the snapshot and top-level targets heads beside the
//! timestamp, small files from the manifests that embed them rather than as blobs, and a head
//! only when it is the version signed metadata names. A proxy in front of the registry records
//! every request.

use std::time::Duration;

use tough::schema::{Root, Signed, Snapshot, Timestamp};
use tuf_oci::{Error, ImageRef, Registry, RegistryConfig, Repository, VerifiedTarget, Verifier};
use tuf_oci_tests::craft;
use tuf_oci_tests::hostile::{HostileRegistry, Rule};
use tuf_oci_tests::{Org, TeamA, TestRegistry, solo};

/// Resolves `reference` as a new client of `org` told where the metadata lives (the design's
/// bootstrap), through a proxy in front of `registry` applying `rules`, each request given
/// 2 s. Returns the outcome and the requests the proxy saw, sorted.
async fn resolve_through(
    registry: &TestRegistry,
    org: &Org,
    rules: Vec<Rule>,
    reference: &str,
) -> (tuf_oci::Result<VerifiedTarget>, Vec<String>) {
    let proxy = HostileRegistry::start(&registry.host, rules).await;
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![proxy.host.clone()],
        timeout: Duration::from_secs(2),
    })
    .expect("registry client");
    let metadata = Repository {
        registry: proxy.host.clone(),
        path: org.metadata.path.clone(),
    };
    let verifier = Verifier::new(client, org.trust(Some(metadata), None)).unwrap();
    let image = ImageRef::parse(&format!("{}/{reference}", proxy.host)).unwrap();
    let resolved = verifier.resolve(&image).await;
    let mut seen = proxy.seen.lock().unwrap().clone();
    seen.sort();
    (resolved, seen)
}

#[tokio::test]
async fn heads_are_asked_for_beside_the_timestamp() {
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    // The timestamp never comes, so whatever else was asked for did not wait for it.
    let stall = Rule::Stall {
        path_suffix: "/manifests/timestamp.json".into(),
    };
    let (resolved, seen) = resolve_through(&registry, &org, vec![stall], "solo/app:v1").await;
    let err = resolved.unwrap_err();
    assert!(
        matches!(err, Error::Registry { ref message, .. } if message.contains("timed out")),
        "{err}"
    );
    for head in ["snapshot.json", "targets.json"] {
        let path = format!("/v2/solo/app/manifests/{head}");
        assert!(seen.contains(&path), "{seen:#?}");
    }
}

#[tokio::test]
async fn a_name_top_level_targets_signs_takes_one_request_per_file() {
    let registry = TestRegistry::start();
    let (org, signed) = solo(&registry, true).await;
    let (resolved, seen) = resolve_through(&registry, &org, vec![], "solo/app:v1").await;
    let verified = resolved.unwrap();
    assert_eq!(verified.digest(), signed.digest);
    // Root 2 (not found), then the timestamp and both heads, every one embedded: no blobs.
    let expected = [
        "2.root.json",
        "snapshot.json",
        "targets.json",
        "timestamp.json",
    ]
    .map(|tag| format!("/v2/solo/app/manifests/{tag}"));
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn small_delegated_roles_are_read_from_their_manifests() {
    let registry = TestRegistry::start();
    let TeamA { org, signed, .. } = TeamA::create(&registry).await;
    let (resolved, seen) = resolve_through(&registry, &org, vec![], "team-a/app:v1").await;
    let verified = resolved.unwrap();
    assert_eq!(verified.digest(), signed.digest);
    assert!(!seen.iter().any(|p| p.contains("/blobs/")), "{seen:#?}");
    // The version snapshot names, by its tag in the metadata repository.
    assert!(
        seen.iter()
            .any(|p| p.starts_with("/v2/org/tuf/manifests/") && p.ends_with(".team-a.json")),
        "{seen:#?}"
    );
    assert_eq!(seen.len(), 5, "{seen:#?}");
}

#[tokio::test]
async fn heads_not_named_by_signed_metadata_are_not_used() {
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let old_snapshot = registry.get_file(&org.metadata, "snapshot.json").await;
    let old_targets = registry.get_file(&org.metadata, "targets.json").await;
    let two = registry.push_image("solo/app", "v2", "two").await;
    org.sign_in_targets(&registry, "solo/app:v2").await;
    org.publish(&registry).await;
    // Both heads go back to the first state, which does not sign v2.
    registry
        .put_file(&org.metadata, "snapshot.json", &old_snapshot)
        .await;
    registry
        .put_file(&org.metadata, "targets.json", &old_targets)
        .await;
    let (resolved, seen) = resolve_through(&registry, &org, vec![], "solo/app:v2").await;
    let verified = resolved.unwrap();
    assert_eq!(verified.digest(), two.digest);
    // Read again, as the versions the timestamp and snapshot name.
    let timestamp: Signed<Timestamp> =
        craft::parse(&registry.get_file(&org.metadata, "timestamp.json").await);
    let snapshot = format!(
        "{}.snapshot.json",
        timestamp.signed.meta["snapshot.json"].version
    );
    let named: Signed<Snapshot> = craft::parse(&registry.get_file(&org.metadata, &snapshot).await);
    let targets = format!("{}.targets.json", named.signed.meta["targets.json"].version);
    for file in [snapshot, targets] {
        let path = format!("/v2/solo/app/manifests/{file}");
        assert!(seen.contains(&path), "{seen:#?}");
    }
}

#[tokio::test]
async fn a_stalled_head_costs_its_timeout_not_the_verification() {
    let registry = TestRegistry::start();
    let (org, signed) = solo(&registry, true).await;
    // A head is only read to save a download: one that never comes is given up at the request
    // deadline, and the version the timestamp names is read instead.
    let stall = Rule::Stall {
        path_suffix: "/manifests/snapshot.json".into(),
    };
    let (resolved, seen) = resolve_through(&registry, &org, vec![stall], "solo/app:v1").await;
    let verified = resolved.unwrap();
    assert_eq!(verified.digest(), signed.digest);
    assert!(
        seen.iter()
            .any(|p| p.starts_with("/v2/solo/app/manifests/") && p.ends_with(".snapshot.json")),
        "{seen:#?}"
    );
}

/// The tag of the snapshot version the published timestamp of `org` names, and its bytes.
async fn named_snapshot(registry: &TestRegistry, org: &Org) -> (String, Vec<u8>) {
    let timestamp: Signed<Timestamp> =
        craft::parse(&registry.get_file(&org.metadata, "timestamp.json").await);
    let tag = format!(
        "{}.snapshot.json",
        timestamp.signed.meta["snapshot.json"].version
    );
    let bytes = registry.get_file(&org.metadata, &tag).await;
    (tag, bytes)
}

#[tokio::test]
async fn a_head_of_the_named_version_with_other_bytes_is_not_used() {
    let registry = TestRegistry::start();
    let (org, signed) = solo(&registry, true).await;
    // The snapshot key re-signs the named version expiring a second later: same version, same
    // length, valid signature, other bytes. Only the hash the timestamp names tells them apart.
    let (tag, named) = named_snapshot(&registry, &org).await;
    let mut snapshot: Signed<Snapshot> = craft::parse(&named);
    snapshot.signed.expires = snapshot
        .signed
        .expires
        .checked_add(jiff::SignedDuration::from_secs(1))
        .unwrap();
    let root: Signed<Root> = craft::parse(&org.root);
    let keys = [org.key("snapshot").await];
    let other = craft::bytes(&craft::sign_top(snapshot.signed, &root.signed, &keys).await);
    assert_eq!(other.len(), named.len());
    registry
        .put_file(&org.metadata, "snapshot.json", &other)
        .await;
    let (resolved, seen) = resolve_through(&registry, &org, vec![], "solo/app:v1").await;
    let verified = resolved.unwrap();
    assert_eq!(verified.digest(), signed.digest);
    assert!(
        seen.contains(&format!("/v2/solo/app/manifests/{tag}")),
        "{seen:#?}"
    );
}

#[tokio::test]
async fn a_moved_tag_of_a_small_file_sends_the_client_to_the_blob() {
    let registry = TestRegistry::start();
    let TeamA { org, signed, .. } = TeamA::create(&registry).await;
    // The tag of the team-a version snapshot names now embeds other bytes of the same length
    // (the same JSON, two whitespace bytes swapped): they do not hash to what snapshot names,
    // so the blob is read instead.
    let (_, snapshot) = named_snapshot(&registry, &org).await;
    let snapshot: Signed<Snapshot> = craft::parse(&snapshot);
    let file = format!(
        "{}.team-a.json",
        snapshot.signed.meta["team-a.json"].version
    );
    let mut moved = registry.get_file(&org.metadata, &file).await;
    assert_eq!(&moved[..3], b"{\n ", "pretty-printed JSON");
    moved.swap(1, 2);
    registry.put_file(&org.metadata, &file, &moved).await;
    let (resolved, seen) = resolve_through(&registry, &org, vec![], "team-a/app:v1").await;
    let verified = resolved.unwrap();
    assert_eq!(verified.digest(), signed.digest);
    assert!(
        seen.contains(&format!("/v2/org/tuf/manifests/{file}")),
        "{seen:#?}"
    );
    assert!(
        seen.iter().any(|p| p.starts_with("/v2/org/tuf/blobs/")),
        "{seen:#?}"
    );
}
