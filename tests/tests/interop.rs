//! Interoperability with python-tuf (PyPI `tuf`): metadata this project writes verifies with
//! python-tuf's ngclient, and metadata written by python-tuf's Metadata API verifies with this
//! project's engine, over HTTP (the spec-test client) and stored in the registry layout.

use std::path::Path;
use std::process::Command;

use tuf_oci_tests::{HttpServer, TeamA, TestRegistry, workspace_binary};

const INTEROP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop");

fn python(script: &str, args: &[&str]) -> String {
    // tests/run.sh names a virtual environment's python when the system's lacks python-tuf.
    let python = std::env::var("TUF_OCI_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(python)
        .arg(Path::new(INTEROP).join(script))
        .args(args)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "{script} failed (pip install tuf securesystemslib[crypto]):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn python_tuf_ngclient_verifies_our_metadata() {
    let registry = TestRegistry::start();
    let TeamA {
        org,
        signed: pushed,
        ..
    } = TeamA::create(&registry).await;

    // Export what the tuf-metadata index lists, as plain files.
    let dir = tempfile::tempdir().unwrap();
    let index = registry
        .client
        .manifest(&org.metadata.tagged(tuf_oci::layout::METADATA_TAG), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let index = tuf_oci::layout::Manifest::parse("index", &index.bytes).unwrap();
    let mut names = Vec::new();
    for entry in &index.manifests {
        let name = &entry.annotations[tuf_oci::layout::FILENAME_ANNOTATION];
        let bytes = registry.get_file(&org.metadata, name).await;
        std::fs::write(dir.path().join(name), bytes).unwrap();
        names.push(name.clone());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "1.root.json",
            "1.team-a.json",
            "2.targets.json",
            "3.snapshot.json",
            "timestamp.json"
        ]
    );
    let root = dir.path().join("1.root.json");
    let server = HttpServer::serve(dir.path());
    let hex = pushed.digest.trim_start_matches("sha256:");
    let custom = python(
        "ngclient_verify.py",
        &[
            &server.url,
            root.to_str().unwrap(),
            "team-a/app:v1",
            hex,
            &pushed.media_type,
        ],
    );
    assert!(custom.contains(&pushed.media_type), "{custom}");
}

#[tokio::test]
async fn python_tuf_metadata_verifies_with_ours() {
    let registry = TestRegistry::start();
    let pushed = registry.push_image("team-a/app", "v1", "from python").await;
    let dir = tempfile::tempdir().unwrap();
    python(
        "write_repo.py",
        &[
            dir.path().to_str().unwrap(),
            "team-a/app:v1",
            pushed.digest.trim_start_matches("sha256:"),
            &pushed.size.to_string(),
            &pushed.media_type,
        ],
    );
    let metadata = dir.path().join("metadata");

    // Over HTTP, through the spec-test client.
    let server = HttpServer::serve(dir.path());
    let client = workspace_binary("tuf-oci-spec-client");
    let state = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(&client)
            .arg("--metadata-dir")
            .arg(state.path())
            .args(args)
            .status()
            .unwrap()
            .success()
    };
    let metadata_url = format!("{}/metadata", server.url);
    let targets_url = format!("{}/targets", server.url);
    assert!(run(&[
        "init",
        metadata.join("1.root.json").to_str().unwrap()
    ]));
    assert!(run(&["--metadata-url", &metadata_url, "refresh"]));
    assert!(run(&[
        "--metadata-url",
        &metadata_url,
        "--target-name",
        "files/hello.txt",
        "--target-base-url",
        &targets_url,
        "--target-dir",
        downloads.path().to_str().unwrap(),
        "download",
    ]));
    assert_eq!(
        std::fs::read(downloads.path().join("files%2Fhello.txt")).unwrap(),
        b"hello from python-tuf\n"
    );
    assert!(state.path().join("timestamp.json").exists());
    // A name no role signs fails with exit 1.
    assert!(!run(&[
        "--metadata-url",
        &metadata_url,
        "--target-name",
        "files/missing.txt",
        "--target-base-url",
        &targets_url,
        "--target-dir",
        downloads.path().to_str().unwrap(),
        "download",
    ]));

    // Stored in the registry layout, through the registry verifier.
    let repo = registry.repo("org/tuf");
    for entry in std::fs::read_dir(&metadata).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        registry
            .put_file(&repo, &name, &std::fs::read(entry.path()).unwrap())
            .await;
    }
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo("team-a/app"), "/org/tuf")
        .await
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let verifier = tuf_oci::Verifier::new(
        registry.client.clone(),
        tuf_oci::TrustConfig {
            root: std::fs::read(metadata.join("1.root.json")).unwrap(),
            metadata_override: None,
            cache_dir: Some(cache.path().to_path_buf()),
            ..Default::default()
        },
    )
    .unwrap();
    let verified = verifier
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap();
    assert_eq!(verified.digest(), pushed.digest);
    assert_eq!(verified.role(), "team-a");
}
