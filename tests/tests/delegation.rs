//! Delegations across repositories: two levels, thresholds, path restrictions, terminating
//! roles, and a lazy search that fetches only the roles on the target's path.

use std::collections::HashMap;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{DelegatedRole, Delegations, PathPattern, PathSet, Signature, Signed, Targets};
use tuf_oci::Error;
use tuf_oci::keys::SigningKey;
use tuf_oci_tests::craft::{self, parse};
use tuf_oci_tests::hostile::HostileRegistry;
use tuf_oci_tests::{Org, TeamA, TestRegistry, delegation, expiries};

async fn with_pointer(registry: &TestRegistry, path: &str) {
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo(path), "/org/tuf")
        .await
        .unwrap();
}

/// An organisation at `org/tuf` whose top-level targets delegate `team-a/*` to `parent`, which
/// delegates `child_paths` to `child`, published; with the two roles' keys (named as the roles).
async fn delegated_twice(
    registry: &TestRegistry,
    parent: &str,
    child: &str,
    child_paths: &[&str],
) -> (Org, SigningKey, SigningKey) {
    let org = Org::init(registry, "org/tuf").await;
    let (parent_key, child_key) = (org.key(parent).await, org.key(child).await);
    org.delegate_from_targets(
        registry,
        &delegation(parent, &["team-a/*"], &[&parent_key], 1),
    )
    .await;
    org.publish(registry).await;
    org.delegate(
        registry,
        parent,
        std::slice::from_ref(&parent_key),
        &delegation(child, child_paths, &[&child_key], 1),
    )
    .await;
    org.publish(registry).await;
    (org, parent_key, child_key)
}

#[tokio::test]
async fn two_level_delegation() {
    let registry = TestRegistry::start();
    let (org, _, app) = delegated_twice(&registry, "team-a", "team-a-app", &["team-a/app:*"]).await;
    let pushed = registry.push_image("team-a/app", "v1", "app").await;
    with_pointer(&registry, "team-a/app").await;
    org.sign(
        &registry,
        &registry.image("team-a/app:v1"),
        "team-a-app",
        &[app],
    )
    .await;
    org.publish(&registry).await;

    let verified = org.verify_fresh(&registry, "team-a/app:v1").await.unwrap();
    assert_eq!(verified.role(), "team-a-app");
    assert_eq!(verified.digest(), pushed.digest);
}

#[tokio::test]
async fn threshold_two_of_three() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let (k1, k2, k3) = (
        org.key("k1").await,
        org.key("k2").await,
        org.key("k3").await,
    );
    // A key listed twice counts once: a threshold of two over it could never be met.
    let editor = org.editor(&registry).await;
    let err = editor
        .delegate(
            "targets",
            &delegation("release", &["team-a/*"], &[&k1, &k1], 2),
            &org.targets_key().await,
            expiries().targets,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Usage(ref m) if m.contains("release: threshold 2 needs at least that many distinct keys, got 1")),
        "{err}"
    );
    org.delegate_from_targets(
        &registry,
        &delegation("release", &["team-a/*"], &[&k1, &k2, &k3], 2),
    )
    .await;
    org.publish(&registry).await;
    registry.push_image("team-a/app", "v1", "app").await;
    with_pointer(&registry, "team-a/app").await;

    // One key is not enough to sign...
    let editor = org.editor(&registry).await;
    let err = editor
        .sign(
            &[registry.image("team-a/app:v1")],
            "release",
            &[org.key("k1").await],
            expiries().targets,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Sign { ref role, .. } if role == "release"),
        "{err}"
    );
    // ...two are.
    org.sign(
        &registry,
        &registry.image("team-a/app:v1"),
        "release",
        &[k1, k3],
    )
    .await;
    org.publish(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    let verifier = org.verifier(&registry, cache.path());
    verifier
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap();

    // Metadata carrying one valid signature (published by someone holding only the online
    // keys) is refused by clients.
    let head: Signed<Targets> = parse(&registry.get_file(&org.metadata, "release.json").await);
    let mut weakened = head.clone();
    weakened.signed.version = weakened.signed.version.saturating_add(1);
    let top: Signed<Targets> = parse(&registry.get_file(&org.metadata, "targets.json").await);
    let delegations = top.signed.delegations.unwrap();
    let mut resigned = craft::sign_delegated(
        "release",
        weakened.signed,
        &delegations,
        &[org.key("k1").await, org.key("k2").await],
    )
    .await;
    let dropped = resigned.signatures[1].keyid.clone();
    resigned.signatures.truncate(1);
    // A duplicated signature does not count twice either.
    let mut duplicated = resigned.clone();
    duplicated.signatures.push(duplicated.signatures[0].clone());
    // Nor does a signature by a key of another type (ECDSA P-256) filed under the keyid of
    // the trusted key whose signature was dropped.
    let mut other_type = resigned.clone();
    other_type
        .signatures
        .push(ecdsa_signature_under(&other_type, dropped).await);
    for forged in [resigned, duplicated, other_type] {
        craft::publish_raw(&registry, &org, &[("release", craft::bytes(&forged))]).await;
        let err = verifier
            .verify(&registry.image("team-a/app:v1"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Signature { ref role, .. } if role == "release"),
            "{err}"
        );
    }
}

