//! A hostile registry (a proxy that answers some requests itself) cannot make a bad image pass:
//! other bytes for a blob, a rewritten manifest, an oversized pointer are refused, and a
//! poisoned referrers index changes nothing, since no trust decision reads it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use tuf_oci::layout::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use tuf_oci::{Error, Registry, RegistryConfig, TrustConfig, Verifier};
use tuf_oci_tests::craft;
use tuf_oci_tests::hostile::{Heard, HostileRegistry, Rule};
use tuf_oci_tests::https_store::HttpsStore;
use tuf_oci_tests::{TeamA, TestRegistry, solo};

fn verifier(host: &str, root: &[u8]) -> Verifier {
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![host.to_string()],
        timeout: Duration::from_secs(5),
    })
    .expect("registry client");
    Verifier::new(
        client,
        TrustConfig {
            root: root.to_vec(),
            ..TrustConfig::default()
        },
    )
    .unwrap()
}

fn image(host: &str, reference: &str) -> tuf_oci::ImageRef {
    tuf_oci::ImageRef::parse(&format!("{host}/{reference}")).unwrap()
}

/// The error of verifying `solo/app:v1` through a proxy in front of `registry` that applies
/// `rules`.
async fn refusal_through(registry: &TestRegistry, root: &[u8], rules: Vec<Rule>) -> Error {
    let hostile = HostileRegistry::start(&registry.host, rules).await;
    verifier(&hostile.host, root)
        .verify(&image(&hostile.host, "solo/app:v1"))
        .await
        .unwrap_err()
}

/// A registry holding `solo/app`, signed in single-repository mode, and an empty one to copy
/// it to; with the organisation.
async fn signed_source_and_destination() -> (TestRegistry, TestRegistry, tuf_oci_tests::Org) {
    let (source, destination) = (TestRegistry::start(), TestRegistry::start());
    let (org, _) = solo(&source, true).await;
    (source, destination, org)
}

#[tokio::test]
async fn blob_with_other_bytes_is_refused() {
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    // The snapshot is read as a blob, by the digest the timestamp names, once the manifests
    // that embed it (its head and its version's tag) are junk.
    let published = craft::published(&registry, &org).await;
    let version = published.snapshot.signed.version;
    let layer = tuf_oci::layout::sha256_digest(&published.snapshot_bytes);
    let junk = |tag: String| Rule::Replace {
        path_suffix: format!("/manifests/{tag}"),
        body: b"{}".to_vec(),
        content_type: MANIFEST_MEDIA_TYPE.into(),
    };
    // Through the proxy untouched objects verify; the replaced blob does not.
    let rules = vec![
        junk("snapshot.json".into()),
        junk(format!("{version}.snapshot.json")),
        Rule::Replace {
            path_suffix: format!("/blobs/{layer}"),
            body: b"{\"signed\":{}}".to_vec(),
            content_type: "application/octet-stream".into(),
        },
    ];
    let err = refusal_through(&registry, &org.root, rules).await;
    // Refused while streaming, by the digest check (oci-client's or ours, whichever sees the
    // last byte first), naming the digest asked for.
    let refused = match &err {
        Error::DigestMismatch { expected, .. } => *expected == layer,
        Error::Registry { message, .. } => {
            message.contains("Invalid digest") && message.contains(&layer)
        }
        _ => false,
    };
    assert!(refused, "{err}");

    // The timestamp is small enough to travel inside its manifest (`data`): a manifest whose
    // embedded bytes are not the layer it describes is refused before anything is parsed.
    let manifest = registry
        .client
        .manifest(&org.metadata.tagged("timestamp.json"), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let mut rewritten: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let other = tuf_oci::layout::Entry::metadata_layer(b"{\"signed\":{}}");
    rewritten["layers"][0]["data"] = json!(other.data.unwrap());
    let rule = Rule::Replace {
        path_suffix: "/manifests/timestamp.json".into(),
        body: serde_json::to_vec(&rewritten).unwrap(),
        content_type: MANIFEST_MEDIA_TYPE.into(),
    };
    let err = refusal_through(&registry, &org.root, vec![rule]).await;
    assert!(
        matches!(&err, Error::DigestMismatch { what, .. } if what.contains("timestamp.json") && what.contains("embedded")),
        "{err}"
    );
}

#[tokio::test]
async fn rewritten_manifest_is_refused() {
    let registry = TestRegistry::start();
    let (org, signed) = solo(&registry, true).await;
    let manifest = registry
        .client
        .manifest(&registry.repo("solo/app").tagged("v1"), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let mut swapped: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    swapped["mediaType"] = json!(INDEX_MEDIA_TYPE);
    let rule = Rule::Replace {
        path_suffix: "/manifests/v1".into(),
        body: serde_json::to_vec(&swapped).unwrap(),
        content_type: INDEX_MEDIA_TYPE.into(),
    };
    let err = refusal_through(&registry, &org.root, vec![rule]).await;
    assert!(
        matches!(err, Error::DescriptorMismatch { field: "digest", signed: ref s, .. } if *s == signed.digest),
        "{err}"
    );
    assert_eq!(manifest.media_type, MANIFEST_MEDIA_TYPE);
}

/// Why `team-a/app:v1` does not verify through a registry serving `body` as its
/// `tuf-metadata` index; and that registry.
async fn pointer_replaced(
    registry: &TestRegistry,
    org: &tuf_oci_tests::Org,
    body: Vec<u8>,
) -> (Error, HostileRegistry) {
    let hostile = HostileRegistry::start(
        &registry.host,
        vec![Rule::Replace {
            path_suffix: "/manifests/tuf-metadata".into(),
            body,
            content_type: INDEX_MEDIA_TYPE.into(),
        }],
    )
    .await;
    let err = verifier(&hostile.host, &org.root)
        .verify(&image(&hostile.host, "team-a/app:v1"))
        .await
        .unwrap_err();
    (err, hostile)
}

#[tokio::test]
async fn oversized_pointer_is_refused() {
    let registry = TestRegistry::start();
    let TeamA { org, .. } = TeamA::create(&registry).await;
    let huge = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [],
        "annotations": {"padding": "x".repeat(5 << 20)},
    }))
    .unwrap();
    let (err, _) = pointer_replaced(&registry, &org, huge).await;
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn a_pointer_that_is_no_index_is_refused_naming_its_repository() {
    let registry = TestRegistry::start();
    let TeamA { org, .. } = TeamA::create(&registry).await;
    let body = br#"{"schemaVersion":2,"manifests":5}"#.to_vec();
    let (err, hostile) = pointer_replaced(&registry, &org, body).await;
    assert!(
        matches!(err, Error::Parse { ref role, .. }
            if *role == format!("{}/team-a/app:tuf-metadata", hostile.host)),
        "{err}"
    );
}

/// Bytes a proxy can push into a client that stopped reading, loopback's socket buffers
/// included: far less than a client reading on until the deadline takes in.
const SENT_TO_A_CLIENT_THAT_STOPPED: u64 = 32 * 1024 * 1024;

