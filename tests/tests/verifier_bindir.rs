//! containerd-tuf-verifier invoked exactly as containerd's bindir plugin runs it, with good and
//! bad input: every failure exits non-zero with a one-line reason on stdout, never a panic.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tuf_oci::layout::Entry;
use tuf_oci_tests::{
    TeamA, TestRegistry, assert_refused, run_image_verifier, workspace_binary,
    write_bootstrapped_policy, write_policy,
};

const MEDIA_TYPE: &str = "application/vnd.oci.descriptor.v1+json";

fn run(policy: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(workspace_binary("containerd-tuf-verifier"))
        .env("CONTAINERD_TUF_POLICY", policy)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The process may exit before reading everything (e.g. on bad flags).
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn verify(policy: &Path, name: &str, descriptor: &Entry) -> (Option<i32>, String) {
    run_image_verifier(
        Command::new(workspace_binary("containerd-tuf-verifier"))
            .env("CONTAINERD_TUF_POLICY", policy)
            .stderr(Stdio::null()),
        name,
        descriptor,
    )
}

#[tokio::test]
async fn answers_like_containerd_expects() {
    let registry = TestRegistry::start();
    let TeamA {
        org,
        signed,
        unsigned,
    } = TeamA::create(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &registry, &org, &["team-a/"], &["public/"], "");
    let host = &registry.host;

    let (code, stdout) = verify(&policy, &format!("{host}/team-a/app:v1"), &signed);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("signed by team-a"), "{stdout}");
    // By digest, as containerd passes it for `pull name@sha256:...`.
    let by_digest = format!("{host}/team-a/app@{}", signed.digest);
    assert_eq!(verify(&policy, &by_digest, &signed).0, Some(0));

    assert_refused(
        verify(&policy, &format!("{host}/team-a/app:v2"), &unsigned),
        "no trusted role signs target team-a/app:v2",
    );
    // The tag is signed, but containerd resolved it to something else.
    assert_refused(
        verify(&policy, &format!("{host}/team-a/app:v1"), &unsigned),
        ": digest is sha256:",
    );
    let mut wrong_size = signed.clone();
    wrong_size.size += 1;
    assert_refused(
        verify(&policy, &format!("{host}/team-a/app:v1"), &wrong_size),
        ": size is",
    );
    let mut wrong_type = signed.clone();
    wrong_type.media_type = tuf_oci::layout::INDEX_MEDIA_TYPE.into();
    assert_refused(
        verify(&policy, &format!("{host}/team-a/app:v1"), &wrong_type),
        ": mediaType is",
    );
    assert_refused(
        verify(&policy, &format!("{host}/elsewhere/app:v1"), &signed),
        "policy default denies it",
    );
    let (code, stdout) = verify(&policy, &format!("{host}/public/app:v1"), &unsigned);
    assert_eq!(code, Some(0), "{stdout}");

    // Bad input.
    let name = format!("{host}/team-a/app:v1");
    let digest = signed.digest.as_str();
    let json = serde_json::to_vec(&signed).unwrap();
    let cases: Vec<(Vec<&str>, Vec<u8>, &str)> = vec![
        (
            vec!["-name", &name, "-digest", digest],
            json.clone(),
            "missing -stdin-media-type",
        ),
        (
            vec![
                "-name",
                &name,
                "-digest",
                digest,
                "-stdin-media-type",
                "text/plain",
            ],
            json.clone(),
            "unsupported -stdin-media-type",
        ),
        (
            vec![
                "-name",
                &name,
                "-digest",
                digest,
                "-stdin-media-type",
                MEDIA_TYPE,
                "-extra",
                "1",
            ],
            json.clone(),
            "unknown flag -extra",
        ),
        (
            vec![
                "-name",
                &name,
                "-digest",
                digest,
                "-stdin-media-type",
                MEDIA_TYPE,
            ],
            b"{not json".to_vec(),
            "descriptor on stdin is not valid",
        ),
        (
            vec![
                "-name",
                &name,
                "-digest",
                digest,
                "-stdin-media-type",
                MEDIA_TYPE,
            ],
            vec![b' '; 100_000],
            "exceeds",
        ),
        (
            vec![
                "-name",
                &name,
                "-digest",
                &unsigned.digest,
                "-stdin-media-type",
                MEDIA_TYPE,
            ],
            json.clone(),
            "differs from -digest",
        ),
        (
            vec![
                "-name",
                "not a reference",
                "-digest",
                digest,
                "-stdin-media-type",
                MEDIA_TYPE,
            ],
            json.clone(),
            "invalid reference",
        ),
    ];
    for (args, stdin, reason) in cases {
        let out = run(&policy, &args, &stdin);
        assert_refused(
            (out.status.code(), String::from_utf8(out.stdout).unwrap()),
            reason,
        );
    }
    // A missing or broken policy fails closed.
    let out = run(
        &dir.path().join("missing.toml"),
        &[
            "-name",
            &name,
            "-digest",
            digest,
            "-stdin-media-type",
            MEDIA_TYPE,
        ],
        &json,
    );
    assert_refused(
        (out.status.code(), String::from_utf8(out.stdout).unwrap()),
        "missing.toml",
    );
}