/// A signature over `role` by a fresh ECDSA P-256 key, filed under `keyid`.
async fn ecdsa_signature_under(role: &Signed<Targets>, keyid: Decoded<Hex>) -> Signature {
    let dir = tempfile::tempdir().unwrap();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
        .unwrap();
    std::fs::write(dir.path().join("ecdsa.key"), pkcs8.as_ref()).unwrap();
    let key = SigningKey::load(&dir.path().join("ecdsa")).await.unwrap();
    let holder = Delegations {
        keys: HashMap::from([(key.public().key_id().unwrap(), key.public().clone())]),
        roles: vec![DelegatedRole {
            name: "release".into(),
            keyids: vec![key.public().key_id().unwrap()],
            threshold: 1.try_into().unwrap(),
            paths: PathSet::Paths(vec![PathPattern::new("team-a/*").unwrap()]),
            terminating: false,
            targets: None,
        }],
    };
    let mut signed = craft::sign_delegated("release", role.signed.clone(), &holder, &[key]).await;
    let mut signature = signed.signatures.remove(0);
    assert_ne!(signature.keyid, keyid);
    signature.keyid = keyid;
    signature
}

#[tokio::test]
async fn role_signing_outside_its_paths_is_ignored() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let team_a = org.key("team-a").await;
    org.delegate_from_targets(
        &registry,
        &delegation("team-a", &["team-a/*"], &[&team_a], 1),
    )
    .await;
    org.publish(&registry).await;
    let victim = registry.push_image("team-b/app", "v1", "not yours").await;
    with_pointer(&registry, "team-b/app").await;

    // The editor refuses to write it...
    let err = org
        .editor(&registry)
        .await
        .sign(
            &[registry.image("team-b/app:v1")],
            "team-a",
            &[org.key("team-a").await],
            expiries().targets,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Delegation { .. }), "{err}");
    // ...and metadata written by hand is not believed for names outside team-a/*.
    let mut targets = Targets::new("1.0.0".into(), 1.try_into().unwrap(), expiries().targets);
    let descriptor: tuf_oci::layout::Entry = victim.clone();
    let descriptor = serde_json::from_value(serde_json::to_value(descriptor).unwrap()).unwrap();
    targets.targets.insert(
        tough::TargetName::new("team-b/app:v1").unwrap(),
        tuf_oci::descriptor::target_from_descriptor(&descriptor).unwrap(),
    );
    let top: Signed<Targets> = parse(&registry.get_file(&org.metadata, "targets.json").await);
    let signed = craft::sign_delegated(
        "team-a",
        targets,
        &top.signed.delegations.unwrap(),
        &[team_a],
    )
    .await;
    craft::publish_raw(&registry, &org, &[("team-a", craft::bytes(&signed))]).await;

    let cache = tempfile::tempdir().unwrap();
    let verifier = org.verifier(&registry, cache.path());
    let err = verifier
        .verify(&registry.image("team-b/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TargetNotSigned { ref name } if name == "team-b/app:v1"),
        "{err}"
    );
    let err = verifier
        .verify(&registry.image(&format!("team-b/app@{}", victim.digest)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestNotSigned { .. }), "{err}");

    // Nor is it listed as signed.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.json"), &org.root).unwrap();
    let listed = std::process::Command::new(tuf_oci_tests::cli_binary())
        .args(["--insecure-registry", &registry.host, "--root"])
        .arg(dir.path().join("root.json"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args([
            "--metadata-repo",
            &format!("{}/org/tuf", registry.host),
            "list",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&listed.stdout),
        String::from_utf8_lossy(&listed.stderr),
    );
    assert!(listed.status.success(), "{stderr}");
    assert!(!stdout.contains("team-b/app:v1"), "{stdout}");
    assert!(
        stderr.contains("team-b/app:v1 in team-a not listed"),
        "{stderr}"
    );
}

/// A pull by digest believes only names `<repository>:<tag>`. A role whose patterns cover
/// other repositories' names (`team-*/base:*`, `team-a/*`), and whose glob lets `*` span `/`
/// and `:`, cannot sign this repository's digest under a name that only starts like one of
/// its tags: `team-b/app:x/base:1` (the pattern `team-*/base:*`), or one that resolves into
/// its own paths (`team-b/app:x/../../team-a/y` is `team-a/y`).
#[tokio::test]
async fn names_that_are_no_tag_of_the_repository_sign_nothing_in_it() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let base = org.key("base").await;
    org.delegate_from_targets(
        &registry,
        &delegation("base", &["team-*/base:*", "team-a/*"], &[&base], 1),
    )
    .await;
    org.publish(&registry).await;
    let victim = registry.push_image("team-b/app", "v1", "not yours").await;
    with_pointer(&registry, "team-b/app").await;

    let descriptor: tuf_oci::layout::Entry = victim.clone();
    let descriptor = serde_json::from_value(serde_json::to_value(descriptor).unwrap()).unwrap();
    let top: Signed<Targets> = parse(&registry.get_file(&org.metadata, "targets.json").await);
    for (version, name) in [
        (1, "team-b/app:x/base:1"),
        (2, "team-b/app:x/../../team-a/y"),
    ] {
        let mut targets = Targets::new(
            "1.0.0".into(),
            version.try_into().unwrap(),
            expiries().targets,
        );
        targets.targets.insert(
            tough::TargetName::new(name).unwrap(),
            tuf_oci::descriptor::target_from_descriptor(&descriptor).unwrap(),
        );
        let signed = craft::sign_delegated(
            "base",
            targets,
            top.signed.delegations.as_ref().unwrap(),
            std::slice::from_ref(&base),
        )
        .await;
        craft::publish_raw(&registry, &org, &[("base", craft::bytes(&signed))]).await;

        let cache = tempfile::tempdir().unwrap();
        let err = org
            .verifier(&registry, cache.path())
            .verify(&registry.image(&format!("team-b/app@{}", victim.digest)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::DigestNotSigned { .. }),
            "{name} signed team-b/app: {err}"
        );
    }
}

#[tokio::test]
async fn terminating_delegation_hides_later_roles() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let (first, second) = (org.key("first").await, org.key("second").await);
    let targets_key = org.targets_key().await;
    org.delegate(
        &registry,
        "targets",
        &targets_key,
        &delegation("first", &["team-a/*"], &[&first], 1),
    )
    .await;
    org.delegate(
        &registry,
        "targets",
        &targets_key,
        &delegation("second", &["team-a/*"], &[&second], 1),
    )
    .await;
    org.publish(&registry).await;
    registry.push_image("team-a/app", "v1", "app").await;
    with_pointer(&registry, "team-a/app").await;
    registry.push_image("team-a/other", "v1", "other").await;
    with_pointer(&registry, "team-a/other").await;
    org.sign(
        &registry,
        &registry.image("team-a/other:v1"),
        "first",
        std::slice::from_ref(&first),
    )
    .await;
    org.sign(
        &registry,
        &registry.image("team-a/app:v1"),
        "second",
        std::slice::from_ref(&second),
    )
    .await;
    // `first` becomes terminating where it stands, after `second` signed.
    let mut terminating = delegation("first", &["team-a/*"], &[&first], 1);
    terminating.terminating = true;
    org.delegate(&registry, "targets", &targets_key, &terminating)
        .await;
    org.publish(&registry).await;
    // A signer is told its role is hidden, rather than signing what no pull finds.
    let err = org
        .editor(&registry)
        .await
        .sign(
            &[registry.image("team-a/app:v1")],
            "second",
            std::slice::from_ref(&second),
            expiries().targets,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Delegation { ref target, .. } if target == "team-a/app:v1"),
        "{err}"
    );

    let cache = tempfile::tempdir().unwrap();
    let verifier = org.verifier(&registry, cache.path());
    let found = verifier
        .verify(&registry.image("team-a/other:v1"))
        .await
        .unwrap();
    assert_eq!(found.role(), "first");
    // `second` signs team-a/app:v1, but the search stops at terminating `first`.
    let err = verifier
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TargetNotSigned { ref name } if name == "team-a/app:v1"),
        "{err}"
    );

    // `first` rotates its key as the guide says (delegated again with both keys, signs with
    // the new one, delegated again with the new one alone): it keeps its place before
    // `second`, so the search still stops at it.
    let rotated = org.key("first-rotated").await;
    for keys in [vec![&first, &rotated], vec![&rotated]] {
        let mut again = delegation("first", &["team-a/*"], &keys, 1);
        again.terminating = true;
        org.delegate(&registry, "targets", &targets_key, &again)
            .await;
        if keys.len() == 2 {
            org.sign(
                &registry,
                &registry.image("team-a/other:v1"),
                "first",
                std::slice::from_ref(&rotated),
            )
            .await;
        }
    }
    org.publish(&registry).await;
    let found = verifier
        .verify(&registry.image("team-a/other:v1"))
        .await
        .unwrap();
    assert_eq!(found.role(), "first");
    let err = verifier
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TargetNotSigned { ref name } if name == "team-a/app:v1"),
        "after the rotation: {err}"
    );

    // What `second` signed behind `first` stays revocable: revoked, it does not come back
    // once `first` is withdrawn (and what `first` alone signed goes with it).
    let editor = org.editor(&registry).await;
    editor
        .remove("team-a/app:v1", "second", &[second], expiries().targets)
        .await
        .unwrap();
    editor
        .undelegate("targets", "first", &targets_key, expiries().targets)
        .await
        .unwrap();
    org.publish(&registry).await;
    for image in ["team-a/app:v1", "team-a/other:v1"] {
        let err = verifier.verify(&registry.image(image)).await.unwrap_err();
        assert!(
            matches!(err, Error::TargetNotSigned { ref name } if name == image),
            "{image}: {err}"
        );
    }
}