/// The error of a verification whose timestamp manifest is answered with `status` and a body
/// without end, and the bytes the proxy sent.
async fn endless_timestamp(status: &'static str) -> (Error, u64) {
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let sent = Arc::<std::sync::atomic::AtomicU64>::default();
    let rules = vec![Rule::Endless {
        path_suffix: "/manifests/timestamp.json".into(),
        status,
        sent: sent.clone(),
    }];
    let err = refusal_through(&registry, &org.root, rules).await;
    (err, sent.load(std::sync::atomic::Ordering::Relaxed))
}

#[tokio::test]
async fn an_endless_manifest_is_cut_at_its_limit() {
    // Read whole before its limit applied, such a manifest grew the process until the request
    // deadline (gigabytes a second on loopback).
    let (err, sent) = endless_timestamp("200 OK").await;
    assert!(
        matches!(err, Error::TooLarge { ref what, limit: 65536 } if what.contains("timestamp.json")),
        "{err}"
    );
    assert!(sent < SENT_TO_A_CLIENT_THAT_STOPPED, "{sent} bytes sent");
}

#[tokio::test]
async fn an_endless_error_answer_is_cut() {
    // An error answer is read for its message only: a few KiB. Server errors are tried three
    // times, each cut.
    let (err, sent) = endless_timestamp("500 Internal Server Error").await;
    assert!(
        matches!(err, Error::Registry { ref message, .. }
            if message.contains("code: 500") && message.contains("past 4 KiB")),
        "{err}"
    );
    assert!(
        sent < 3 * SENT_TO_A_CLIENT_THAT_STOPPED,
        "{sent} bytes sent"
    );
}

#[tokio::test]
async fn an_endless_tag_listing_answer_is_cut_at_its_limit() {
    let registry = TestRegistry::start();
    let sent = Arc::<std::sync::atomic::AtomicU64>::default();
    let proxy = HostileRegistry::start(
        &registry.host,
        vec![Rule::Endless {
            path_suffix: "/tags/list".into(),
            status: "200 OK",
            sent: sent.clone(),
        }],
    )
    .await;
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![proxy.host.clone()],
        timeout: Duration::from_secs(30),
    })
    .expect("registry client");
    let repository = tuf_oci::Repository::parse(&format!("{}/any/app", proxy.host)).unwrap();
    let err = client.tags(&repository).await.unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { ref what, .. } if what.contains("any/app")),
        "{err}"
    );
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    let limit = 64 * 1024 * 1024;
    assert!(
        sent < limit + SENT_TO_A_CLIENT_THAT_STOPPED,
        "{sent} bytes sent"
    );
}

#[tokio::test]
async fn a_registry_on_plain_http_may_send_reads_elsewhere() {
    // Registries storing blobs elsewhere answer a blob read with a redirect; one over plain
    // HTTP is followed as it is.
    let registry = TestRegistry::start();
    let repository = registry.repo("any/app");
    let blob = registry
        .client
        .push_blob(&repository, "application/octet-stream", b"content")
        .await
        .unwrap();
    let path = format!("/v2/any/app/blobs/{}", blob.digest);
    let rules = vec![Rule::Redirect {
        path_suffix: format!("/elsewhere{path}"),
        location: format!("http://{}{path}", registry.host),
    }];
    let proxy = HostileRegistry::start(&registry.host, rules).await;
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![proxy.host.clone()],
        timeout: Duration::from_secs(5),
    })
    .expect("registry client");
    let through =
        tuf_oci::Repository::parse(&format!("{}/elsewhere/v2/any/app", proxy.host)).unwrap();
    let read = client.blob(&through, &blob.digest, 1024).await;
    assert_eq!(read.unwrap(), b"content");
}

/// A registry with `solo/app:v1` signed, and the digest of its layer.
async fn solo_and_its_layer() -> (TestRegistry, String) {
    let registry = TestRegistry::start();
    let (_, signed) = solo(&registry, true).await;
    let manifest = registry.manifest_json("solo/app", &signed.digest).await;
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    (registry, layer)
}

/// Copies `solo/app:v1` to an OCI layout from a registry behind a proxy applying `rules`
/// (then one sending its layer on to HTTPS storage), with `credential` (base64
/// `user:password`) configured for it, if given: the `Authorization` headers the storage
/// heard, and what the proxy heard for the layer.
async fn copy_through_https_storage(
    rules: Vec<Rule>,
    credential: Option<&str>,
) -> (Vec<Option<String>>, Vec<Heard>) {
    let (source, layer) = solo_and_its_layer().await;
    let bytes = source
        .client
        .blob(&source.repo("solo/app"), &layer, 1 << 20)
        .await
        .unwrap();
    let store = HttpsStore::start(&bytes).await;
    let mut rules = rules;
    // After the rules wanting credentials: the read is sent on only once authorized.
    rules.push(Rule::Redirect {
        path_suffix: format!("/blobs/{layer}"),
        location: format!("{}/storage/{layer}", store.url),
    });
    let proxy = HostileRegistry::start(&source.host, rules).await;
    let docker_config = tempfile::tempdir().unwrap();
    if let Some(credential) = credential {
        let config = json!({ "auths": { proxy.host.clone(): { "auth": credential } } });
        std::fs::write(docker_config.path().join("config.json"), config.to_string()).unwrap();
    }
    copy_to_a_layout_trusting(&proxy.host, &store.ca, docker_config.path()).await;
    let heard = proxy.heard.lock().unwrap().clone();
    let layer_reads = heard
        .into_iter()
        .filter(|h| h.path.ends_with(&format!("/blobs/{layer}")))
        .collect();
    (store.heard().await, layer_reads)
}

