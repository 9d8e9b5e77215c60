//! `tuf-oci pull`: the tag is resolved through TUF and the image fetched by digest, recorded and
//! unpacked through containerd's API, on containerd 1.6 and 2.3.4, even when the registry's
//! tag was moved; a layer the registry swaps is never committed; a layer another client is
//! writing is waited for; containerd ending a write ends the pull at once.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;

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

    let name = format!("{}/solo/app:v1", registry.host);
    let out = pull(&registry.host, "solo/app:v1", dir.path(), &containerd).await;
    assert_pulled(&out, &containerd);
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
    let again = pull(&registry.host, "solo/app:v1", dir.path(), &containerd).await;
    assert!(again.status.success());

    let out = pull(&registry.host, "solo/app:v2", dir.path(), &containerd).await;
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

/// An image as `docker push` stores it (Docker's schema 2 manifest, a gzipped layer): signed
/// as served, pulled verified and unpacked, copied with its metadata into a layout that
/// verifies offline. distribution 2.8 serves such a manifest asked for by tag as schema 1
/// unless the client accepts Docker's types.
#[tokio::test]
async fn an_image_docker_pushed_is_signed_pulled_and_copied() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "solo/app").await;
    let pushed = registry
        .push_docker_image("solo/app", "v1", "docker layer")
        .await;
    org.sign_in_targets(&registry, "solo/app:v1").await;
    org.publish(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    let verified = org
        .verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .unwrap();
    assert_eq!(verified.digest(), pushed.digest);
    assert_eq!(
        verified.descriptor().media_type().to_string(),
        tuf_oci::layout::DOCKER_MANIFEST_MEDIA_TYPE
    );
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.json"), &org.root).unwrap();

    let out = pull(&registry.host, "solo/app:v1", dir.path(), &containerd).await;
    assert_pulled(&out, &containerd);
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains(&pushed.digest)
    );
    let chain = tuf_oci::layout::sha256_digest(&tuf_oci_tests::layer_tar("docker layer"));
    let snapshots = String::from_utf8(containerd.ctr(&["snapshots", "ls"]).stdout).unwrap();
    assert!(snapshots.contains(&chain), "{snapshots}");

    let layout = format!("oci:{}", dir.path().join("layout").display());
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(cli_binary())
            .args(["--insecure-registry", &registry.host, "--root"])
            .arg(dir.path().join("root.json"))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["copy", &format!("{}/solo/app:v1", registry.host), &layout]);
    cli(&["verify", &format!("{layout}:solo/app:v1"), "--deep"]);
}

/// A signed `solo/app:v1` of layers holding `contents`, in single-repository mode, with its
/// trusted root in a file; the image manifest, and its digest.
async fn signed_layers(
    registry: &TestRegistry,
    contents: &[&str],
) -> (tempfile::TempDir, serde_json::Value, String) {
    let org = Org::init(registry, "solo/app").await;
    let signed = registry.push_image_layers("solo/app", "v1", contents).await;
    org.sign_in_targets(registry, "solo/app:v1").await;
    org.publish(registry).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.json"), &org.root).unwrap();
    let manifest = registry.manifest_json("solo/app", &signed.digest).await;
    (dir, manifest, signed.digest)
}

/// Fails with the pull's and containerd's logs unless the pull succeeded.
fn assert_pulled(out: &std::process::Output, containerd: &Containerd) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        containerd.log()
    );
}

/// `tuf-oci pull HOST/REFERENCE` into `containerd`, trusting `dir/root.json`; awaited, so a
/// proxy serving on the test's runtime keeps answering.
async fn pull(
    host: &str,
    reference: &str,
    dir: &Path,
    containerd: &Containerd,
) -> std::process::Output {
    pull_command(host, reference, dir, containerd)
        .output()
        .await
        .unwrap()
}

