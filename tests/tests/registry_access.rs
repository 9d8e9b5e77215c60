//! Registry access: credentials from docker's config.json (basic auth against a registry with
//! htpasswd), a hanging registry bounded by the request deadline, and the traffic a client
//! counts.

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tuf_oci::{Error, Registry, RegistryConfig, Verifier};
use tuf_oci_tests::{Org, TestRegistry, cli_binary};

#[test]
fn credentials_come_from_docker_config() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&htpasswd, format!("signer:{hash}\n")).unwrap();
    let registry = TestRegistry::start_with(&format!(
        "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
        htpasswd.display()
    ));
    let metadata = format!("{}/solo/app", registry.host);
    let keys = dir.path().join("keys");
    let root = dir.path().join("root.json");
    let tuf = |docker_config: &std::path::Path, args: &[&str]| {
        Command::new(cli_binary())
            .env("DOCKER_CONFIG", docker_config)
            .args([
                "--insecure-registry",
                &registry.host,
                "--metadata-repo",
                &metadata,
            ])
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .unwrap()
    };

    let anonymous = dir.path().join("anonymous");
    std::fs::create_dir(&anonymous).unwrap();
    let out = tuf(
        &anonymous,
        &[
            "init",
            "--keys",
            keys.to_str().unwrap(),
            "--out",
            root.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&registry.host) && err.to_lowercase().contains("not authorized"),
        "{err}"
    );

    let signer = dir.path().join("signer");
    std::fs::create_dir(&signer).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("signer:s3cret");
    std::fs::write(
        signer.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host),
    )
    .unwrap();
    let keys_arg = keys.to_str().unwrap();
    for args in [
        vec!["init", "--keys", keys_arg, "--out", root.to_str().unwrap()],
        // Any registry object can be a target; here, the manifest of root version 1.
        vec![
            "sign",
            &format!("{metadata}:1.root.json"),
            "--role",
            "targets",
            "--key",
            &format!("{keys_arg}/targets"),
        ],
        vec!["publish", "--keys", keys_arg],
        vec!["verify", &format!("{metadata}:1.root.json")],
    ] {
        let out = tuf(&signer, &args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn hanging_registry_is_bounded_by_the_deadline() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "org/tuf").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    tuf_oci::editor::set_pointer(
        &registry.client,
        &registry.repo("team-a/app"),
        &format!("{hanging}/org/tuf"),
    )
    .await
    .unwrap();
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![registry.host.clone(), hanging.clone()],
        timeout: Duration::from_secs(1),
    })
    .expect("registry client");
    let verifier = Verifier::new(client, org.trust(None, None)).unwrap();
    let start = Instant::now();
    let err = verifier
        .verify(&registry.image("team-a/app:v1"))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        matches!(err, Error::Registry { ref reference, ref message } if reference.contains(&hanging) && message.contains("timed out")),
        "{err}"
    );
}

/// A streamed layer counts in the client's traffic as it arrives: one request, its bytes.
/// So does a layer read whole, and a request for one the registry lacks.
#[tokio::test]
async fn streamed_blobs_count_in_traffic() {
    use futures_util::StreamExt;

    let registry = TestRegistry::start();
    let image = registry
        .push_image_layers("solo/app", "v1", &["a layer"])
        .await;
    let manifest = registry.manifest_json("solo/app", &image.digest).await;
    let layer = &manifest["layers"][0];
    let (digest, size) = (
        layer["digest"].as_str().unwrap(),
        layer["size"].as_u64().unwrap(),
    );
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![registry.host.clone()],
        timeout: Duration::from_secs(5),
    })
    .expect("registry client");
    let mut stream = client
        .blob_stream(&registry.repo("solo/app"), digest, size)
        .await
        .unwrap();
    assert_eq!(client.traffic().requests(), 1);
    let mut read = 0;
    while let Some(chunk) = stream.next().await {
        read += chunk.unwrap().len() as u64;
    }
    assert_eq!(read, size);
    assert_eq!(
        (client.traffic().requests(), client.traffic().bytes()),
        (1, size)
    );
    // A whole blob counts once as well; a blob the registry does not have is a request.
    let repository = registry.repo("solo/app");
    assert_eq!(
        client.blob(&repository, digest, size).await.unwrap().len() as u64,
        size
    );
    let absent = tuf_oci::layout::sha256_digest(b"absent");
    let missing = client.blob_stream(&repository, &absent, 6).await;
    assert!(matches!(missing, Err(Error::NotFound { .. })));
    assert_eq!(
        (client.traffic().requests(), client.traffic().bytes()),
        (3, 2 * size)
    );
}