/// A successful `tuf-oci copy` of `solo/app:v1` from `host` (plain HTTP) to an OCI layout,
/// trusting the CA certificate `ca` only, with the docker configuration in `docker_config`.
async fn copy_to_a_layout_trusting(host: &str, ca: &Path, docker_config: &Path) {
    let out = copy_to_a_layout_trying(host, ca, docker_config).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The same copy, whether it succeeds or not.
async fn copy_to_a_layout_trying(
    host: &str,
    ca: &Path,
    docker_config: &Path,
) -> std::process::Output {
    let layout = tempfile::tempdir().unwrap();
    tokio::process::Command::new(tuf_oci_tests::cli_binary())
        .env("SSL_CERT_FILE", ca)
        .env_remove("SSL_CERT_DIR")
        .env("DOCKER_CONFIG", docker_config)
        .args(["--insecure-registry", host, "copy"])
        .arg(format!("{host}/solo/app:v1"))
        .arg(format!("oci:{}", layout.path().display()))
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn storage_on_https_sending_reads_on_to_plain_http_is_not_followed() {
    // What a registry reached over HTTPS (here its storage) serves must not come over plain
    // HTTP from a host the user never marked insecure, where anyone on the way could answer.
    let (source, layer) = solo_and_its_layer().await;
    let elsewhere = HostileRegistry::start(&source.host, vec![]).await;
    let store =
        HttpsStore::redirecting(&format!("http://{}/storage/{layer}", elsewhere.host)).await;
    let rules = vec![Rule::Redirect {
        path_suffix: format!("/blobs/{layer}"),
        location: format!("{}/storage/{layer}", store.url),
    }];
    let proxy = HostileRegistry::start(&source.host, rules).await;
    let empty_docker_config = tempfile::tempdir().unwrap();
    let out = copy_to_a_layout_trying(&proxy.host, &store.ca, empty_docker_config.path()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a redirect from HTTPS to http://") && stderr.contains("not followed"),
        "{stderr}"
    );
    assert!(!store.heard().await.is_empty());
    let heard = elsewhere.heard.lock().unwrap().clone();
    assert!(heard.is_empty(), "{heard:#?}");
}

#[tokio::test]
async fn a_blob_sent_on_to_https_storage_is_read_there_without_the_registry_token() {
    // Distribution storing blobs in S3 redirects blob reads there. From a registry on plain
    // HTTP the hop is made by the client that holds the CA certificates (the plain one holds
    // none), and the registry's token does not go along.
    let (stored, layer_reads) = copy_through_https_storage(vec![Rule::RequireToken], None).await;
    assert!(stored.iter().all(Option::is_none), "{stored:?}");
    assert!(
        layer_reads
            .iter()
            .any(|h| h.authorization.as_deref() == Some("Bearer anonymous-token")),
        "{layer_reads:#?}"
    );
}

#[tokio::test]
async fn a_blob_sent_on_to_https_storage_is_read_there_without_the_registry_password() {
    // A registry wanting the user and password themselves: they go with the read to the
    // registry, not on to the storage.
    let credential = base64::engine::general_purpose::STANDARD.encode("reader:s3cret");
    let rules = vec![Rule::RequireBasic {
        credential: credential.clone(),
    }];
    let (stored, layer_reads) = copy_through_https_storage(rules, Some(&credential)).await;
    assert!(stored.iter().all(Option::is_none), "{stored:?}");
    assert!(
        layer_reads
            .iter()
            .any(|h| h.authorization.as_deref() == Some(format!("Basic {credential}").as_str())),
        "{layer_reads:#?}"
    );
}

#[tokio::test]
async fn poisoned_referrers_index_changes_nothing() {
    let registry = TestRegistry::start();
    let TeamA { org, signed, .. } = TeamA::create(&registry).await;
    let junk = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{"mediaType": MANIFEST_MEDIA_TYPE, "digest": format!("sha256:{}", "0".repeat(64)), "size": 1}],
    }))
    .unwrap();
    let hostile = HostileRegistry::start(
        &registry.host,
        vec![Rule::Replace {
            path_suffix: format!(
                "/manifests/{}",
                tuf_oci::layout::referrers_tag(&signed.digest)
            ),
            body: junk,
            content_type: INDEX_MEDIA_TYPE.into(),
        }],
    )
    .await;
    let verified = verifier(&hostile.host, &org.root)
        .verify(&image(&hostile.host, "team-a/app:v1"))
        .await
        .unwrap();
    assert_eq!(verified.digest(), signed.digest);
}

#[tokio::test]
async fn stalled_timestamp_is_bounded() {
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let hostile = HostileRegistry::start(
        &registry.host,
        vec![Rule::Stall {
            path_suffix: "/manifests/timestamp.json".into(),
        }],
    )
    .await;
    let start = std::time::Instant::now();
    let err = verifier(&hostile.host, &org.root)
        .verify(&image(&hostile.host, "solo/app:v1"))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(err, Error::Registry { ref message, .. } if message.contains("timed out")),
        "{err}"
    );
}

