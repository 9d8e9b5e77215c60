//! Two signers writing at once lose nothing: different roles signing the same image both land
//! in its referrers index (merged with read-back on a registry without compare-and-swap).

use tuf_oci::layout::{FILENAME_ANNOTATION, Manifest, referrers_tag};
use tuf_oci_tests::{Org, TestRegistry, delegation, expiries};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_roles_sign_the_same_image_at_once() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let (a, b) = (org.key("role-a").await, org.key("role-b").await);
    let targets = org.targets_key().await;
    org.delegate(
        &registry,
        "targets",
        &targets,
        &delegation("role-a", &["shared/*"], &[&a], 1),
    )
    .await;
    org.delegate(
        &registry,
        "targets",
        &targets,
        &delegation("role-b", &["shared/*"], &[&b], 1),
    )
    .await;
    org.publish(&registry).await;
    tuf_oci::editor::set_pointer(
        &registry.client,
        &registry.repo("shared/app"),
        "../../org/tuf",
    )
    .await
    .unwrap();
    for round in 0..3 {
        let tag = format!("v{round}");
        let pushed = registry.push_image("shared/app", &tag, &tag).await;
        let image = registry.image(&format!("shared/app:{tag}"));
        let (editor_a, editor_b) = (org.editor(&registry).await, org.editor(&registry).await);
        let (key_a, key_b) = (vec![a.clone()], vec![b.clone()]);
        let expires = expiries().targets;
        let (ra, rb) = tokio::join!(
            editor_a.sign(std::slice::from_ref(&image), "role-a", &key_a, expires),
            editor_b.sign(std::slice::from_ref(&image), "role-b", &key_b, expires),
        );
        ra.unwrap();
        rb.unwrap();
        let index = registry
            .client
            .manifest(
                &registry
                    .repo("shared/app")
                    .tagged(&referrers_tag(&pushed.digest)),
                1 << 20,
            )
            .await
            .unwrap()
            .expect("referrers index");
        let mut files: Vec<String> = Manifest::parse("referrers", &index.bytes)
            .unwrap()
            .manifests
            .iter()
            .map(|m| m.annotations[FILENAME_ANNOTATION].clone())
            .collect();
        files.sort();
        let version = round + 1;
        assert_eq!(
            files,
            [
                format!("{version}.role-a.json"),
                format!("{version}.role-b.json")
            ]
        );
    }
    org.publish(&registry).await;
    let verified = org.verify_fresh(&registry, "shared/app:v2").await.unwrap();
    assert_eq!(verified.role(), "role-a");
}