/// containerd reads names tuf-oci does not (an empty path component, a percent-encoded one)
/// and tidies them into references a scope covers: on a protected registry they are refused
/// even where the policy default allows, never pulled unverified.
#[tokio::test]
async fn unreadable_names_on_a_protected_registry_are_refused() {
    let registry = TestRegistry::start();
    let TeamA { org, signed, .. } = TeamA::create(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &registry, &org, &["team-a/"], &[], "");
    let allowing = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("default = \"deny\"", "default = \"allow\"");
    std::fs::write(&policy, allowing).unwrap();
    let host = &registry.host;
    for name in [
        format!("{host}/team-a//app:v1"),
        format!("{host}/team%2Da/app:v1"),
        format!("x@{host}/team-a/app:v1"),
        format!("u:p@{host}/team-a/app:v1"),
    ] {
        assert_refused(
            verify(&policy, &name, &signed),
            &format!("{host} is a registry the policy protects"),
        );
    }
    let (code, stdout) = verify(&policy, "localimage:latest", &signed);
    assert_eq!(
        code,
        Some(0),
        "the default allows names on no registry: {stdout}"
    );
}

#[tokio::test]
async fn a_metadata_location_in_the_policy_replaces_the_pointer() {
    let registry = TestRegistry::start();
    let TeamA { org, signed, .. } = TeamA::create(&registry).await;
    // The image repository's pointer now leads nowhere.
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo("team-a/app"), "../nowhere")
        .await
        .unwrap();
    let name = format!("{}/team-a/app:v1", registry.host);

    let following = tempfile::tempdir().unwrap();
    let policy = write_policy(following.path(), &registry, &org, &["team-a/"], &[], "");
    assert_refused(verify(&policy, &name, &signed), "timestamp.json");

    let bootstrapped = tempfile::tempdir().unwrap();
    let policy = write_bootstrapped_policy(bootstrapped.path(), &registry, &org, &["team-a/"], "");
    let (code, stdout) = verify(&policy, &name, &signed);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("signed by team-a"), "{stdout}");
}

#[tokio::test]
async fn a_descriptor_in_a_file_is_read_like_one_from_a_pipe() {
    // containerd writes the descriptor into a pipe, which the executable reads through its
    // runtime; anything else on stdin is read as well.
    let registry = TestRegistry::start();
    let TeamA { org, signed, .. } = TeamA::create(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &registry, &org, &["team-a/"], &[], "");
    let descriptor = dir.path().join("descriptor.json");
    std::fs::write(&descriptor, serde_json::to_vec(&signed).unwrap()).unwrap();
    let out = Command::new(workspace_binary("containerd-tuf-verifier"))
        .env("CONTAINERD_TUF_POLICY", &policy)
        .args(["-name", &format!("{}/team-a/app:v1", registry.host)])
        .args(["-digest", &signed.digest, "-stdin-media-type", MEDIA_TYPE])
        .stdin(std::fs::File::open(&descriptor).unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("signed by team-a"), "{stdout}");
}

#[test]
fn both_executables_tell_their_version_and_usage() {
    for name in ["containerd-tuf-verifier", "containerd-tuf-verifier-client"] {
        for flag in ["--version", "-version"] {
            let out = Command::new(workspace_binary(name))
                .arg(flag)
                .output()
                .unwrap();
            assert!(out.status.success(), "{name} {flag}");
            let version = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                version.trim_end(),
                format!("{name} {}", env!("CARGO_PKG_VERSION"))
            );
        }
        for flag in ["--help", "-help", "-h"] {
            let out = Command::new(workspace_binary(name))
                .arg(flag)
                .output()
                .unwrap();
            assert!(out.status.success(), "{name} {flag}");
            let usage = String::from_utf8(out.stdout).unwrap();
            assert!(usage.starts_with(&format!("{name}: ")), "{usage}");
            assert!(usage.contains(" -name REF -digest DIGEST "), "{usage}");
        }
    }
}

#[tokio::test]
async fn a_policy_is_checked_before_it_is_put_in_place() {
    // Every pull is refused while the policy in place does not load: operators (and
    // install-node.sh) check an edited copy first, trusted roots read as the service reads them.
    let registry = TestRegistry::start();
    let TeamA { org, .. } = TeamA::create(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &registry, &org, &["team-a/"], &[], "");
    // A trust directory of the node whose root is this one (written anew): a verification
    // would take its state up into a directory of its own.
    let sibling = dir.path().join("cache/elsewhere");
    std::fs::create_dir_all(&sibling).unwrap();
    let root: serde_json::Value = serde_json::from_slice(&org.root).unwrap();
    let root = serde_json::to_vec_pretty(&root).unwrap();
    std::fs::write(sibling.join("root.json"), root).unwrap();
    let check = |policy: &Path| {
        Command::new(workspace_binary("containerd-tuf-verifier"))
            .args(["check", "--policy"])
            .arg(policy)
            .output()
            .unwrap()
    };
    let out = check(&policy);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("the policy loads; 1 scopes"), "{stdout}");
    // Checking writes nothing to the node's cache.
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(cached, ["elsewhere"]);

    // A scope whose trusted root is no root, and a policy that is no TOML.
    std::fs::write(dir.path().join("root.json"), b"<html>").unwrap();
    let out = check(&policy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("scope org: root metadata cannot be parsed"),
        "{stderr}"
    );
    std::fs::write(&policy, b"[[scope]\n").unwrap();
    let out = check(&policy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("policy {}", policy.display())),
        "{stderr}"
    );
}