#[tokio::test]
async fn auth_less_registry_is_never_asked_for_a_token() {
    // Not an attack: the proxy counts requests. A registry without auth ignores the empty
    // credential the client starts with, so it is never asked (`GET /v2/`) whether it wants a
    // token; a client that asked before every request would double its requests.
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let proxy = HostileRegistry::start(&registry.host, vec![]).await;
    let verifier = verifier(&proxy.host, &org.root);
    for _ in 0..2 {
        verifier
            .verify(&image(&proxy.host, "solo/app:v1"))
            .await
            .unwrap();
    }
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(!seen.iter().any(|p| p == "/v2/"), "{seen:#?}");
    assert!(seen.len() > 4, "{seen:#?}");

    // Writes ask once per repository (image and metadata), not before each request.
    let destination = TestRegistry::start();
    let proxy = HostileRegistry::start(&destination.host, vec![]).await;
    let empty_docker_config = tempfile::tempdir().unwrap();
    let out = copy_app(&registry.host, &proxy.host, empty_docker_config.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = proxy.seen.lock().unwrap().clone();
    let pings = seen.iter().filter(|p| *p == "/v2/").count();
    let uploads = seen
        .iter()
        .filter(|p| p.contains("/blobs/uploads/"))
        .count();
    assert!(pings <= 2 && uploads > 2, "{seen:#?}");
}

/// `tuf-oci copy` of `solo/app:v1` from `source` to `destination` (both plain HTTP) with the
/// docker configuration in `docker_config`; awaited, so proxies on this runtime keep answering.
async fn copy_app(source: &str, destination: &str, docker_config: &Path) -> std::process::Output {
    copy_app_command(source, destination, docker_config)
        .output()
        .await
        .unwrap()
}

/// [`copy_app`] with credential helpers found on `path`.
async fn copy_app_on_path(
    source: &str,
    destination: &str,
    docker_config: &Path,
    path: String,
) -> std::process::Output {
    copy_app_command(source, destination, docker_config)
        .env("PATH", path)
        .output()
        .await
        .unwrap()
}

/// The command [`copy_app`] runs, for a test to add to.
fn copy_app_command(
    source: &str,
    destination: &str,
    docker_config: &Path,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(tuf_oci_tests::cli_binary());
    command
        .env("DOCKER_CONFIG", docker_config)
        .args(["--insecure-registry", source])
        .args(["--insecure-registry", destination])
        .arg("copy")
        .arg(format!("{source}/solo/app:v1"))
        .arg(format!("{destination}/solo/app:v1"));
    command
}

/// Hands out a token with a newline in it, which no `Authorization` header can carry.
fn token_that_is_no_header_value() -> Rule {
    Rule::Replace {
        path_suffix: "/token".into(),
        body: br#"{"token":"a\nb","expires_in":300}"#.to_vec(),
        content_type: "application/json".into(),
    }
}

#[tokio::test]
async fn a_token_that_is_no_header_value_is_a_refusal_not_a_panic() {
    // oci-client puts the token in an `Authorization` header with `unwrap`: a newline in it
    // panicked inside the verification (an image's pointer may name any registry). The
    // verification's reads are the project's own, which check the token first.
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let rules = vec![token_that_is_no_header_value(), Rule::RequireToken];
    match refusal_through(&registry, &org.root, rules).await {
        Error::Registry { reference, message } => {
            assert!(reference.contains("org/tuf") || reference.contains("solo/app"));
            assert!(
                message.contains("a token that no HTTP header can carry"),
                "{message}"
            );
        }
        other => panic!("expected a registry error, got {other}"),
    }
}

#[tokio::test]
async fn a_copy_to_a_registry_handing_out_a_bad_push_token_fails_naming_it() {
    // Anyone may pull there, pushes want a token, and the token handed out is no header
    // value: the copy crashed (exit 101) on its first request carrying it, a push through
    // oci-client (the copy's reads of the destination need no token).
    let (source, destination, _) = signed_source_and_destination().await;
    let rules = vec![token_that_is_no_header_value(), Rule::RequireTokenToWrite];
    let proxy = HostileRegistry::start(&destination.host, rules).await;
    let docker_config = tempfile::tempdir().unwrap();
    let out = copy_app(&source.host, &proxy.host, docker_config.path()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the registry client failed on the registry's answer"),
        "{stderr}"
    );
}

/// A successful `tuf-oci copy` of `solo/app:v1` to a registry behind a proxy applying `rules`,
/// with the user and password of a signer for it in the docker configuration: what the proxy
/// heard, and those credentials as a `Basic` header carries them.
async fn copy_as_signer(rules: Vec<Rule>) -> (Vec<Heard>, String) {
    let auth = base64::engine::general_purpose::STANDARD.encode("signer:s3cret");
    (
        copy_with_credentials(rules, json!({ "auth": auth })).await,
        auth,
    )
}

/// Whether a `PUT` the proxy heard carried the token [`Rule::RequireToken`] hands out.
fn a_write_carried_the_token(heard: &[Heard]) -> bool {
    heard
        .iter()
        .any(|h| h.method == "PUT" && h.authorization.as_deref() == Some("Bearer anonymous-token"))
}

/// A successful `tuf-oci copy` of `solo/app:v1` to a registry behind a proxy applying `rules`,
/// with `credentials` its entry in the docker configuration's `auths`: what the proxy heard.
async fn copy_with_credentials(rules: Vec<Rule>, credentials: serde_json::Value) -> Vec<Heard> {
    let (out, heard) = try_copy_with_credentials(rules, credentials).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    heard
}

/// [`copy_with_credentials`], succeeding or not: how the copy ended, and what the proxy heard.
async fn try_copy_with_credentials(
    rules: Vec<Rule>,
    credentials: serde_json::Value,
) -> (std::process::Output, Vec<Heard>) {
    let (source, destination, _) = signed_source_and_destination().await;
    let proxy = HostileRegistry::start(&destination.host, rules).await;
    let docker_config = tempfile::tempdir().unwrap();
    let config = json!({ "auths": { proxy.host.clone(): credentials } });
    std::fs::write(docker_config.path().join("config.json"), config.to_string()).unwrap();
    let out = copy_app(&source.host, &proxy.host, docker_config.path()).await;
    let heard = proxy.heard.lock().unwrap().clone();
    (out, heard)
}

#[tokio::test]
async fn a_signer_with_credentials_reads_and_writes_with_the_token_they_get() {
    // Credentials from the docker configuration are exchanged for a token, which every
    // request must carry: oci-client's writes and the project's own reads of manifests.
    let (heard, auth) = copy_as_signer(vec![Rule::RequireToken]).await;
    let token = "Bearer anonymous-token";
    let carried = |method: &str, part: &str| {
        heard.iter().any(|h| {
            h.method == method && h.path.contains(part) && h.authorization.as_deref() == Some(token)
        })
    };
    assert!(
        carried("GET", "/manifests/") && carried("PUT", "/manifests/"),
        "{heard:#?}"
    );
    // The user and password went to the token service, and nowhere else.
    let exchanged = format!("Basic {auth}");
    let with_them: Vec<_> = heard
        .iter()
        .filter(|h| h.authorization.as_deref() == Some(exchanged.as_str()))
        .map(|h| h.path.as_str())
        .collect();
    assert!(
        !with_them.is_empty() && with_them.iter().all(|path| *path == "/token"),
        "{heard:#?}"
    );
}

#[tokio::test]
async fn an_identity_token_is_exchanged_as_a_refresh_token() {
    // `docker login` stores an identity token for registries that hand one out (Azure's):
    // an OAuth 2 refresh token, which such registries do not take as an access token. It
    // was sent to the registry as it was.
    let identity = json!({ "identitytoken": "refresh-me" });
    let heard = copy_with_credentials(vec![Rule::RequireToken], identity).await;
    let grant = "grant_type=refresh_token&refresh_token=refresh-me&client_id=tuf-oci\
                 &scope=repository%3Asolo%2Fapp%3Apull%2Cpush&service=hostile";
    assert!(
        heard
            .iter()
            .any(|h| h.method == "POST" && h.path == "/token" && h.form.as_deref() == Some(grant)),
        "{heard:#?}"
    );
    // No token was asked for without it.
    assert!(
        heard
            .iter()
            .filter(|h| h.path == "/token")
            .all(|h| h.form.as_deref().is_some_and(
                |form| form.starts_with("grant_type=refresh_token&refresh_token=refresh-me&")
            )),
        "{heard:#?}"
    );
    // The identity token itself went nowhere but in that form.
    assert!(
        !heard.iter().any(|h| h
            .authorization
            .as_deref()
            .is_some_and(|a| a.contains("refresh-me"))),
        "{heard:#?}"
    );
    assert!(a_write_carried_the_token(&heard), "{heard:#?}");
}

#[tokio::test]
async fn an_identity_token_goes_as_a_password_to_a_token_service_without_oauth() {
    // Token services that answer OAuth 2's POST with 404 (GCR did) take the identity token
    // as the password of a GET, as containerd falls back.
    let refuse_posts = Rule::Refuse {
        path_suffix: "/token".into(),
        method: Some("POST"),
        status: "404 Not Found",
        body: "{}".into(),
    };
    let identity = json!({ "identitytoken": "refresh-me" });
    let heard = copy_with_credentials(vec![refuse_posts, Rule::RequireToken], identity).await;
    let password = base64::engine::general_purpose::STANDARD.encode(":refresh-me");
    assert!(
        heard.iter().any(|h| h.method == "GET"
            && h.path == "/token"
            && h.authorization.as_deref() == Some(format!("Basic {password}").as_str())),
        "{heard:#?}"
    );
    assert!(a_write_carried_the_token(&heard), "{heard:#?}");
}

#[tokio::test]
async fn an_identity_token_refused_by_both_ways_of_the_token_service_says_both() {
    // An identity token that expired: OAuth 2's answer says so, the fallback's only that
    // the password is wrong. Both are said.
    let refuse = |method, status, body: &str| Rule::Refuse {
        path_suffix: "/token".into(),
        method: Some(method),
        status,
        body: body.into(),
    };
    let rules = vec![
        refuse(
            "POST",
            "400 Bad Request",
            r#"{"error":"invalid_grant","error_description":"refresh token expired"}"#,
        ),
        refuse(
            "GET",
            "401 Unauthorized",
            r#"{"details":"incorrect password"}"#,
        ),
        Rule::RequireToken,
    ];
    let identity = json!({ "identitytoken": "expired" });
    let (out, _) = try_copy_with_credentials(rules, identity).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("answered 401 Unauthorized")
            && stderr.contains("incorrect password")
            && stderr.contains("after its OAuth 2 answer to the identity token: 400 Bad Request")
            && stderr.contains("refresh token expired"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_identity_token_is_not_sent_on_where_its_token_service_redirects() {
    // A 307 keeps a POST's body: followed, it would hand the refresh token to wherever the
    // answer names.
    let somewhere = TestRegistry::start();
    let elsewhere = HostileRegistry::start(&somewhere.host, vec![]).await;
    let rules = vec![
        Rule::Redirect {
            path_suffix: "/token".into(),
            location: format!("http://{}/token", elsewhere.host),
        },
        Rule::RequireToken,
    ];
    let identity = json!({ "identitytoken": "refresh-me" });
    let (out, _) = try_copy_with_credentials(rules, identity).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/token answered 307"), "{stderr}");
    let followed = elsewhere.heard.lock().unwrap().clone();
    assert!(followed.is_empty(), "{followed:#?}");
}

#[tokio::test]
async fn a_registry_failing_once_to_say_what_it_asks_for_is_asked_again() {
    // A server error at the API root is no answer "no credentials wanted": taken for one, a
    // token-wanting registry's writes would go without, and a streamed upload cannot be sent
    // again.
    let times = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let fail = Rule::Fail {
        path_suffix: "/v2/".into(),
        method: "GET",
        times: times.clone(),
    };
    let (heard, _) = copy_as_signer(vec![fail, Rule::RequireTokenToWrite]).await;
    assert_eq!(times.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Every request of either scope carried the token: neither took the failure for "no
    // credentials wanted".
    let without: Vec<_> = heard
        .iter()
        .filter(|h| h.path != "/v2/" && h.path != "/token")
        .filter(|h| h.authorization.as_deref() != Some("Bearer anonymous-token"))
        .collect();
    assert!(
        without.is_empty() && heard.iter().any(|h| h.method == "PUT"),
        "{without:#?}"
    );
}

/// A docker configuration in `dir` naming a credential helper for `host`, the shell `script`
/// in `dir`: the `PATH` that finds it.
fn credential_helper(dir: &Path, host: &str, script: &str) -> String {
    let helper = dir.join("docker-credential-test");
    std::fs::write(&helper, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = json!({ "credHelpers": { host: "test" } });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[tokio::test]
async fn a_credential_helper_is_asked_once_for_many_requests() {
    // A credential helper named by the docker configuration is a process started for each
    // read of the credentials: a copy's dozens of requests ask it once.
    let (source, destination, _) = signed_source_and_destination().await;
    let proxy = HostileRegistry::start(&destination.host, vec![Rule::RequireToken]).await;
    let dir = tempfile::tempdir().unwrap();
    let asked = dir.path().join("asked");
    let script = format!(
        "echo get >> '{}'\ncat > /dev/null\n\
         echo '{{\"Username\":\"signer\",\"Secret\":\"s3cret\"}}'",
        asked.display()
    );
    let path = credential_helper(dir.path(), &proxy.host, &script);
    let out = copy_app_on_path(&source.host, &proxy.host, dir.path(), path).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = proxy.seen.lock().unwrap().len();
    let asked = std::fs::read_to_string(&asked).unwrap().lines().count();
    assert!(
        requests > 10 && asked == 1,
        "{asked} asked, {requests} requests"
    );
}

#[tokio::test]
async fn a_credential_helper_that_never_answers_fails_the_copy_naming_it() {
    // A helper waiting for a passphrase no one types held its registry's requests for as
    // long as it waited (a node's verifier, for ever). Past the request deadline the copy
    // fails, naming the helper, and ends: the helper's thread does not hold the process.
    let (source, destination, _) = signed_source_and_destination().await;
    let dir = tempfile::tempdir().unwrap();
    let path = credential_helper(dir.path(), &source.host, "exec sleep 20");
    let started = std::time::Instant::now();
    let out = copy_app_command(&source.host, &destination.host, dir.path())
        .env("PATH", path)
        .args(["--timeout", "1"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the credential helper the docker configuration names for {} did not answer within 1 s",
            source.host
        )),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{stderr}");
}

#[tokio::test]
async fn a_docker_configuration_that_cannot_give_its_credentials_says_why() {
    // A helper that fails (a locked keychain), or a config.json that is no JSON, went
    // anonymous without a word, and the signer met a bare 401 from a registry that wanted the
    // credentials. The copy fails naming the configuration and the helper's answer instead.
    let (source, destination, _) = signed_source_and_destination().await;
    let dir = tempfile::tempdir().unwrap();
    let path = credential_helper(
        dir.path(),
        &source.host,
        "cat > /dev/null; echo 'keychain locked' >&2; exit 1",
    );
    let out = copy_app_on_path(&source.host, &destination.host, dir.path(), path).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the docker configuration's credentials for {} cannot be read ({}/config.json)",
            source.host,
            dir.path().display()
        )) && stderr.contains("keychain locked"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("config.json"), b"{ not json").unwrap();
    let out = copy_app(&source.host, &destination.host, dir.path()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Unable to read config"), "{stderr}");

    // No configuration at all is no credentials, as ever.
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let out = copy_app(&source.host, &destination.host, dir.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Nor is a store for every registry that holds no login for these: as docker reads it.
    let path = credential_helper(
        dir.path(),
        &source.host,
        "cat > /dev/null; echo 'credentials not found in native keychain'; exit 1",
    );
    std::fs::write(dir.path().join("config.json"), r#"{"credsStore":"test"}"#).unwrap();
    let out = copy_app_on_path(&source.host, &destination.host, dir.path(), path).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn credentials_go_only_to_a_registry_that_asks_for_them() {
    // A registry that wants no credentials is not given the docker configuration's user and
    // password, over plain HTTP least of all.
    let (heard, auth) = copy_as_signer(vec![]).await;
    assert!(heard.iter().any(|h| h.method == "PUT"), "{heard:#?}");
    assert!(
        !heard
            .iter()
            .any(|h| h.authorization.as_deref() == Some(format!("Basic {auth}").as_str())),
        "{heard:#?}"
    );
}

#[tokio::test]
async fn an_anonymous_copy_to_a_registry_wanting_tokens_to_write_gets_one() {
    // Anyone may pull and push there, but pushes want an (anonymous) token. Blobs are streamed
    // to another registry, and a stream cannot be sent again: the copy asks the registry
    // before its first write instead of learning it from a 401.
    let heard = anonymous_copy(Rule::RequireTokenToWrite).await;
    assert!(heard.iter().any(|h| h.path == "/token"), "{heard:#?}");
}

/// A successful anonymous `tuf-oci copy` of `solo/app:v1` to a registry behind a proxy
/// applying `rule`, verified there: what the proxy heard.
async fn anonymous_copy(rule: Rule) -> Vec<Heard> {
    let (source, destination, org) = signed_source_and_destination().await;
    let proxy = HostileRegistry::start(&destination.host, vec![rule]).await;
    let empty_docker_config = tempfile::tempdir().unwrap();
    let out = copy_app(&source.host, &proxy.host, empty_docker_config.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    verifier(&destination.host, &org.root)
        .verify(&image(&destination.host, "solo/app:v1"))
        .await
        .unwrap();
    proxy.heard.lock().unwrap().clone()
}

#[tokio::test]
async fn a_copy_within_a_registry_wanting_tokens_mounts_with_a_token_for_both_repositories() {
    // The push token names the destination alone: a mount refused with it would throw it
    // away and ask for it again, blob after blob. Mounts get a token granting both
    // repositories, as docker asks for one.
    let registry = TestRegistry::start();
    solo(&registry, true).await;
    let proxy = HostileRegistry::start(&registry.host, vec![Rule::RequireToken]).await;
    let empty_docker_config = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(tuf_oci_tests::cli_binary())
        .env("DOCKER_CONFIG", empty_docker_config.path())
        .args(["--insecure-registry", &proxy.host, "copy"])
        .arg(format!("{}/solo/app:v1", proxy.host))
        .arg(format!("{}/prod/app:v1", proxy.host))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("mounted blob"), "{stderr}");
    assert!(!stderr.contains("copied blob"), "{stderr}");
    let heard = proxy.heard.lock().unwrap().clone();
    let both = heard.iter().filter(|h| {
        h.path == "/token"
            && h.query
                .contains("scope=repository%3Aprod%2Fapp%3Apull%2Cpush")
            && h.query.contains("scope=repository%3Asolo%2Fapp%3Apull")
    });
    assert_eq!(
        both.count(),
        1,
        "one token for both repositories: {heard:#?}"
    );
    let mounts: Vec<_> = heard
        .iter()
        .filter(|h| h.query.contains("mount="))
        .collect();
    assert!(
        mounts
            .iter()
            .all(|h| h.authorization.as_deref() == Some("Bearer anonymous-token")),
        "{mounts:#?}"
    );
    let prod = registry.tagged_digest("prod/app", "v1").await;
    assert!(prod.is_some());
    assert_eq!(prod, registry.tagged_digest("solo/app", "v1").await);
}

#[tokio::test]
async fn a_registry_trickling_a_layer_cannot_hold_a_copy_open() {
    // Each read comes well within the read timeout (1 s here), so only a deadline over the
    // whole blob ends it: the request deadline plus a second per 64 KiB.
    let (source, layer) = solo_and_its_layer().await;
    let rule = Rule::Trickle {
        path_suffix: format!("/blobs/{layer}"),
        bytes: 64,
        pause: Duration::from_millis(200),
    };
    let proxy = HostileRegistry::start(&source.host, vec![rule]).await;
    // Into a layout: an upload to a registry would time out on its own trickling body.
    let layout = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new(tuf_oci_tests::cli_binary())
        .args(["--timeout", "1", "--insecure-registry", &proxy.host, "copy"])
        .arg(format!("{}/solo/app:v1", proxy.host))
        .arg(format!("oci:{}", layout.path().display()))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&layer) && stderr.contains("timed out after 1 s"),
        "{stderr}"
    );
    // The whole layer would have taken over 6 s.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn registry_wanting_anonymous_tokens_gets_one_per_scope() {
    // Registries such as Docker Hub want a token even for anonymous pulls. The first request
    // is refused (401); the client fetches a token for that repository and keeps it.
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let proxy = HostileRegistry::start(&registry.host, vec![Rule::RequireToken]).await;
    let verifier = verifier(&proxy.host, &org.root);
    verifier
        .verify(&image(&proxy.host, "solo/app:v1"))
        .await
        .unwrap();
    let first = proxy.seen.lock().unwrap().clone();
    let tokens = first.iter().filter(|p| *p == "/token").count();
    assert_eq!(tokens, 1, "one repository, one token: {first:#?}");
    verifier
        .verify(&image(&proxy.host, "solo/app:v1"))
        .await
        .unwrap();
    let seen = proxy.seen.lock().unwrap().clone();
    let again = &seen[first.len()..];
    assert!(
        !again.iter().any(|p| p == "/token" || p == "/v2/"),
        "the token is kept: {again:#?}"
    );

    // An image beside its metadata repository: two repositories, two tokens, though the
    // client asks for root N+1 and the timestamp at once.
    let registry = TestRegistry::start();
    let team = TeamA::create(&registry).await;
    let proxy = HostileRegistry::start(&registry.host, vec![Rule::RequireToken]).await;
    self::verifier(&proxy.host, &team.org.root)
        .verify(&image(&proxy.host, "team-a/app:v1"))
        .await
        .unwrap();
    let seen = proxy.seen.lock().unwrap().clone();
    let tokens = seen.iter().filter(|p| *p == "/token").count();
    assert_eq!(tokens, 2, "two repositories, two tokens: {seen:#?}");
}

#[tokio::test]
async fn a_registry_wanting_tokens_per_repository_gets_them() {
    // The API root answers anyone, the repositories want tokens: the challenge that says so
    // comes with the 401 to a repository's request. Taking the API root's word alone, the
    // client asked the token service for nothing and was refused again.
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let proxy = HostileRegistry::start(&registry.host, vec![Rule::RequireTokenBeyondRoot]).await;
    verifier(&proxy.host, &org.root)
        .verify(&image(&proxy.host, "solo/app:v1"))
        .await
        .unwrap();
    let heard = proxy.heard.lock().unwrap().clone();
    let scopes: Vec<_> = heard
        .iter()
        .filter(|h| h.path == "/token")
        .map(|h| h.query.as_str())
        .collect();
    assert!(
        scopes.contains(&"scope=repository%3Asolo%2Fapp%3Apull&service=hostile"),
        "{heard:#?}"
    );

    // A signer's credentials go to the token service for pushes too, and nowhere else.
    let (heard, auth) = copy_as_signer(vec![Rule::RequireTokenBeyondRoot]).await;
    let exchanged = format!("Basic {auth}");
    let with_them: Vec<_> = heard
        .iter()
        .filter(|h| h.authorization.as_deref() == Some(exchanged.as_str()))
        .map(|h| (h.path.as_str(), h.query.as_str()))
        .collect();
    assert!(
        with_them.contains(&(
            "/token",
            "scope=repository%3Asolo%2Fapp%3Apull%2Cpush&service=hostile"
        )) && with_them.iter().all(|(path, _)| *path == "/token"),
        "{heard:#?}"
    );
    assert!(a_write_carried_the_token(&heard), "{heard:#?}");
}

#[tokio::test]
async fn a_registry_that_wanted_a_token_per_repository_is_asked_first_in_the_next() {
    // Once the registry refused an anonymous read, a repository not read before has its
    // challenge asked before its first request, not after a 401 of its own.
    let registry = TestRegistry::start();
    let proxy = HostileRegistry::start(&registry.host, vec![Rule::RequireTokenBeyondRoot]).await;
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![proxy.host.clone()],
        timeout: Duration::from_secs(5),
    })
    .expect("registry client");
    for name in ["any/one", "any/two"] {
        let repository = tuf_oci::Repository::parse(&format!("{}/{name}", proxy.host)).unwrap();
        let read = client.manifest(&repository.tagged("v1"), 1024).await;
        assert!(read.unwrap().is_none());
    }
    let heard = proxy.heard.lock().unwrap().clone();
    let second: Vec<_> = heard
        .iter()
        .filter(|h| h.path == "/v2/any/two/manifests/v1")
        .collect();
    assert!(
        !second.is_empty()
            && second
                .iter()
                .all(|h| h.authorization.as_deref() == Some("Bearer anonymous-token")),
        "{heard:#?}"
    );
}

#[tokio::test]
async fn a_token_service_refusing_says_why() {
    // The reason is in the body of its 401, which the registry's own 401s need not be read
    // for.
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let rules = vec![
        Rule::Refuse {
            path_suffix: "/token".into(),
            method: None,
            status: "401 Unauthorized",
            body: r#"{"details":"incorrect username or password"}"#.into(),
        },
        Rule::RequireToken,
    ];
    match refusal_through(&registry, &org.root, rules).await {
        Error::Registry { message, .. } => assert!(
            message.contains("/token answered 401 Unauthorized")
                && message.contains("incorrect username or password"),
            "{message}"
        ),
        other => panic!("expected a registry error, got {other}"),
    }
}

#[tokio::test]
async fn a_token_service_moved_to_https_is_followed_there() {
    // A token service on plain HTTP sending its requests on to HTTPS, as a registry's blob
    // reads may be: followed by the client holding the CA certificates.
    let registry = TestRegistry::start();
    solo(&registry, true).await;
    let store = HttpsStore::start(br#"{"token":"anonymous-token"}"#).await;
    let rules = vec![
        Rule::Redirect {
            path_suffix: "/token".into(),
            location: format!("{}/token", store.url),
        },
        Rule::RequireToken,
    ];
    let proxy = HostileRegistry::start(&registry.host, rules).await;
    let empty_docker_config = tempfile::tempdir().unwrap();
    copy_to_a_layout_trusting(&proxy.host, &store.ca, empty_docker_config.path()).await;
    assert!(!store.heard().await.is_empty());
}

#[tokio::test]
async fn a_challenge_answered_where_the_registry_sent_the_ping_is_not_taken() {
    // The token service a registry names decides where credentials go: only the registry's
    // own challenge names it, not one answered wherever its `/v2/` sends the request on.
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let elsewhere = HostileRegistry::start(&registry.host, vec![Rule::RequireToken]).await;
    let rules = vec![
        Rule::Redirect {
            path_suffix: "/v2/".into(),
            location: format!("http://{}/v2/", elsewhere.host),
        },
        Rule::RequireTokenBeyondRoot,
    ];
    let proxy = HostileRegistry::start(&registry.host, rules).await;
    let refused = verifier(&proxy.host, &org.root)
        .verify(&image(&proxy.host, "solo/app:v1"))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains(&format!(
            "http://{}/v2/, where the registry sent the request, answered 401",
            elsewhere.host
        )),
        "{refused}"
    );
    let asked = elsewhere.seen.lock().unwrap().clone();
    assert!(!asked.iter().any(|path| path == "/token"), "{asked:?}");
}

#[tokio::test]
async fn an_anonymous_copy_to_a_registry_wanting_tokens_per_repository_gets_them() {
    // The API root answers anyone, so nothing asks before the first write; the copy's reads
    // of the destination meet the 401 first, and its writes then ask each repository.
    let heard = anonymous_copy(Rule::RequireTokenBeyondRoot).await;
    assert!(a_write_carried_the_token(&heard), "{heard:#?}");
}

#[tokio::test]
async fn an_endless_token_answer_is_cut_at_its_limit() {
    // The registry names the token service; one answering without end grew the client
    // until the request deadline.
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let sent = Arc::<std::sync::atomic::AtomicU64>::default();
    let rules = vec![
        Rule::Endless {
            path_suffix: "/token".into(),
            status: "200 OK",
            sent: sent.clone(),
        },
        Rule::RequireToken,
    ];
    match refusal_through(&registry, &org.root, rules).await {
        Error::Registry { message, .. } => {
            assert!(message.contains("answered past 65536 bytes"), "{message}");
        }
        other => panic!("expected a registry error, got {other}"),
    }
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent < SENT_TO_A_CLIENT_THAT_STOPPED, "{sent} bytes sent");
}

#[tokio::test]
async fn paged_tag_lists_are_read_to_the_end() {
    // Not an attack: registries may answer tag listings in pages. Writers list tags to find
    // role versions stored after the published ones; a missed page would hide them.
    let registry = TestRegistry::start();
    for i in 0..5 {
        registry
            .push_image("paged/app", &format!("t{i}"), "x")
            .await;
    }
    let proxy = HostileRegistry::start(&registry.host, vec![Rule::PageTags { per_page: 2 }]).await;
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![proxy.host.clone()],
        timeout: Duration::from_secs(5),
    })
    .expect("registry client");
    let repository = tuf_oci::Repository::parse(&format!("{}/paged/app", proxy.host)).unwrap();
    let mut tags = client.tags(&repository).await.unwrap();
    tags.sort();
    assert_eq!(tags, ["t0", "t1", "t2", "t3", "t4"]);
    let listings = proxy
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.ends_with("/tags/list"))
        .count();
    assert_eq!(listings, 4, "three pages and the empty answer after them");

    // Paged by a cursor each page's `Link` names, `last` ignored: the links are followed.
    let listing = |rule: Rule| {
        let registry = &registry;
        async move {
            let proxy = HostileRegistry::start(&registry.host, vec![rule]).await;
            let client = Registry::new(&RegistryConfig {
                insecure_hosts: vec![proxy.host.clone()],
                timeout: Duration::from_secs(5),
            })
            .expect("registry client");
            let repository =
                tuf_oci::Repository::parse(&format!("{}/paged/app", proxy.host)).unwrap();
            let listed = client.tags(&repository).await;
            let seen = proxy.seen.lock().unwrap().clone();
            (
                listed,
                seen.iter().filter(|p| p.ends_with("/tags/list")).count(),
            )
        }
    };
    let by_link = |lost_from, link_to| Rule::PageTagsByLink {
        per_page: 2,
        lost_from,
        link_to,
    };
    let (tags, listings) = listing(by_link(None, None)).await;
    assert_eq!(tags.unwrap(), ["t0", "t1", "t2", "t3", "t4"]);
    assert_eq!(
        listings, 4,
        "three pages by their links, and one after the last tag"
    );

    // A listing that cannot be read whole is an error, not the pages read.
    let lost = listing(by_link(Some(1), None)).await.0.unwrap_err();
    assert!(
        lost.to_string()
            .contains("page 2 of the tag listing was not found"),
        "{lost}"
    );
    let first_again = Some("/v2/paged/app/tags/list".to_string());
    let loop_ = listing(by_link(None, first_again)).await.0.unwrap_err();
    assert!(loop_.to_string().contains("its pages lead back"), "{loop_}");
    // Nor is a next page read from another place than the registry.
    let elsewhere = format!("http://{}/v2/paged/app/tags/list?page=1", registry.host);
    let away = listing(by_link(None, Some(elsewhere.clone())))
        .await
        .0
        .unwrap_err();
    assert!(
        away.to_string().contains(&format!(
            "names its next page at {elsewhere}, elsewhere than the registry"
        )),
        "{away}"
    );
}

