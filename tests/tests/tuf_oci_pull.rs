//! `tuf-oci pull`: the tag is resolved through TUF and the image fetched by digest, recorded and
//! unpacked through containerd's API, on containerd 1.6 and 2.3.4, even when the registry's
//! tag was moved; a layer the registry swaps is never committed.

use std::process::Command;

use tuf_oci_tests::containerd::{Containerd, Version};
use tuf_oci_tests::hostile::{HostileRegistry, Rule};
use tuf_oci_tests::{Org, TestRegistry, cli_binary};

async fn pull_resolves_through_tuf(version: Version) {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "solo/app").await;
    let signed = registry.push_image("solo/app", "v1", "signed layer").await;
    registry.push_image("solo/app", "v2", "unsigned").await;
    org.sign_in_targets(&registry, "solo/app:v1").await;
    org.publish(&registry).await;
    let moved = registry.push_image("solo/app", "v1", "moved tag").await;
    let containerd = Containerd::start(version, None, &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.json"), &org.root).unwrap();
    let pull = |reference: &str| {
        Command::new(cli_binary())
            .args(["--insecure-registry", &registry.host, "--root"])
            .arg(dir.path().join("root.json"))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(["pull", reference, "--address"])
            .arg(&containerd.socket)
            .output()
            .unwrap()
    };

    let name = format!("{}/solo/app:v1", registry.host);
    let out = pull(&name);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        containerd.log()
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("{name} {}", signed.digest)
    );
    let images = String::from_utf8(containerd.ctr(&["images", "ls"]).stdout).unwrap();
    let line = images
        .lines()
        .find(|l| l.starts_with(&name))
        .expect("image recorded");
    assert!(
        line.contains(&signed.digest) && !line.contains(&moved.digest),
        "{line}"
    );
    // Unpacked: the single layer's snapshot is committed under its chain id (its diff id).
    let layer = tuf_oci_tests::layer_tar("signed layer");
    let chain = tuf_oci::layout::sha256_digest(&layer);
    let snapshots = String::from_utf8(containerd.ctr(&["snapshots", "ls"]).stdout).unwrap();
    assert!(snapshots.contains(&chain), "{snapshots}");
    // Pulling again fetches nothing new.
    assert!(pull(&name).status.success());

    let out = pull(&format!("{}/solo/app:v2", registry.host));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no trusted role signs target solo/app:v2")
    );
    assert!(
        !containerd
            .images()
            .iter()
            .any(|i| i.ends_with("solo/app:v2"))
    );
}

#[tokio::test]
async fn on_containerd_1_6() {
    pull_resolves_through_tuf(Version::V1_6).await;
}

#[tokio::test]
async fn on_containerd_2_3() {
    pull_resolves_through_tuf(Version::V2_3).await;
}

/// Layers stream from the registry into containerd as they arrive; one whose bytes are not
/// its digest's is cut at its end, before the commit: the pull fails naming the layer, and
/// containerd holds neither the layer nor the image.
#[tokio::test]
async fn a_layer_with_other_bytes_is_never_committed() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "solo/app").await;
    let signed = registry
        .push_image_layers("solo/app", "v1", &["first layer", "second layer"])
        .await;
    org.sign_in_targets(&registry, "solo/app:v1").await;
    org.publish(&registry).await;
    let manifest = registry
        .client
        .manifest(&registry.repo("solo/app").digested(&signed.digest), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let layer = &manifest["layers"][1];
    let digest = layer["digest"].as_str().unwrap().to_string();
    // As many bytes as the manifest says, none of them right.
    let size = layer["size"].as_u64().unwrap() as usize;
    let hostile = HostileRegistry::start(
        &registry.host,
        vec![Rule::Replace {
            path_suffix: format!("/blobs/{digest}"),
            body: vec![b'x'; size],
            content_type: "application/octet-stream".into(),
        }],
    )
    .await;
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.json"), &org.root).unwrap();
    // Awaited: the proxy serves on this test's runtime.
    let out = tokio::process::Command::new(cli_binary())
        .args(["--insecure-registry", &hostile.host, "--root"])
        .arg(dir.path().join("root.json"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args([
            "pull",
            &format!("{}/solo/app:v1", hostile.host),
            "--address",
        ])
        .arg(&containerd.socket)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&digest), "{stderr}");
    assert!(containerd.images().is_empty(), "{:?}", containerd.images());
    let content = String::from_utf8(containerd.ctr(&["content", "ls", "-q"]).stdout).unwrap();
    assert!(!content.contains(&digest), "{content}");
}
