//! Signed images verify by tag and by digest, as single manifests and multi-platform indexes,
//! with metadata split across repositories (relative or full pointer) or in one repository.

use tuf_oci::Error;
use tuf_oci_tests::{Org, TeamA, TestRegistry, craft, solo};

#[tokio::test]
async fn split_mode_relative_pointer_by_tag_and_digest() {
    let registry = TestRegistry::start();
    let TeamA {
        org,
        signed: pushed,
        ..
    } = TeamA::create(&registry).await;

    let cache = tempfile::tempdir().unwrap();
    let verifier = org.verifier(&registry, cache.path());
    let by_tag = verifier
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap();
    assert_eq!(by_tag.name(), "team-a/app:v1");
    assert_eq!(by_tag.role(), "team-a");
    assert_eq!(by_tag.digest(), pushed.digest);
    assert_eq!(by_tag.target().length, pushed.size);
    assert_eq!(
        by_tag.descriptor().media_type().to_string(),
        pushed.media_type
    );

    let by_digest = verifier
        .verify(&registry.image(&format!("team-a/app@{}", pushed.digest)))
        .await
        .unwrap();
    assert_eq!(by_digest.name(), "team-a/app:v1");

    // The delegated role also sits beside the image, attached to it as a referrer.
    let referrers = registry
        .client
        .manifest(
            &registry
                .repo("team-a/app")
                .tagged(&tuf_oci::layout::referrers_tag(&pushed.digest)),
            1 << 20,
        )
        .await
        .unwrap()
        .expect("referrers index (tag schema)");
    let index = tuf_oci::layout::Manifest::parse("referrers", &referrers.bytes).unwrap();
    assert_eq!(index.manifests.len(), 1);
    assert_eq!(
        index.manifests[0].annotations[tuf_oci::layout::FILENAME_ANNOTATION],
        "1.team-a.json"
    );
}

/// Another tool's referrer of an image (an SBOM, with fields tuf-oci does not model) keeps
/// every field when a signer adds its own to the image's referrers index.
#[tokio::test]
async fn another_tools_referrer_keeps_its_fields_when_a_signer_adds_to_the_index() {
    let registry = TestRegistry::start();
    let TeamA { org, unsigned, .. } = TeamA::create(&registry).await;
    let repository = registry.repo("team-a/app");
    let empty = registry
        .client
        .push_blob(
            &repository,
            tuf_oci::layout::EMPTY_MEDIA_TYPE,
            tuf_oci::layout::EMPTY_BLOB,
        )
        .await
        .unwrap();
    let sbom = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": tuf_oci::layout::MANIFEST_MEDIA_TYPE,
        "artifactType": "application/spdx+json",
        "config": empty,
        "layers": [empty],
        "subject": unsigned,
    }))
    .unwrap();
    let sbom = registry
        .client
        .push_manifest(
            &repository.digested(&tuf_oci::layout::sha256_digest(&sbom)),
            &sbom,
            tuf_oci::layout::MANIFEST_MEDIA_TYPE,
        )
        .await
        .unwrap();
    let theirs = serde_json::json!({
        "mediaType": tuf_oci::layout::MANIFEST_MEDIA_TYPE,
        "digest": sbom.digest,
        "size": sbom.size,
        "artifactType": "application/spdx+json",
        "annotations": {"org.example.tool": "sbom"},
        "platform": {"architecture": "amd64", "os": "linux"},
        "urls": ["https://example.com/sbom"],
        "org.example.extension": {"kept": true},
    });
    let tag = repository.tagged(&tuf_oci::layout::referrers_tag(&unsigned.digest));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": tuf_oci::layout::INDEX_MEDIA_TYPE,
        "manifests": [theirs],
    });
    registry
        .client
        .push_manifest(
            &tag,
            &serde_json::to_vec(&index).unwrap(),
            tuf_oci::layout::INDEX_MEDIA_TYPE,
        )
        .await
        .unwrap();
    org.sign(
        &registry,
        &registry.image("team-a/app:v2"),
        "team-a",
        &[org.key("team-a").await],
    )
    .await;
    let merged = registry
        .client
        .manifest(&tag, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let merged: serde_json::Value = serde_json::from_slice(&merged.bytes).unwrap();
    let entries = merged["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{merged}");
    assert!(entries.contains(&theirs), "{merged}");
}