#[tokio::test]
async fn a_tag_listing_without_end_is_cut() {
    // A registry can answer every page of a tag listing with tags never seen before: the
    // listing (of a copy's source, of a writer's metadata repository) must end.
    let registry = TestRegistry::start();
    let proxy =
        HostileRegistry::start(&registry.host, vec![Rule::InventTags { per_page: 20_000 }]).await;
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![proxy.host.clone()],
        timeout: Duration::from_secs(5),
    })
    .expect("registry client");
    let repository = tuf_oci::Repository::parse(&format!("{}/any/app", proxy.host)).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), client.tags(&repository))
        .await
        .expect("the listing never ended")
        .unwrap_err();
    assert!(
        matches!(err, Error::Registry { ref message, .. }
            if message.contains("goes on past 1000000 tags")),
        "{err}"
    );

    // Nor one adding a tag a page: the pages are counted too.
    let proxy =
        HostileRegistry::start(&registry.host, vec![Rule::InventTags { per_page: 1 }]).await;
    let repository = tuf_oci::Repository::parse(&format!("{}/any/app", proxy.host)).unwrap();
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![proxy.host.clone()],
        timeout: Duration::from_secs(5),
    })
    .expect("registry client");
    let err = client.tags(&repository).await.unwrap_err();
    assert!(
        matches!(err, Error::Registry { ref message, .. }
            if message.contains("goes on past 10000 pages")),
        "{err}"
    );
}