#[tokio::test]
async fn search_fetches_only_roles_on_the_path() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let targets_key = org.targets_key().await;
    let mut keys = HashMap::new();
    for team in 0..5 {
        let name = format!("team-{team}");
        let key = org.key(&name).await;
        org.delegate(
            &registry,
            "targets",
            &targets_key,
            &delegation(&name, &[&format!("{name}/*")], &[&key], 1),
        )
        .await;
        keys.insert(name, key);
    }
    org.publish(&registry).await;
    for team in 0..5 {
        let name = format!("team-{team}");
        let path = format!("{name}/app");
        registry.push_image(&path, "v1", &name).await;
        with_pointer(&registry, &path).await;
        org.sign(
            &registry,
            &registry.image(&format!("{path}:v1")),
            &name,
            &[org.key(&name).await],
        )
        .await;
    }
    org.publish(&registry).await;

    let cache = tempfile::tempdir().unwrap();
    org.verifier(&registry, cache.path())
        .verify(&registry.image("team-3/app:v1"))
        .await
        .unwrap();
    let mut cached: Vec<String> = std::fs::read_dir(
        cache
            .path()
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap()
    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    .filter(|name| name.ends_with(".json"))
    .collect();
    cached.sort();
    assert_eq!(
        cached,
        [
            "snapshot.json",
            "targets.json",
            "team-3.json",
            "timestamp.json"
        ]
    );
}