/// An image whose manifest declares no `mediaType` (optional in OCI) is signed as the OCI
/// manifest its fields make it, and verifies.
#[tokio::test]
async fn a_manifest_declaring_no_media_type_is_signed_as_its_fields_make_it() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "solo/app").await;
    let repository = registry.repo("solo/app");
    let pushed = registry.push_image("solo/app", "v0", "untyped").await;
    let stored = registry
        .client
        .manifest(&repository.digested(&pushed.digest), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let mut untyped: serde_json::Value = serde_json::from_slice(&stored.bytes).unwrap();
    untyped.as_object_mut().unwrap().remove("mediaType");
    let untyped = serde_json::to_vec(&untyped).unwrap();
    let pushed = registry
        .client
        .push_manifest(
            &repository.tagged("v1"),
            &untyped,
            tuf_oci::layout::MANIFEST_MEDIA_TYPE,
        )
        .await
        .unwrap();
    org.sign_in_targets(&registry, "solo/app:v1").await;
    org.publish(&registry).await;
    let verified = org.verify_fresh(&registry, "solo/app:v1").await.unwrap();
    assert_eq!(verified.digest(), tuf_oci::layout::sha256_digest(&untyped));
    assert_eq!(verified.digest(), pushed.digest);
    assert_eq!(
        verified.descriptor().media_type().to_string(),
        tuf_oci::layout::MANIFEST_MEDIA_TYPE
    );
}

#[tokio::test]
async fn multi_platform_index_with_full_pointer() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let pushed = registry.push_index("team-b/tool", "2.0", "tool").await;
    let full = org.metadata.to_string();
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo("team-b/tool"), &full)
        .await
        .unwrap();
    org.sign_in_targets(&registry, "team-b/tool:2.0").await;
    org.publish(&registry).await;

    let verified = org
        .verify_fresh(&registry, "team-b/tool:2.0")
        .await
        .unwrap();
    assert_eq!(verified.digest(), pushed.digest);
    assert_eq!(
        verified.descriptor().media_type().to_string(),
        tuf_oci::layout::INDEX_MEDIA_TYPE
    );
}

#[tokio::test]
async fn single_repository_mode() {
    let registry = TestRegistry::start();
    let (org, pushed) = solo(&registry, true).await;

    let cache = tempfile::tempdir().unwrap();
    let verifier = org.verifier(&registry, cache.path());
    let verified = verifier
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();
    assert_eq!(verified.digest(), pushed.digest);
    let by_digest = verifier
        .verify(&registry.image(&format!("solo/app@{}", pushed.digest)))
        .await
        .unwrap();
    assert_eq!(by_digest.name(), "solo/app:v1");
}