#[tokio::test]
async fn copy_from_a_source_listing_a_climbing_tag_writes_nothing_elsewhere() {
    // A hostile source lists a "tag" whose dots climb out of the repository: pasted into the
    // destination's URL it would re-point another repository's tag at the source's choice
    // (here an older release of prod/web, whose blobs the destination still has).
    let source = TestRegistry::start();
    let destination = TestRegistry::start();
    TeamA::create(&source).await;
    source.push_image("prod/web", "latest", "old release").await;
    // Its blobs where the copy looks for them.
    source.push_image("team-a/app", "old", "old release").await;
    destination
        .push_image("prod/web", "previous", "old release")
        .await;
    let current = destination
        .push_image("prod/web", "latest", "new release")
        .await;
    let listed = source
        .client
        .tags(&source.repo("team-a/app"))
        .await
        .unwrap();
    let climbing = "sha256-/../../../../prod/web/manifests/latest";
    let body = json!({
        "name": "team-a/app",
        "tags": listed.iter().map(String::as_str).chain([climbing]).collect::<Vec<_>>(),
    });
    let hostile = HostileRegistry::start(
        &source.host,
        vec![Rule::Replace {
            path_suffix: "/team-a/app/tags/list".into(),
            body: body.to_string().into_bytes(),
            content_type: "application/json".into(),
        }],
    )
    .await;
    let out = tokio::process::Command::new(tuf_oci_tests::cli_binary())
        .args(["--insecure-registry", &hostile.host])
        .args(["--insecure-registry", &destination.host])
        .arg("copy")
        .arg(format!("{}/team-a/app", hostile.host))
        .arg(format!("{}/team-a/app", destination.host))
        .arg("--all-tags")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the copy must fail: {stderr}");
    assert!(
        stderr.contains(&format!("{climbing:?}, which is not a valid tag")),
        "the error names the listed tag: {stderr}"
    );
    let latest = destination
        .client
        .manifest(&destination.repo("prod/web").tagged("latest"), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        latest.digest, current.digest,
        "prod/web:latest is untouched"
    );
}

