//! containerd 2.3.4 with containerd-tuf-verifier (or, beside the service,
//! containerd-tuf-verifier-client) in its image-verifier bin_dir: Transfer-service pulls
//! (`ctr images pull`) of protected images are allowed only when TUF verifies them.

use std::path::Path;

use tuf_oci_tests::containerd::{Containerd, Version};
use tuf_oci_tests::{
    Org, TeamA, TestRegistry, expiries, serve_verifier, workspace_binary, write_policy,
};

struct Setup {
    registry: TestRegistry,
    org: Org,
    dir: tempfile::TempDir,
}

/// A registry with team-a/app:v1 signed by team-a, team-a/app:v2 unsigned, public/app:v1.
async fn setup() -> Setup {
    let registry = TestRegistry::start();
    let org = TeamA::create(&registry).await.org;
    registry.push_image("public/app", "v1", "public").await;
    Setup {
        registry,
        org,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn containerd(setup: &Setup) -> Containerd {
    let verifiers = setup.dir.path().join("verifiers");
    std::fs::create_dir_all(&verifiers).unwrap();
    std::fs::copy(
        workspace_binary("containerd-tuf-verifier"),
        verifiers.join("containerd-tuf-verifier"),
    )
    .unwrap();
    let policy = write_policy(
        setup.dir.path(),
        &setup.registry,
        &setup.org,
        &["team-a/"],
        &["public/"],
        "",
    );
    Containerd::start(
        Version::V2_3,
        Some(&verifiers),
        &[("CONTAINERD_TUF_POLICY", &policy)],
    )
}

/// Pulls through containerd's Transfer service; Ok(stdout) or Err(stderr).
fn pull(containerd: &Containerd, reference: &str) -> Result<String, String> {
    let out = containerd.ctr(&["images", "pull", "--plain-http", reference]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }
}

fn assert_refused(containerd: &Containerd, reference: &str, reason: &str) {
    let err = pull(containerd, reference).expect_err("pull must be blocked");
    assert!(
        err.contains(reason),
        "reason {reason:?} missing from: {err}"
    );
    assert!(
        !containerd.images().iter().any(|i| i == reference),
        "{reference} must not be recorded"
    );
}

#[tokio::test]
async fn signed_pull_succeeds_and_unsigned_is_blocked() {
    let setup = setup().await;
    let containerd = containerd(&setup);
    let signed = format!("{}/team-a/app:v1", setup.registry.host);
    pull(&containerd, &signed).unwrap_or_else(|e| panic!("{e}\n{}", containerd.log()));
    assert!(containerd.images().contains(&signed));

    let unsigned = format!("{}/team-a/app:v2", setup.registry.host);
    assert_refused(
        &containerd,
        &unsigned,
        "no trusted role signs target team-a/app:v2",
    );

    let public = format!("{}/public/app:v1", setup.registry.host);
    pull(&containerd, &public).unwrap();
    let uncovered = format!("{}/other/app:v1", setup.registry.host);
    setup.registry.push_image("other/app", "v1", "other").await;
    assert_refused(&containerd, &uncovered, "policy default denies it");
}

#[tokio::test]
async fn moved_tag_and_revoked_target_are_blocked() {
    let setup = setup().await;
    let containerd = containerd(&setup);
    let registry = &setup.registry;
    // v3 signed, then its registry tag moved to other content.
    registry.push_image("team-a/app", "v3", "good").await;
    let team = [setup.org.key("team-a").await];
    setup
        .org
        .sign(registry, &registry.image("team-a/app:v3"), "team-a", &team)
        .await;
    // v4 signed, then revoked.
    registry.push_image("team-a/app", "v4", "revoked").await;
    setup
        .org
        .sign(registry, &registry.image("team-a/app:v4"), "team-a", &team)
        .await;
    setup.org.publish(registry).await;
    registry.push_image("team-a/app", "v3", "evil").await;
    setup
        .org
        .editor(registry)
        .await
        .remove("team-a/app:v4", "team-a", &team, expiries().targets)
        .await
        .unwrap();
    setup.org.publish(registry).await;

    assert_refused(
        &containerd,
        &format!("{}/team-a/app:v3", registry.host),
        ": digest is sha256:",
    );
    assert_refused(
        &containerd,
        &format!("{}/team-a/app:v4", registry.host),
        "no trusted role signs target team-a/app:v4",
    );
}

#[tokio::test]
async fn expired_timestamp_blocks_pulls() {
    let setup = setup().await;
    let mut expires = expiries();
    expires.timestamp = tuf_oci_tests::past();
    setup.org.publish_with(&setup.registry, &expires).await;
    let containerd = containerd(&setup);
    assert_refused(
        &containerd,
        &format!("{}/team-a/app:v1", setup.registry.host),
        "timestamp metadata expired",
    );
    assert!(Path::new(&containerd.ctr).exists());
}

#[tokio::test]
async fn the_client_in_bin_dir_answers_through_the_service_and_without_it() {
    let setup = setup().await;
    let dir = setup.dir.path().join("client");
    let verifiers = dir.join("verifiers");
    std::fs::create_dir_all(&verifiers).unwrap();
    std::fs::copy(
        workspace_binary("containerd-tuf-verifier-client"),
        verifiers.join("containerd-tuf-verifier-client"),
    )
    .unwrap();
    let socket = dir.join("verifier.sock");
    let policy = write_policy(
        &dir,
        &setup.registry,
        &setup.org,
        &["team-a/"],
        &[],
        &format!("socket = \"{}\"", socket.display()),
    );
    let signed = format!("{}/team-a/app:v1", setup.registry.host);
    let unsigned = format!("{}/team-a/app:v2", setup.registry.host);
    let pulls = |full: &Path| {
        let containerd = Containerd::start(
            Version::V2_3,
            Some(&verifiers),
            &[
                ("CONTAINERD_TUF_POLICY", &policy),
                ("CONTAINERD_TUF_VERIFIER", full),
            ],
        );
        pull(&containerd, &signed).unwrap_or_else(|e| panic!("{e}\n{}", containerd.log()));
        assert_refused(
            &containerd,
            &unsigned,
            "no trusted role signs target team-a/app:v2",
        );
    };

    // With the service, and no full executable to fall back on.
    let service = serve_verifier(&policy, &socket).await;
    pulls(&dir.join("missing-verifier"));
    drop(service);

    // Without the service (its socket left behind), through the full executable.
    pulls(&workspace_binary("containerd-tuf-verifier"));
}