#[tokio::test]
async fn delegation_cycle_ends_the_search() {
    let registry = TestRegistry::start();
    let (org, a, b) = delegated_twice(&registry, "a", "b", &["team-a/*"]).await;
    // b delegates back to a: targets -> a -> b -> a -> ...
    org.delegate(
        &registry,
        "b",
        std::slice::from_ref(&b),
        &delegation("a", &["team-a/*"], &[&a], 1),
    )
    .await;
    registry.push_image("team-a/app", "v1", "app").await;
    with_pointer(&registry, "team-a/app").await;
    org.sign(&registry, &registry.image("team-a/app:v1"), "b", &[b])
        .await;
    org.publish(&registry).await;

    let cache = tempfile::tempdir().unwrap();
    let verifier = org.verifier(&registry, cache.path());
    let found = verifier
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap();
    assert_eq!(found.role(), "b");
    // A name nobody signs walks the cycle once and ends, by tag and by digest.
    registry.push_image("team-a/app", "v2", "unsigned").await;
    let err = verifier
        .resolve(&registry.image("team-a/app:v2"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TargetNotSigned { ref name } if name == "team-a/app:v2"),
        "{err}"
    );
    let unsigned = format!("team-a/app@sha256:{}", "0".repeat(64));
    let err = verifier
        .resolve(&registry.image(&unsigned))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestNotSigned { .. }), "{err}");

    // The number of roles a search may visit is bounded too (TUF 5.6.7.1).
    let mut trust = org.trust(None, None);
    trust.limits.max_delegations = 1;
    let bounded = tuf_oci::Verifier::new(registry.client.clone(), trust).unwrap();
    let err = bounded
        .resolve(&registry.image("team-a/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Delegation { ref reason, .. } if reason.contains("more than 1")),
        "{err}"
    );
}