#[tokio::test]
async fn unsigned_image_is_refused_by_tag_and_by_digest() {
    let registry = TestRegistry::start();
    let (org, signed) = solo(&registry, false).await;
    let unsigned = registry.push_image("solo/app", "v2", "unsigned").await;
    org.publish(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    let verifier = org.verifier(&registry, cache.path());

    let err = verifier
        .verify(&registry.image("solo/app:v2"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TargetNotSigned { ref name } if name == "solo/app:v2"),
        "{err}"
    );
    let err = verifier
        .verify(&registry.image(&format!("solo/app@{}", unsigned.digest)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::DigestNotSigned { ref digest, .. } if *digest == unsigned.digest),
        "{err}"
    );
    // A tag and a digest that disagree are refused too, saying which the tag is signed for.
    let err = verifier
        .verify(&registry.image(&format!("solo/app:v1@{}", unsigned.digest)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::DescriptorMismatch { field: "digest", signed: ref told, ref presented, .. }
            if told.starts_with(&signed.digest) && told.contains("solo/app:v1")
                && presented.starts_with(&unsigned.digest)),
        "{err}"
    );
    assert!(
        verifier
            .verify(&registry.image(&format!("solo/app:v1@{}", signed.digest)))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn moved_tag_is_refused() {
    let registry = TestRegistry::start();
    let (org, signed) = solo(&registry, true).await;
    let evil = registry.push_image("solo/app", "v1", "evil").await;

    let err = org
        .verify_fresh(&registry, "solo/app:v1")
        .await
        .unwrap_err();
    match err {
        Error::DescriptorMismatch {
            field,
            signed: s,
            presented: r,
            ..
        } => {
            assert_eq!(field, "digest");
            assert_eq!(s, signed.digest);
            assert_eq!(r, evil.digest);
        }
        other => panic!("expected DescriptorMismatch, got {other}"),
    }
}

#[tokio::test]
async fn revoked_target_is_refused_once_published() {
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let targets = org.targets_key().await;
    let cache = tempfile::tempdir().unwrap();
    let verifier = org.verifier(&registry, cache.path());
    verifier
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();

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
    // Not published yet: a new client still gets the published state, though the head of
    // targets it reads meanwhile (to save a round trip) no longer lists the target.
    org.verify_fresh(&registry, "solo/app:v1").await.unwrap();
    org.publish(&registry).await;
    let err = verifier
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TargetNotSigned { .. }), "{err}");
}

#[tokio::test]
async fn many_images_sign_in_one_role_version() {
    let registry = TestRegistry::start();
    let TeamA { org, .. } = TeamA::create(&registry).await;
    let app = registry.push_image("team-a/app", "v3", "three").await;
    // Same content under another tag: two targets, one subject.
    registry.push_image("team-a/app", "v4", "three").await;
    let web = registry.push_image("team-a/web", "v1", "web").await;
    tuf_oci::editor::set_pointer(
        &registry.client,
        &registry.repo("team-a/web"),
        "../../org/tuf",
    )
    .await
    .unwrap();
    let team = [org.key("team-a").await];
    let images = ["team-a/app:v3", "team-a/app:v4", "team-a/web:v1"].map(|i| registry.image(i));

    // A role not delegated one of them signs none of them.
    let other = registry.image("team-b/app:v1");
    registry.push_image("team-b/app", "v1", "b").await;
    let mut with_other = images.to_vec();
    with_other.push(other);
    let editor = org.editor(&registry).await;
    let err = editor
        .sign(
            &with_other,
            "team-a",
            &team,
            tuf_oci_tests::expiries().targets,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Delegation { ref target, .. } if target == "team-b/app:v1"),
        "{err}"
    );

    let signed = editor
        .sign(&images, "team-a", &team, tuf_oci_tests::expiries().targets)
        .await
        .unwrap();
    assert_eq!(signed.len(), 3);
    org.publish(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    let verifier = org.verifier(&registry, cache.path());
    for (image, digest) in images.iter().zip([&app.digest, &app.digest, &web.digest]) {
        let verified = verifier.verify(image).await.unwrap();
        assert_eq!(verified.digest(), *digest);
    }
    // One new version of the role (TeamA signed version 1), attached to each distinct image,
    // in its own repository.
    for (path, digest) in [("team-a/app", &app.digest), ("team-a/web", &web.digest)] {
        let referrers = registry
            .client
            .manifest(
                &registry
                    .repo(path)
                    .tagged(&tuf_oci::layout::referrers_tag(digest)),
                1 << 20,
            )
            .await
            .unwrap()
            .expect("referrers index (tag schema)");
        let index = tuf_oci::layout::Manifest::parse("referrers", &referrers.bytes).unwrap();
        let files: Vec<&str> = index
            .manifests
            .iter()
            .map(|m| m.annotations[tuf_oci::layout::FILENAME_ANNOTATION].as_str())
            .collect();
        assert_eq!(files, ["2.team-a.json"], "{path}");
    }
}

#[tokio::test]
async fn a_signed_target_that_is_no_descriptor_is_named_by_tag_and_by_digest() {
    // A signer's tool wrote a target without a media type: both pulls meet that target, and
    // both say so, rather than the pull by digest claiming the digest is not signed.
    let registry = TestRegistry::start();
    let (org, signed) = solo(&registry, true).await;
    let head = registry.get_file(&org.metadata, "targets.json").await;
    let mut targets: tough::schema::Signed<tough::schema::Targets> = craft::parse(&head);
    let target = targets
        .signed
        .targets
        .get_mut(&tough::TargetName::new("solo/app:v1").unwrap())
        .unwrap();
    target.custom.remove("mediaType");
    targets.signed.version = targets.signed.version.saturating_add(1);
    let root: tough::schema::Signed<tough::schema::Root> = craft::parse(&org.root);
    let resigned = craft::sign_top(targets.signed, &root.signed, &org.targets_key().await).await;
    craft::publish_raw(&registry, &org, &[("targets", craft::bytes(&resigned))]).await;

    let cache = tempfile::tempdir().unwrap();
    let verifier = org.verifier(&registry, cache.path());
    for reference in [
        "solo/app:v1".to_string(),
        format!("solo/app@{}", signed.digest),
    ] {
        let err = verifier
            .verify(&registry.image(&reference))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidDescriptor { ref target, ref reason } if target == "solo/app:v1" && reason.contains("mediaType")),
            "{reference}: {err}"
        );
    }
}