#[tokio::test]
async fn a_delegated_role_that_never_comes_holds_up_only_the_images_it_signs() {
    // A registry that answers the top-level metadata but never a delegated role (or is that
    // slow for it) must not hold up images signed by other roles of the same repository.
    let registry = TestRegistry::start();
    let team = TeamA::create(&registry).await;
    let org = &team.org;
    registry.push_image("other/app", "v1", "other").await;
    org.sign_in_targets(&registry, "other/app:v1").await;
    org.publish(&registry).await;
    let hanging = HostileRegistry::start(
        &registry.host,
        vec![Rule::Stall {
            path_suffix: ".team-a.json".into(),
        }],
    )
    .await;
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![hanging.host.clone()],
        timeout: Duration::from_secs(60),
    })
    .expect("registry client");
    let cache = tempfile::tempdir().unwrap();
    let metadata =
        tuf_oci::location::Repository::parse(&format!("{}/org/tuf", hanging.host)).unwrap();
    let verifier = Verifier::new(client, org.trust(Some(metadata), Some(cache.path()))).unwrap();
    let other = image(&hanging.host, "other/app:v1");
    verifier.verify(&other).await.unwrap();

    let held_up = tokio::spawn({
        let (verifier, image) = (verifier.clone(), image(&hanging.host, "team-a/app:v1"));
        async move { verifier.verify(&image).await }
    });
    hanging.asked(".team-a.json", 1).await;
    let verified = tokio::time::timeout(Duration::from_secs(20), verifier.verify(&other))
        .await
        .expect("held up by a search for another role")
        .unwrap();
    assert_eq!(verified.name(), "other/app:v1");
    held_up.abort();
}