/// The command of [`pull`], to add arguments to or to spawn.
fn pull_command(
    host: &str,
    reference: &str,
    dir: &Path,
    containerd: &Containerd,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(cli_binary());
    command
        .args(["--insecure-registry", host, "--root"])
        .arg(dir.join("root.json"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(["pull", &format!("{host}/{reference}"), "--address"])
        .arg(&containerd.socket);
    command
}

/// Layers of several `Content.Write` messages (1 MiB each), one of them listed twice.
fn big_layers() -> (String, String) {
    ("a".repeat(5 << 19), "b".repeat(5 << 19))
}

#[tokio::test]
async fn layers_larger_than_a_message_and_listed_twice_arrive_whole() {
    let registry = TestRegistry::start();
    let (first, second) = big_layers();
    let (dir, manifest, _) = signed_layers(&registry, &[&first, &second, &first]).await;
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let out = pull(&registry.host, "solo/app:v1", dir.path(), &containerd).await;
    assert_pulled(&out, &containerd);
    assert_eq!(
        containerd.images(),
        [format!("{}/solo/app:v1", registry.host)]
    );
    // containerd committed each layer under its digest, having checked it.
    let content = String::from_utf8(containerd.ctr(&["content", "ls"]).stdout).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        assert!(content.contains(digest), "{digest} missing:\n{content}");
    }
}

/// Layers stream from the registry into containerd as they arrive; one whose bytes are not
/// its digest's is cut at its end, before the commit: the pull fails naming the layer, and
/// containerd holds neither the layer nor the image, and was never asked to commit it.
#[tokio::test]
async fn a_layer_with_other_bytes_is_never_committed() {
    let registry = TestRegistry::start();
    let (first, second) = big_layers();
    let (dir, manifest, _) = signed_layers(&registry, &[&first, &second]).await;
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
    let out = pull(&hostile.host, "solo/app:v1", dir.path(), &containerd).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&digest), "{stderr}");
    assert!(containerd.images().is_empty(), "{:?}", containerd.images());
    let content = String::from_utf8(containerd.ctr(&["content", "ls", "-q"]).stdout).unwrap();
    assert!(!content.contains(&digest), "{content}");
    // A commit of those bytes would have reached containerd, which refuses it and says so.
    let log = containerd.log();
    assert!(!log.contains("unexpected commit digest"), "{log}");
}