/// Signing several images into a role, every name must lead to it from top-level targets:
/// a role delegated every path (`*`) under team-a, given team-b's image after team-a's, is
/// refused naming it; clients searching for team-b's name never reach the role.
#[tokio::test]
async fn every_image_signed_at_once_must_lead_to_the_role() {
    let registry = TestRegistry::start();
    let (org, _, ci) = delegated_twice(&registry, "team-a", "team-a-ci", &["*"]).await;
    for (path, content) in [("team-a/x", "a"), ("team-b/y", "b")] {
        registry.push_image(path, "v1", content).await;
        with_pointer(&registry, path).await;
    }
    let images = [registry.image("team-a/x:v1"), registry.image("team-b/y:v1")];
    let err = org
        .editor(&registry)
        .await
        .sign(
            &images,
            "team-a-ci",
            std::slice::from_ref(&ci),
            expiries().targets,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Delegation { ref target, .. } if target == "team-b/y:v1"),
        "{err}"
    );
    org.sign(&registry, &images[0], "team-a-ci", &[ci]).await;
}

/// One role name delegated by two parents with two sets of keys would leave one of them unable
/// to read the role (snapshot and tags name roles by name alone), and every writer's walk of
/// the tree failing on it: the second delegation is refused, whether or not the role has
/// signed yet. The same keys and threshold are one role reached twice, as in a cycle.
#[tokio::test]
async fn a_role_name_delegated_elsewhere_with_other_keys_is_refused() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let (a, b) = (org.key("team-a").await, org.key("team-b").await);
    let (ci_a, ci_b) = (org.key("ci-a").await, org.key("ci-b").await);
    org.delegate_from_targets(&registry, &delegation("team-a", &["team-a/*"], &[&a], 1))
        .await;
    org.delegate_from_targets(&registry, &delegation("team-b", &["team-b/*"], &[&b], 1))
        .await;
    org.publish(&registry).await;
    org.delegate(
        &registry,
        "team-a",
        std::slice::from_ref(&a),
        &delegation("ci", &["team-a/*"], &[&ci_a], 1),
    )
    .await;
    org.publish(&registry).await;
    let editor = org.editor(&registry).await;
    for keys in [vec![&ci_b], vec![&ci_a, &ci_b]] {
        let err = editor
            .delegate(
                "team-b",
                &delegation("ci", &["team-b/*"], &keys, 1),
                std::slice::from_ref(&b),
                expiries().targets,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Delegation { ref target, ref reason } if target == "ci" && reason.contains("team-a delegates")),
            "{err}"
        );
    }
    let delegate = |parent: &'static str, parent_key: &SigningKey, keys: &[&SigningKey]| {
        let (parent_key, delegated) = (parent_key.clone(), delegation("ci", &["team-*"], keys, 1));
        let registry = &registry;
        let org = &org;
        async move {
            org.editor(registry)
                .await
                .delegate(parent, &delegated, &[parent_key], expiries().targets)
                .await
        }
    };
    // Its own parent may change its keys; then the same keys, in any order, are one role
    // reached from both parents; and its parent may no longer change them alone.
    delegate("team-a", &a, &[&ci_a, &ci_b]).await.unwrap();
    delegate("team-b", &b, &[&ci_b, &ci_a]).await.unwrap();
    let err = delegate("team-a", &a, &[&ci_a]).await.unwrap_err();
    assert!(
        matches!(err, Error::Delegation { ref reason, .. } if reason.contains("team-b delegates")),
        "{err}"
    );
    org.publish(&registry).await;
    // Withdrawn by one parent, the role is still delegated by the other, which is said: its
    // keys stay trusted there.
    let withdrawn = org
        .editor(&registry)
        .await
        .undelegate("team-a", "ci", std::slice::from_ref(&a), expiries().targets)
        .await
        .unwrap();
    assert_eq!(withdrawn.still_delegated_by.unwrap(), ["team-b"]);
}

