//! A node without CA certificates (a minimal image, a broken certificate store). Registries
//! reached over plain HTTP need none: a verification reads their manifests through a client set
//! up without certificates, and the registry client library (whose TLS clients read them even
//! for plain HTTP) is set up only when a request needs it. A registry reached over HTTPS fails
//! naming the missing certificates, where every executable used to panic. Verifying against a
//! bundle on disk needs no registry client, as do `tuf-oci`'s offline commands.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use tuf_oci::layout::Entry;
use tuf_oci_tests::hostile::HostileRegistry;
use tuf_oci_tests::{
    TeamA, TestRegistry, assert_refused, cli_binary, run_image_verifier, workspace_binary,
    write_policy,
};

/// `command` on a system whose certificate store is empty.
fn without_certificates<'a>(command: &'a mut Command, dir: &Path) -> &'a mut Command {
    let empty = dir.join("no-certificates.pem");
    std::fs::write(&empty, "").unwrap();
    command
        .env("SSL_CERT_FILE", empty)
        .env_remove("SSL_CERT_DIR")
}

fn bindir(dir: &Path, policy: &Path, name: &str, descriptor: &Entry) -> (Option<i32>, String) {
    run_image_verifier(
        without_certificates(
            &mut Command::new(workspace_binary("containerd-tuf-verifier")),
            dir,
        )
        .env("CONTAINERD_TUF_POLICY", policy)
        .stderr(Stdio::null()),
        name,
        descriptor,
    )
}

fn failed_clearly(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    assert!(
        stderr.contains("the registry client cannot be set up")
            && stderr.contains("No CA certificates"),
        "{what}: {stderr}"
    );
}

#[tokio::test]
async fn a_registry_on_plain_http_needs_no_certificates() {
    let registry = TestRegistry::start();
    let TeamA { org, signed, .. } = TeamA::create(&registry).await;
    // Enough targets that team-a's role is no longer embedded in its manifest but read as a
    // blob.
    let mut tags = Vec::new();
    for i in 0..50 {
        registry
            .push_image("team-a/app", &format!("t{i}"), "signed")
            .await;
        tags.push(registry.image(&format!("team-a/app:t{i}")));
    }
    let editor = org.editor(&registry).await;
    let keys = [org.key("team-a").await];
    editor
        .sign(&tags, "team-a", &keys, tuf_oci_tests::expiries().targets)
        .await
        .unwrap();
    org.publish(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}/team-a/app:v1", registry.host);

    let policy = write_policy(dir.path(), &registry, &org, &["team-a/"], &[], "");
    let (code, stdout) = bindir(dir.path(), &policy, &name, &signed);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("signed by team-a"), "{stdout}");

    // Through a proxy that shows what was read: team-a's role came as a blob.
    let proxy = HostileRegistry::start(&registry.host, vec![]).await;
    let mut verify = Command::new(cli_binary());
    without_certificates(&mut verify, dir.path());
    let verify = tokio::process::Command::from(verify)
        .args(["--insecure-registry", &proxy.host, "--root"])
        .arg(dir.path().join("root.json"))
        .args(["verify", &format!("{}/team-a/app:v1", proxy.host)])
        .output()
        .await
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|p| p.contains("/blobs/")), "{seen:#?}");
}

#[tokio::test]
async fn a_registry_over_https_names_the_missing_certificates() {
    let registry = TestRegistry::start();
    let TeamA { org, signed, .. } = TeamA::create(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}/team-a/app:v1", registry.host);

    // The same registry, not marked insecure: reached over HTTPS.
    let policy = write_policy(dir.path(), &registry, &org, &["team-a/"], &[], "");
    let text = std::fs::read_to_string(&policy).unwrap();
    let insecure = format!("insecure_registries = [\"{}\"]", registry.host);
    assert!(text.contains(&insecure), "{text}");
    std::fs::write(&policy, text.replace(&insecure, "insecure_registries = []")).unwrap();
    let out = bindir(dir.path(), &policy, &name, &signed);
    assert_refused(out.clone(), "the registry client cannot be set up");
    assert!(out.1.contains("No CA certificates"), "{}", out.1);

    let verify = without_certificates(&mut Command::new(cli_binary()), dir.path())
        .arg("--root")
        .arg(dir.path().join("root.json"))
        .args(["verify", &name])
        .output()
        .unwrap();
    failed_clearly(&verify, "tuf-oci verify");
}

#[tokio::test]
async fn a_bundle_verifies_without_certificates() {
    let registry = TestRegistry::start();
    let TeamA { org, signed, .. } = TeamA::create(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}/team-a/app:v1", registry.host);
    let bundle = dir.path().join("bundle");
    let copied = Command::new(cli_binary())
        .args(["--insecure-registry", &registry.host, "copy", &name])
        .arg(format!("oci:{}", bundle.display()))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{copied:?}");
    let policy = write_policy(dir.path(), &registry, &org, &["team-a/"], &[], "");
    // The last table is the scope: its metadata is the bundle.
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str(&format!(
        "metadata = \"oci:{}:org/tuf\"\n",
        bundle.display()
    ));
    std::fs::write(&policy, text).unwrap();
    drop(registry);

    let (code, stdout) = bindir(dir.path(), &policy, &name, &signed);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("signed by team-a"), "{stdout}");

    // Nor do `tuf-oci`'s offline commands: a bundle's verification, and the key generation
    // of a machine that keeps root keys offline.
    let tuf_oci = |args: &[&str]| {
        let out = without_certificates(&mut Command::new(cli_binary()), dir.path())
            .arg("--root")
            .arg(dir.path().join("root.json"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    tuf_oci(&["verify", &format!("oci:{}:team-a/app:v1", bundle.display())]);
    tuf_oci(&["keygen", dir.path().join("offline").to_str().unwrap()]);
}