/// The registry serving the signed manifest's bytes as another media type (an index, which
/// containerd would read for its children): the pull takes the type the bytes declare,
/// which their digest covers, and containerd records the image as the manifest it is.
#[tokio::test]
async fn a_media_type_the_registry_swaps_is_not_taken() {
    let registry = TestRegistry::start();
    let (dir, manifest, digest) = signed_layers(&registry, &["one layer"]).await;
    let hostile = HostileRegistry::start(
        &registry.host,
        vec![Rule::Replace {
            path_suffix: format!("/manifests/{digest}"),
            body: serde_json::to_vec(&manifest).unwrap(),
            content_type: tuf_oci::layout::INDEX_MEDIA_TYPE.into(),
        }],
    )
    .await;
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let out = pull(&hostile.host, "solo/app:v1", dir.path(), &containerd).await;
    assert_pulled(&out, &containerd);
    let listed = containerd.ctr(&["images", "ls"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    let line = listed
        .lines()
        .find(|line| line.contains(&digest))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        line.contains(tuf_oci::layout::MANIFEST_MEDIA_TYPE)
            && !line.contains(tuf_oci::layout::INDEX_MEDIA_TYPE),
        "{line}"
    );
}

/// containerd locks an ingest's reference while a client writes it. A pull meeting a layer
/// another client is writing waits, as ctr waits, instead of failing: it finds the layer when
/// that client commits it, and writes it itself (from the start) when that client gives up.
#[tokio::test]
async fn layers_another_client_is_writing_are_waited_for() {
    let registry = TestRegistry::start();
    let (first, second) = big_layers();
    let (dir, manifest, _) = signed_layers(&registry, &[&first, &second]).await;
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let digests = layer_digests(&manifest);
    // Two `ctr content ingest`s, each holding the reference `tuf-oci pull` writes a layer
    // under, half of the layer sent.
    let mut writers = Vec::new();
    for (content, digest) in [&first, &second].into_iter().zip(&digests) {
        let layer = tuf_oci_tests::layer_tar(content);
        let (writer, stdin) = half_written(&containerd, digest, &layer).await;
        writers.push((writer, stdin, layer));
    }

    let mut puller = pull_command(&registry.host, "solo/app:v1", dir.path(), &containerd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut progress = BufReader::new(puller.stderr.take().unwrap()).lines();
    let mut said = String::new();
    // Without the wait, the pull fails here on containerd's lock (and its stderr ends).
    let waiting = tokio::time::timeout(
        Duration::from_secs(30),
        read_progress(&mut progress, &mut said, |said| {
            said.matches("another client is writing it; waiting")
                .count()
                >= 2
        }),
    )
    .await;
    assert_eq!(waiting, Ok(true), "no wait for both layers:\n{said}");

    // The first writer finishes its layer; the second gives up.
    let (committer, mut stdin, layer) = writers.remove(0);
    stdin.write_all(&layer[layer.len() / 2..]).await.unwrap();
    drop(stdin);
    let committed = committer.wait_with_output().await.unwrap();
    assert!(
        committed.status.success(),
        "{}",
        String::from_utf8_lossy(&committed.stderr)
    );
    let (mut quitter, _stdin, _) = writers.remove(0);
    quitter.kill().await.unwrap();

    read_progress(&mut progress, &mut said, |_| false).await;
    let out = puller.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{said}\n{}", containerd.log());
    assert!(said.contains(&format!("{}: exists", digests[0])), "{said}");
    let written = tuf_oci_tests::layer_tar(&second).len();
    assert!(
        said.contains(&format!("{}: done ({written} bytes)", digests[1])),
        "{said}"
    );
    assert_eq!(
        containerd.images(),
        [format!("{}/solo/app:v1", registry.host)]
    );
    let content = String::from_utf8(containerd.ctr(&["content", "ls", "-q"]).stdout).unwrap();
    for digest in &digests {
        assert!(content.contains(digest), "{digest} missing:\n{content}");
    }
}

/// Waits until containerd lists `reference` among its active ingests.
/// Another client's `ctr content ingest` of `layer` (of `digest`), holding containerd's lock on
/// the reference `tuf-oci pull` writes it under, with half of it written; and its stdin, to
/// write the rest or to give up.
async fn half_written(
    containerd: &Containerd,
    digest: &str,
    layer: &[u8],
) -> (tokio::process::Child, tokio::process::ChildStdin) {
    let reference = format!("tuf-oci-{digest}");
    let mut writer =
        containerd.spawn_ctr_ingest(&containerd.socket, &reference, digest, layer.len());
    let mut stdin = writer.stdin.take().unwrap();
    stdin.write_all(&layer[..layer.len() / 2]).await.unwrap();
    stdin.flush().await.unwrap();
    wait_for_ingest(containerd, &reference).await;
    (writer, stdin)
}

async fn wait_for_ingest(containerd: &Containerd, reference: &str) {
    for _ in 0..100 {
        let active = containerd.ctr(&["content", "active"]);
        if String::from_utf8_lossy(&active.stdout).contains(reference) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("containerd never listed the ingest {reference}");
}

#[tokio::test]
async fn a_layer_locked_longer_than_the_wait_fails_naming_it() {
    let registry = TestRegistry::start();
    let (first, _) = big_layers();
    let (dir, manifest, _) = signed_layers(&registry, &[&first]).await;
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let digest = layer_digests(&manifest).remove(0);
    let layer = tuf_oci_tests::layer_tar(&first);
    let (mut writer, _stdin) = half_written(&containerd, &digest, &layer).await;

    let started = std::time::Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        pull_command(&registry.host, "solo/app:v1", dir.path(), &containerd)
            .args(["--lock-wait", "1"])
            .output(),
    )
    .await
    .expect("the pull waited past its lock wait")
    .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(started.elapsed() >= Duration::from_secs(1), "{said}");
    assert!(
        said.contains(&format!("{digest}: another client is writing it; waiting")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "writing {digest}: another client held containerd's lock on it past the time the \
             pull waits for other clients (1 s from its first wait, within half its lease)"
        )),
        "{said}"
    );
    assert!(containerd.images().is_empty());
    writer.kill().await.unwrap();
}

/// The lock wait counts from the pull's first wait, not from its start: a pull that reaches
/// a locked layer only after longer than the wait (the registry holds its manifest) still
/// waits for the layer.
#[tokio::test]
async fn the_lock_wait_counts_from_the_pulls_first_wait() {
    let registry = TestRegistry::start();
    let (first, _) = big_layers();
    let (dir, manifest, image) = signed_layers(&registry, &[&first]).await;
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let digest = layer_digests(&manifest).remove(0);
    let layer = tuf_oci_tests::layer_tar(&first);
    let (writer, mut stdin) = half_written(&containerd, &digest, &layer).await;

    let permits = Arc::new(Semaphore::new(0));
    let rules = vec![Rule::Hold {
        path_suffix: format!("/manifests/{image}"),
        permits: Arc::clone(&permits),
    }];
    let proxy = HostileRegistry::start(&registry.host, rules).await;
    let mut puller = pull_command(&proxy.host, "solo/app:v1", dir.path(), &containerd)
        .args(["--lock-wait", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.asked(&format!("/manifests/{image}"), 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    permits.add_permits(1);
    let mut progress = BufReader::new(puller.stderr.take().unwrap()).lines();
    let mut said = String::new();
    let waiting = format!("{digest}: another client is writing it; waiting");
    let found = read_progress(&mut progress, &mut said, |said| said.contains(&waiting)).await;
    assert!(found, "the pull ended without waiting:\n{said}");

    // The other client finishes the layer within the wait.
    stdin.write_all(&layer[layer.len() / 2..]).await.unwrap();
    drop(stdin);
    let committed = writer.wait_with_output().await.unwrap();
    assert!(committed.status.success(), "{committed:?}");
    read_progress(&mut progress, &mut said, |_| false).await;
    let out = puller.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{said}\n{}", containerd.log());
    assert_eq!(containerd.images(), [format!("{}/solo/app:v1", proxy.host)]);
}

/// The digests of an image manifest's layers, in order.
fn layer_digests(manifest: &serde_json::Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Appends the pull's progress lines to `said` until `until(said)` holds (true) or the pull's
/// stderr ends (false).
async fn read_progress(
    progress: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    said: &mut String,
    until: impl Fn(&str) -> bool,
) -> bool {
    while !until(said) {
        let Some(line) = progress.next_line().await.unwrap() else {
            return false;
        };
        said.push_str(&line);
        said.push('\n');
    }
    true
}

/// Whether the proxy was asked for the blob `digest`.
fn fetched(proxy: &HostileRegistry, digest: &str) -> bool {
    let blob = format!("/blobs/{digest}");
    proxy
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|path| path.ends_with(&blob))
}

/// containerd ending a write (here: it stops) ends the pull at once, even while the registry
/// is still sending the layer, slowly: the pull does not wait out the layer's deadline.
#[tokio::test]
async fn containerd_ending_a_write_ends_the_pull_at_once() {
    let registry = TestRegistry::start();
    // One layer: no other write can fail the pull first.
    let (layer, _) = big_layers();
    let (dir, manifest, _) = signed_layers(&registry, &[&layer]).await;
    let digest = layer_digests(&manifest).remove(0);
    let hostile = HostileRegistry::start(
        &registry.host,
        vec![Rule::Trickle {
            path_suffix: format!("/blobs/{digest}"),
            bytes: 64,
            pause: Duration::from_millis(200),
        }],
    )
    .await;
    let mut containerd = Containerd::start(Version::V1_6, None, &[]);
    // The layer's deadline: 5 s and a second per 64 KiB, 45 s in all.
    let puller = pull_command(&hostile.host, "solo/app:v1", dir.path(), &containerd)
        .args(["--timeout", "5"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_ingest(&containerd, &format!("tuf-oci-{digest}")).await;
    let stopped = std::time::Instant::now();
    containerd.restart();
    let out = puller.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("writing {digest}")), "{stderr}");
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "{:?}",
        stopped.elapsed()
    );
}

/// Content containerd holds in another namespace is committed into the pull's from what
/// containerd has, as ctr does: the registry is not asked for the layers again.
#[tokio::test]
async fn layers_held_in_another_namespace_are_not_fetched_again() {
    let registry = TestRegistry::start();
    let (first, second) = big_layers();
    let (dir, manifest, _) = signed_layers(&registry, &[&first, &second]).await;
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    assert_pulled(
        &pull(&registry.host, "solo/app:v1", dir.path(), &containerd).await,
        &containerd,
    );
    let proxy = HostileRegistry::start(&registry.host, Vec::new()).await;
    let out = pull_command(&proxy.host, "solo/app:v1", dir.path(), &containerd)
        .args(["--namespace", "other"])
        .output()
        .await
        .unwrap();
    assert_pulled(&out, &containerd);
    let images = containerd.ctr(&["--namespace", "other", "images", "ls", "-q"]);
    assert_eq!(
        String::from_utf8_lossy(&images.stdout).trim(),
        format!("{}/solo/app:v1", proxy.host)
    );
    for digest in layer_digests(&manifest) {
        assert!(!fetched(&proxy, &digest), "{:?}", proxy.seen);
    }
}

/// A layer another client commits while the pull writes it stays, held by the pull's lease,
/// until the image that references it is recorded: a garbage collection in between does not
/// take it.
#[tokio::test]
async fn a_layer_another_client_commits_meanwhile_stays_leased() {
    let registry = TestRegistry::start();
    let (first, second) = big_layers();
    let (dir, manifest, _) = signed_layers(&registry, &[&first, &second]).await;
    let digests = layer_digests(&manifest);
    // Both layers held at the registry until the test lets them through.
    let permits = [Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0))];
    let rules = digests
        .iter()
        .zip(&permits)
        .map(|(digest, permits)| Rule::Hold {
            path_suffix: format!("/blobs/{digest}"),
            permits: Arc::clone(permits),
        })
        .collect();
    let proxy = HostileRegistry::start(&registry.host, rules).await;
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let mut puller = pull_command(&proxy.host, "solo/app:v1", dir.path(), &containerd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for digest in &digests {
        wait_for_ingest(&containerd, &format!("tuf-oci-{digest}")).await;
    }

    // Another client writes the first layer under its own reference, with no lease, and
    // commits it; then the pull's write of it gets through and finds it committed.
    let layer = tuf_oci_tests::layer_tar(&first);
    let mut other = containerd.spawn_ctr_ingest(
        &containerd.socket,
        "another-client",
        &digests[0],
        layer.len(),
    );
    let mut stdin = other.stdin.take().unwrap();
    stdin.write_all(&layer).await.unwrap();
    drop(stdin);
    let committed = other.wait_with_output().await.unwrap();
    assert!(committed.status.success(), "{committed:?}");
    permits[0].add_permits(1);
    let mut progress = BufReader::new(puller.stderr.take().unwrap()).lines();
    let mut said = String::new();
    let exists = format!("{}: exists", digests[0]);
    let found = read_progress(&mut progress, &mut said, |said| said.contains(&exists)).await;
    assert!(found, "the pull ended first:\n{said}");

    // A garbage collection now takes every content no image, label or lease holds.
    let lease = containerd.ctr(&["leases", "create"]);
    let lease = String::from_utf8(lease.stdout).unwrap();
    let collected = containerd.ctr(&["leases", "delete", "--sync", lease.trim()]);
    assert!(collected.status.success(), "{collected:?}");
    permits[1].add_permits(1);
    read_progress(&mut progress, &mut said, |_| false).await;
    let out = puller.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{said}\n{}", containerd.log());
    let content = String::from_utf8(containerd.ctr(&["content", "ls", "-q"]).stdout).unwrap();
    assert!(content.contains(&digests[0]), "{content}");
}

/// A `tuf-oci pull --no-unpack` of `solo/app:v1` (trusting `dir/root.json`) into a containerd
/// 1.6 of its own, paused once its first layer (`digests[0]`) is written: the second
/// (`digests[1]`) is held at the registry until [`PausedPull::finish`].
struct PausedPull {
    _proxy: HostileRegistry,
    containerd: Containerd,
    puller: tokio::process::Child,
    progress: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    said: String,
    permits: Arc<Semaphore>,
}

impl PausedPull {
    async fn start(registry: &TestRegistry, dir: &Path, digests: &[String]) -> Self {
        let permits = Arc::new(Semaphore::new(0));
        let hold = Rule::Hold {
            path_suffix: format!("/blobs/{}", digests[1]),
            permits: Arc::clone(&permits),
        };
        let proxy = HostileRegistry::start(&registry.host, vec![hold]).await;
        let containerd = Containerd::start(Version::V1_6, None, &[]);
        let mut puller = pull_command(&proxy.host, "solo/app:v1", dir, &containerd)
            .arg("--no-unpack")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut progress = BufReader::new(puller.stderr.take().unwrap()).lines();
        let mut said = String::new();
        let done = format!("{}: done", digests[0]);
        let found = read_progress(&mut progress, &mut said, |said| said.contains(&done)).await;
        assert!(found, "the pull ended first:\n{said}");
        PausedPull {
            _proxy: proxy,
            containerd,
            puller,
            progress,
            said,
            permits,
        }
    }

    /// Interrupts the pull (SIGINT, as Ctrl-C does) and waits for it to end: whether it
    /// succeeded, and all it said.
    async fn interrupt(&mut self) -> (bool, &str) {
        let pid = self.puller.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        read_progress(&mut self.progress, &mut self.said, |_| false).await;
        let status = self.puller.wait().await.unwrap();
        (status.success(), &self.said)
    }

    /// Lets the held layer through and waits for the pull to end: whether it succeeded, and
    /// all it said.
    async fn finish(&mut self) -> (bool, &str) {
        self.permits.add_permits(1);
        read_progress(&mut self.progress, &mut self.said, |_| false).await;
        let status = self.puller.wait().await.unwrap();
        (status.success(), &self.said)
    }
}

/// An interrupted pull (Ctrl-C) records nothing and drops its lease, rather than leaving what
/// it wrote to the lease's expiry a day later.
#[tokio::test]
async fn an_interrupted_pull_drops_its_lease() {
    let registry = TestRegistry::start();
    let (dir, manifest, _) = signed_layers(&registry, &["first", "second"]).await;
    let digests = layer_digests(&manifest);
    let mut pull = PausedPull::start(&registry, dir.path(), &digests).await;
    let leases = |pull: &PausedPull| {
        let out = pull.containerd.ctr(&["leases", "ls", "-q"]);
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(!leases(&pull).trim().is_empty(), "the pull holds a lease");

    let (succeeded, said) = pull.interrupt().await;
    assert!(!succeeded, "{said}");
    assert!(said.contains("interrupted; nothing recorded"), "{said}");
    assert!(pull.containerd.images().is_empty());
    let left = leases(&pull);
    assert!(left.trim().is_empty(), "{left}");
}

/// Content removed from containerd after the pull wrote it (another client's `ctr content
/// rm`; a collection once the lease ran out) is never recorded as an image.
#[tokio::test]
async fn content_removed_after_it_was_written_is_never_recorded() {
    let registry = TestRegistry::start();
    let (dir, manifest, _) = signed_layers(&registry, &["first", "second"]).await;
    let digests = layer_digests(&manifest);
    // The second layer held at the registry until the first is removed.
    let mut pull = PausedPull::start(&registry, dir.path(), &digests).await;
    let removed = pull.containerd.ctr(&["content", "rm", &digests[0]]);
    assert!(removed.status.success(), "{removed:?}");

    let (succeeded, said) = pull.finish().await;
    assert!(!succeeded, "{said}");
    assert!(
        said.contains(&format!("{} is no longer in containerd", digests[0])),
        "{said}"
    );
    let images = pull.containerd.images();
    assert!(images.is_empty(), "{images:?}");
}

/// A pull whose tag is signed for other content while it runs does not record what it pulled:
/// a slower pull of the older target would record it over a newer pull's.
#[tokio::test]
async fn a_tag_signed_anew_during_the_pull_is_not_recorded_from_the_older_target() {
    let registry = TestRegistry::start();
    let org = Org::init(&registry, "solo/app").await;
    let first = registry
        .push_image_layers("solo/app", "v1", &["old one", "old two"])
        .await;
    org.sign_in_targets(&registry, "solo/app:v1").await;
    org.publish(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.json"), &org.root).unwrap();
    let manifest = registry.manifest_json("solo/app", &first.digest).await;
    let digests = layer_digests(&manifest);
    // The second layer held at the registry until v1 is signed for another image.
    let mut pull = PausedPull::start(&registry, dir.path(), &digests).await;
    let second = registry
        .push_image_layers("solo/app", "v1", &["new one"])
        .await;
    org.sign_in_targets(&registry, "solo/app:v1").await;
    org.publish(&registry).await;

    let (succeeded, said) = pull.finish().await;
    assert!(!succeeded, "{said}");
    assert!(
        said.contains(&format!(
            "was signed for {} while this pull of {}",
            second.digest, first.digest
        )),
        "{said}"
    );
    let images = pull.containerd.images();
    assert!(images.is_empty(), "{images:?}");
}

/// An ingest holding the whole layer that was never committed (a pull cut off just before its
/// commit) is committed from what containerd holds, which containerd hashes again: the
/// registry is not asked for the layer.
#[tokio::test]
async fn a_whole_uncommitted_layer_is_committed_without_fetching_it() {
    let registry = TestRegistry::start();
    let (layer, _) = big_layers();
    let (dir, manifest, _) = signed_layers(&registry, &[&layer]).await;
    let digest = layer_digests(&manifest).remove(0);
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let bytes = tuf_oci_tests::layer_tar(&layer);
    write_uncommitted(&containerd, &format!("tuf-oci-{digest}"), bytes).await;

    let proxy = HostileRegistry::start(&registry.host, Vec::new()).await;
    let out = pull(&proxy.host, "solo/app:v1", dir.path(), &containerd).await;
    assert_pulled(&out, &containerd);
    assert!(!fetched(&proxy, &digest), "{:?}", proxy.seen);
    let content = String::from_utf8(containerd.ctr(&["content", "ls", "-q"]).stdout).unwrap();
    assert!(content.contains(&digest), "{content}");
}

/// An uncommitted ingest of the layer's size holding other bytes is not committed: the pull
/// fetches the layer and writes it over them.
#[tokio::test]
async fn an_uncommitted_layer_of_other_bytes_is_written_again() {
    let registry = TestRegistry::start();
    let (layer, _) = big_layers();
    let (dir, manifest, _) = signed_layers(&registry, &[&layer]).await;
    let digest = layer_digests(&manifest).remove(0);
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let size = tuf_oci_tests::layer_tar(&layer).len();
    write_uncommitted(&containerd, &format!("tuf-oci-{digest}"), vec![b'x'; size]).await;

    let proxy = HostileRegistry::start(&registry.host, Vec::new()).await;
    let out = pull(&proxy.host, "solo/app:v1", dir.path(), &containerd).await;
    assert_pulled(&out, &containerd);
    assert!(fetched(&proxy, &digest), "{:?}", proxy.seen);
    let log = containerd.log();
    assert!(!log.contains("unexpected commit digest"), "{log}");
}

/// Writes `bytes` into containerd under `reference` and ends the write without a commit.
async fn write_uncommitted(containerd: &Containerd, reference: &str, bytes: Vec<u8>) {
    use containerd_client::services::v1::content_client::ContentClient;
    use containerd_client::services::v1::{WriteAction, WriteContentRequest};

    let write = WriteContentRequest {
        action: WriteAction::Write as i32,
        r#ref: reference.to_string(),
        total: bytes.len() as i64,
        data: bytes,
        ..Default::default()
    };
    let channel =
        containerd_tuf_verifier::client::unix_channel(&containerd.socket, Duration::from_secs(60))
            .await
            .unwrap();
    let mut request = tonic::Request::new(futures_util::stream::iter([write]));
    request
        .metadata_mut()
        .insert("containerd-namespace", "default".parse().unwrap());
    let mut answers = ContentClient::new(channel)
        .write(request)
        .await
        .unwrap()
        .into_inner();
    while answers.message().await.unwrap().is_some() {}
    wait_for_ingest(containerd, reference).await;
}

/// Pulls of one image at once all end with it unpacked: each prepares snapshots under keys of
/// its own, and one that finds a layer committed by another meanwhile goes on from it.
#[tokio::test]
async fn concurrent_pulls_of_one_image_all_unpack_it() {
    let registry = TestRegistry::start();
    let (first, second) = big_layers();
    let (dir, _, _) = signed_layers(&registry, &[&first, &second]).await;
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let pulls = (0..4).map(|_| pull(&registry.host, "solo/app:v1", dir.path(), &containerd));
    for out in futures_util::future::join_all(pulls).await {
        assert_pulled(&out, &containerd);
    }
    assert_eq!(
        containerd.images(),
        [format!("{}/solo/app:v1", registry.host)]
    );
    // The snapshots of pulls that lost a race to commit a layer are removed.
    let snapshots = String::from_utf8(containerd.ctr(&["snapshots", "ls"]).stdout).unwrap();
    assert!(!snapshots.contains("tuf-oci-extract-"), "{snapshots}");
}