/// A role two roles delegate changes keys as the guide says: withdrawn from one parent,
/// rotated at the other (both keys, a version signed with the new, the new alone), then
/// delegated again from the first with the new key; its image verifies throughout the end
/// state, and the old key alone is refused a delegation anywhere.
#[tokio::test]
async fn a_role_two_roles_delegate_changes_keys_through_one_of_them() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let (a, b) = (org.key("team-a").await, org.key("team-b").await);
    let (old, new) = (org.key("ci-old").await, org.key("ci-new").await);
    for (parent, key) in [("team-a", &a), ("team-b", &b)] {
        org.delegate_from_targets(&registry, &delegation(parent, &["team-*"], &[key], 1))
            .await;
    }
    org.publish(&registry).await;
    let ci = |keys: &[&SigningKey]| delegation("ci", &["team-*"], keys, 1);
    for (parent, key) in [("team-a", &a), ("team-b", &b)] {
        org.delegate(&registry, parent, std::slice::from_ref(key), &ci(&[&old]))
            .await;
    }
    registry.push_image("team-x/app", "v1", "ci").await;
    with_pointer(&registry, "team-x/app").await;
    let image = registry.image("team-x/app:v1");
    org.sign(&registry, &image, "ci", std::slice::from_ref(&old))
        .await;
    org.publish(&registry).await;

    let editor = org.editor(&registry).await;
    let withdrawn = editor
        .undelegate("team-b", "ci", std::slice::from_ref(&b), expiries().targets)
        .await
        .unwrap();
    assert_eq!(withdrawn.still_delegated_by.unwrap(), ["team-a"]);
    org.delegate(
        &registry,
        "team-a",
        std::slice::from_ref(&a),
        &ci(&[&old, &new]),
    )
    .await;
    org.sign(&registry, &image, "ci", std::slice::from_ref(&new))
        .await;
    org.delegate(&registry, "team-a", std::slice::from_ref(&a), &ci(&[&new]))
        .await;
    org.delegate(&registry, "team-b", std::slice::from_ref(&b), &ci(&[&new]))
        .await;
    org.publish(&registry).await;
    let verified = org.verify_fresh(&registry, "team-x/app:v1").await.unwrap();
    assert_eq!(verified.role(), "ci");
    let err = org
        .editor(&registry)
        .await
        .delegate("team-b", &ci(&[&old]), &[b], expiries().targets)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Delegation { .. }), "{err}");
}