#[tokio::test]
async fn a_publication_landing_while_a_delegated_role_is_read_is_no_rollback() {
    // One verification reads a delegated role as the snapshot it trusts names it, while team-a
    // signs again and another verification on the same trusted metadata stores the newer
    // version first. The first is then behind the stored state, not the registry: it updates
    // and searches again.
    let registry = TestRegistry::start();
    let team = TeamA::create(&registry).await;
    let (org, team_key) = (&team.org, [team.org.key("team-a").await]);
    let permits = Arc::new(tokio::sync::Semaphore::new(1000));
    let held = HostileRegistry::start(
        &registry.host,
        vec![Rule::Hold {
            path_suffix: ".team-a.json".into(),
            permits: permits.clone(),
        }],
    )
    .await;
    let cache = tempfile::tempdir().unwrap();
    let verifier_through = |host: &str| {
        let client = Registry::new(&RegistryConfig {
            insecure_hosts: vec![host.to_string()],
            ..Default::default()
        })
        .expect("registry client");
        let metadata = tuf_oci::location::Repository::parse(&format!("{host}/org/tuf")).unwrap();
        Verifier::new(client, org.trust(Some(metadata), Some(cache.path()))).unwrap()
    };
    let (reader, other) = (
        verifier_through(&held.host),
        verifier_through(&registry.host),
    );
    let signed = image(&held.host, "team-a/app:v1");
    reader.verify(&signed).await.unwrap();
    permits.forget_permits(permits.available_permits());

    org.sign(
        &registry,
        &registry.image("team-a/app:v2"),
        "team-a",
        &team_key,
    )
    .await;
    org.publish(&registry).await;
    let reading = tokio::spawn({
        let reader = reader.clone();
        async move { reader.verify(&signed).await }
    });
    held.asked(".team-a.json", 2).await;
    registry.push_image("team-a/app", "v3", "three").await;
    org.sign(
        &registry,
        &registry.image("team-a/app:v3"),
        "team-a",
        &team_key,
    )
    .await;
    org.publish(&registry).await;
    other
        .verify(&registry.image("team-a/app:v3"))
        .await
        .unwrap();
    permits.add_permits(10);
    let verified = reading.await.unwrap().unwrap();
    assert_eq!(verified.name(), "team-a/app:v1");
}