/// A pull by digest searches roles in the order a pull by tag does and stops at the first
/// that signs the digest: a broken role (delegated, never published) does not fail it, after
/// the signing one or before it on another tag's path (`dev`, for `dev-*` tags). The roles it
/// may visit are bounded before they are fetched.
#[tokio::test]
async fn a_pull_by_digest_stops_at_the_first_role_signing_it() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let targets_key = org.targets_key().await;
    let (dev, first, later) = (
        org.key("dev").await,
        org.key("first").await,
        org.key("later").await,
    );
    for (name, paths, key) in [
        ("dev", "team-a/app:dev-*", &dev),
        ("first", "team-a/*", &first),
        ("later", "team-a/*", &later),
    ] {
        org.delegate(
            &registry,
            "targets",
            &targets_key,
            &delegation(name, &[paths], &[key], 1),
        )
        .await;
    }
    let signed = registry.push_image("team-a/app", "v1", "app").await;
    with_pointer(&registry, "team-a/app").await;
    org.sign(
        &registry,
        &registry.image("team-a/app:v1"),
        "first",
        std::slice::from_ref(&first),
    )
    .await;
    org.publish(&registry).await;

    let by_digest = registry.image(&format!("team-a/app@{}", signed.digest));
    let cache = tempfile::tempdir().unwrap();
    let found = org
        .verifier(&registry, cache.path())
        .resolve(&by_digest)
        .await
        .unwrap();
    assert_eq!((found.name(), found.role()), ("team-a/app:v1", "first"));

    // Past the bound, the search ends before fetching the role that would pass it.
    registry.push_image("team-a/app", "v2", "unsigned").await;
    let unsigned = registry.image(&format!("team-a/app@sha256:{}", "0".repeat(64)));
    let mut trust = org.trust(None, None);
    trust.limits.max_delegations = 1;
    let err = tuf_oci::Verifier::new(registry.client.clone(), trust)
        .unwrap()
        .resolve(&unsigned)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Delegation { ref reason, .. } if reason.contains("more than 1")),
        "{err}"
    );
}

/// A role that cannot be had (expired) lies on the path of 40 candidate names of a pull by
/// digest, signed by a later role that also signs the digest under a name outside it: each
/// candidate's confirmation meets the broken role, which is fetched once, and the name outside
/// it verifies.
#[tokio::test]
async fn a_pull_by_digest_fetches_a_role_that_cannot_be_had_once() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let targets_key = org.targets_key().await;
    let (first, later) = (org.key("first").await, org.key("later").await);
    for (name, paths, key) in [
        ("first", "team-a/app:t*", &first),
        ("later", "team-a/*", &later),
    ] {
        let delegated = delegation(name, &[paths], &[key], 1);
        org.delegate(&registry, "targets", &targets_key, &delegated)
            .await;
    }
    let mut tags = Vec::new();
    let mut digest = String::new();
    for tag in (0..40).map(|n| format!("t{n}")).chain(["z".to_string()]) {
        digest = registry.push_image("team-a/app", &tag, "app").await.digest;
        tags.push(registry.image(&format!("team-a/app:{tag}")));
    }
    with_pointer(&registry, "team-a/app").await;
    let editor = org.editor(&registry).await;
    editor
        .sign(&tags[..1], "first", &[first], tuf_oci_tests::past())
        .await
        .unwrap();
    editor
        .sign(&tags, "later", &[later], expiries().targets)
        .await
        .unwrap();
    org.publish(&registry).await;

    let proxy = HostileRegistry::start(&registry.host, vec![]).await;
    let client = tuf_oci::Registry::new(&tuf_oci::RegistryConfig {
        insecure_hosts: vec![proxy.host.clone()],
        ..Default::default()
    })
    .unwrap();
    let metadata = tuf_oci::Repository {
        registry: proxy.host.clone(),
        path: org.metadata.path.clone(),
    };
    let by_digest =
        tuf_oci::ImageRef::parse(&format!("{}/team-a/app@{digest}", proxy.host)).unwrap();
    let found = tuf_oci::Verifier::new(client, org.trust(Some(metadata), None))
        .unwrap()
        .resolve(&by_digest)
        .await
        .unwrap();
    assert_eq!((found.name(), found.role()), ("team-a/app:z", "later"));
    let seen = proxy.seen.lock().unwrap().clone();
    let fetched = seen.iter().filter(|p| p.ends_with("/1.first.json")).count();
    assert_eq!(fetched, 1, "{seen:#?}");
}

/// A delegation to a role whose name no metadata file can carry (tags hold no `/`), written
/// by hand and listed in snapshot, fails the search that reaches it, naming the role, before
/// anything is read for it.
#[tokio::test]
async fn a_role_no_file_can_be_named_for_is_refused_naming_it() {
    let registry = TestRegistry::start();
    let TeamA { org, .. } = TeamA::create(&registry).await;
    let root: Signed<tough::schema::Root> = parse(&org.root);
    let mut top: Signed<Targets> = parse(&registry.get_file(&org.metadata, "targets.json").await);
    let delegations = top.signed.delegations.as_mut().unwrap();
    delegations.roles[0].name = "team-a/evil".into();
    top.signed.version = top.signed.version.saturating_add(1);
    let resigned = craft::sign_top(top.signed, &root.signed, &org.targets_key().await).await;
    craft::publish_raw(&registry, &org, &[("targets", craft::bytes(&resigned))]).await;
    let craft::Published {
        timestamp,
        mut snapshot,
        ..
    } = craft::published(&registry, &org).await;
    // Its file is in the registry, to be read by digest: the name is refused all the same.
    let file = b"{}";
    registry
        .client
        .push_blob(
            &org.metadata,
            tuf_oci::layout::METADATA_LAYER_MEDIA_TYPE,
            file,
        )
        .await
        .unwrap();
    snapshot
        .signed
        .meta
        .insert("team-a/evil.json".into(), craft::metafile(1, file));
    snapshot.signed.version = snapshot.signed.version.saturating_add(1);
    craft::publish_snapshot(
        &registry,
        &org,
        &root.signed,
        &[org.key("snapshot").await],
        snapshot.signed,
        timestamp.signed.version.get() + 1,
    )
    .await;

    let err = org
        .verify_fresh(&registry, "team-a/app:v1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidDelegation { ref role, ref reason } if role == "team-a/evil" && reason.contains("no file")),
        "{err}"
    );
}
