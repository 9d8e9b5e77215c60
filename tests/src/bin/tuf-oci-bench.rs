//! Benchmarks against a real registry: requests and bytes per verification (cold and warm), one
//! cold verification with many targets in one role and with many delegated roles (the lazy
//! search must fetch only the role on the target's path), publishing after one change among
//! many roles, signing throughput, and the containerd image verifier: bindir latency
//! in-process vs through the service, `ctr images pull` with vs without it (containerd 2.3.4),
//! the transfer front, copies, memory under load.
//!
//!     cargo run --release -p tuf-oci-tests --bin tuf-oci-bench            # full size
//!     cargo run -p tuf-oci-tests --bin tuf-oci-bench -- --smoke           # CI size
//!     cargo run --release -p tuf-oci-tests --bin tuf-oci-bench -- signing roles  # some cases
//!
//! Prints figures and ratios; it asserts only what must hold at any size (the lazy search).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use tough::TargetName;
use tough::schema::{DelegatedRole, Delegations, PathPattern, PathSet, Root, Signed, Targets};
use tuf_oci::keys::SigningKey;
use tuf_oci::layout::Entry;
use tuf_oci::{Registry, RegistryConfig, TrustConfig, Verifier};
use tuf_oci_tests::craft::{self, parse};
use tuf_oci_tests::{Org, TestRegistry, delegation, expiries};

struct Sizes {
    targets_in_one_role: usize,
    roles: usize,
    targets_per_role: usize,
    /// Images (and tags) signed at once in the signing-throughput case.
    signed_at_once: usize,
    /// Runs of the bindir executable / pulls per configuration.
    runs: usize,
    /// Layer size of the image pulled through containerd.
    layer_bytes: usize,
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let sizes = if smoke {
        Sizes {
            targets_in_one_role: 1_000,
            roles: 50,
            targets_per_role: 10,
            signed_at_once: 200,
            runs: 2,
            layer_bytes: 1 << 20,
        }
    } else {
        Sizes {
            targets_in_one_role: 10_000,
            roles: 1_000,
            targets_per_role: 100,
            signed_at_once: 10_000,
            runs: 10,
            layer_bytes: 50 << 20,
        }
    };
    let registry = TestRegistry::start();
    println!(
        "tuf-oci verification benchmark ({})",
        if smoke { "smoke size" } else { "full size" }
    );
    println!(
        "{:<56} {:>10} {:>12} {:>12}",
        "case", "requests", "bytes", "time"
    );
    // Cases named on the command line, or all of them.
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |case: &str| named.is_empty() || named.iter().any(|n| n == case);
    if run("requests") {
        requests_per_verification(&registry, sizes.runs).await;
    }
    if run("targets") {
        many_targets_in_one_role(&registry, sizes.targets_in_one_role, sizes.runs).await;
    }
    if run("roles") {
        many_delegated_roles(&registry, sizes.roles, sizes.targets_per_role, sizes.runs).await;
    }
    if run("signing") {
        signing_throughput(&registry, sizes.signed_at_once).await;
    }
    if run("verifier") {
        containerd_verifier(&registry, sizes.runs, sizes.layer_bytes).await;
    }
    if run("front") {
        transfer_front(&registry, sizes.runs, sizes.layer_bytes).await;
    }
    if run("copy") {
        copy_vs_skopeo(&registry, sizes.layer_bytes).await;
    }
    if run("memory") {
        peak_memory_under_load(&registry, if smoke { 10 } else { 50 }).await;
    }
}

/// A fresh client (own counters) trusting `org`, keeping trusted metadata in `cache`.
fn client(registry: &TestRegistry, org: &Org, cache: &std::path::Path) -> (Registry, Verifier) {
    client_with(registry, org, cache, Duration::ZERO)
}

fn client_with(
    registry: &TestRegistry,
    org: &Org,
    cache: &std::path::Path,
    refresh_interval: Duration,
) -> (Registry, Verifier) {
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![registry.host.clone()],
        timeout: Duration::from_secs(30),
    });
    let trust = TrustConfig {
        root: org.root.clone(),
        metadata_override: None,
        cache_dir: Some(cache.to_path_buf()),
        refresh_interval,
        ..Default::default()
    };
    (
        client.clone(),
        Verifier::new(client, trust).expect("trusted root"),
    )
}

struct Measured {
    requests: u64,
    bytes: u64,
    time: Duration,
}

/// The run of median time among `runs` of one case. Requests and bytes are the same in every
/// run.
fn median_run(runs: Vec<Measured>) -> Measured {
    median_by(runs, |m| m.time)
}

/// The middle of `samples` by `key`: single runs on a shared machine vary by up to a factor
/// of two, and a mean would charge an outlier to whichever configuration ran then.
fn median_by<T, K: Ord>(mut samples: Vec<T>, key: impl FnMut(&T) -> K) -> T {
    samples.sort_unstable_by_key(key);
    samples.swap_remove(samples.len() / 2)
}

/// A verification as `tuf-oci verify` makes it (TUF, then the image the registry serves).
async fn measure(client: &Registry, verifier: &Verifier, image: &tuf_oci::ImageRef) -> Measured {
    measured(client, async {
        verifier.verify(image).await.expect("verification");
    })
    .await
}

/// The requests, bytes and time `work` costs `client`.
async fn measured(client: &Registry, work: impl std::future::Future<Output = ()>) -> Measured {
    let (requests, bytes) = (client.traffic().requests(), client.traffic().bytes());
    let start = Instant::now();
    work.await;
    Measured {
        time: start.elapsed(),
        requests: client.traffic().requests() - requests,
        bytes: client.traffic().bytes() - bytes,
    }
}

fn row(case: &str, m: &Measured) {
    println!(
        "{case:<56} {:>10} {:>12} {:>10.2}ms",
        m.requests,
        m.bytes,
        m.time.as_secs_f64() * 1000.0
    );
}

async fn requests_per_verification(registry: &TestRegistry, runs: usize) {
    let (org, team) = delegating_org(registry, "bench/tuf", "team-a").await;
    registry.push_image("team-a/app", "v1", "bench").await;
    tuf_oci::editor::set_pointer(
        &registry.client,
        &registry.repo("team-a/app"),
        "../../bench/tuf",
    )
    .await
    .unwrap();
    org.sign(
        registry,
        &registry.image("team-a/app:v1"),
        "team-a",
        &[team],
    )
    .await;
    org.publish(registry).await;

    let image = registry.image("team-a/app:v1");
    // [cold, warm, cold location known, warm location known, warm session], each a new client
    // with an empty cache in every run.
    let mut cases: [Vec<Measured>; 5] = Default::default();
    for _ in 0..runs {
        let cache = tempfile::tempdir().unwrap();
        let (client, verifier) = client(registry, &org, cache.path());
        cases[0].push(measure(&client, &verifier, &image).await);
        cases[1].push(measure(&client, &verifier, &image).await);
        // Bootstrapped with the metadata location (no pointer read), resolving through TUF
        // only (the image verifier's case: containerd hands it the descriptor).
        let located = tempfile::tempdir().unwrap();
        let client = Registry::new(&RegistryConfig {
            insecure_hosts: vec![registry.host.clone()],
            timeout: Duration::from_secs(30),
        });
        let trust = org.trust(Some(registry.repo("bench/tuf")), Some(located.path()));
        let verifier = Verifier::new(client.clone(), trust).expect("trusted root");
        for case in &mut cases[2..4] {
            case.push(
                measured(&client, async {
                    verifier.resolve(&image).await.expect("resolve");
                })
                .await,
            );
        }
        // A long-lived verifier (the plugins' service) reusing its update for a minute,
        // resolving through TUF alone as the containerd verifier does with the descriptor it
        // is given.
        let (client, verifier) = client_with(registry, &org, cache.path(), Duration::from_secs(60));
        verifier.resolve(&image).await.expect("resolve");
        cases[4].push(
            measured(&client, async {
                verifier.resolve(&image).await.expect("resolve");
            })
            .await,
        );
    }
    let [cold, warm, located_cold, located_warm, session] = cases.map(median_run);
    row("one delegated role, cold (empty cache)", &cold);
    row("one delegated role, warm (cache, nothing new)", &warm);
    row(
        "one delegated role, cold, location known, TUF only",
        &located_cold,
    );
    row(
        "one delegated role, warm, location known, TUF only",
        &located_warm,
    );
    row(
        "warm session (refresh interval 60 s), TUF resolve only",
        &session,
    );
    println!(
        "{:<56} {:>10.2} {:>12.2} {:>12.2}",
        "  ratio warm/cold",
        warm.requests as f64 / cold.requests as f64,
        warm.bytes as f64 / cold.bytes as f64,
        warm.time.as_secs_f64() / cold.time.as_secs_f64()
    );
}

async fn many_targets_in_one_role(registry: &TestRegistry, count: usize, runs: usize) {
    let org = Org::init(registry, "bulk/tuf").await;
    let real = registry.push_image("bulk/tuf", "tag-0", "bulk").await;
    let root: Signed<Root> = parse(&org.root);
    let mut targets = Targets::new("1.0.0".into(), 2.try_into().unwrap(), expiries().targets);
    for i in 0..count {
        let entry = if i == 0 { real.clone() } else { fake_entry(i) };
        targets.targets.insert(
            TargetName::new(format!("bulk/tuf:tag-{i}")).unwrap(),
            tuf_oci::descriptor::target_from_descriptor(&descriptor(&entry)).unwrap(),
        );
    }
    let signed = craft::sign_top(targets, &root.signed, &org.targets_key().await).await;
    craft::publish_raw(registry, &org, &[("targets", craft::bytes(&signed))]).await;

    let mut cases: [Vec<Measured>; 2] = Default::default();
    for _ in 0..runs {
        let cache = tempfile::tempdir().unwrap();
        let (client, verifier) = client(registry, &org, cache.path());
        cases[0].push(measure(&client, &verifier, &registry.image("bulk/tuf:tag-0")).await);
        let by_digest = registry.image(&format!("bulk/tuf@{}", real.digest));
        cases[1].push(measure(&client, &verifier, &by_digest).await);
    }
    let [cold, by_digest] = cases.map(median_run);
    row(
        &format!("{count} targets in top-level targets, cold"),
        &cold,
    );
    row(&format!("{count} targets, by digest, warm"), &by_digest);
}

async fn many_delegated_roles(registry: &TestRegistry, roles: usize, per_role: usize, runs: usize) {
    let org = Org::init(registry, "fleet/tuf").await;
    let chosen = roles / 2;
    let path = format!("team-{chosen}/app");
    let real = registry.push_image(&path, "v1", "fleet").await;
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo(&path), "/fleet/tuf")
        .await
        .unwrap();
    let root: Signed<Root> = parse(&org.root);
    let key = org.key("team").await;
    let keyid = key.public().key_id().unwrap();
    let mut delegations = Delegations {
        keys: HashMap::from([(keyid.clone(), key.public().clone())]),
        roles: Vec::new(),
    };
    for i in 0..roles {
        delegations.roles.push(DelegatedRole {
            name: format!("team-{i}"),
            keyids: vec![keyid.clone()],
            threshold: 1.try_into().unwrap(),
            paths: PathSet::Paths(vec![PathPattern::new(format!("team-{i}/*")).unwrap()]),
            terminating: false,
            targets: None,
        });
    }
    let mut files = Vec::new();
    let mut total_role_bytes = 0;
    for i in 0..roles {
        let mut targets = Targets::new("1.0.0".into(), 1.try_into().unwrap(), expiries().targets);
        for j in 0..per_role {
            let entry = if i == chosen && j == 0 {
                real.clone()
            } else {
                fake_entry(i * per_role + j)
            };
            let tag = if i == chosen && j == 0 {
                "v1".to_string()
            } else {
                format!("t{j}")
            };
            targets.targets.insert(
                TargetName::new(format!("team-{i}/app:{tag}")).unwrap(),
                tuf_oci::descriptor::target_from_descriptor(&descriptor(&entry)).unwrap(),
            );
        }
        let signed = craft::sign_delegated(
            &format!("team-{i}"),
            targets,
            &delegations,
            std::slice::from_ref(&key),
        )
        .await;
        let bytes = craft::bytes(&signed);
        total_role_bytes += bytes.len();
        files.push((format!("team-{i}"), bytes));
    }
    let mut top = Targets::new("1.0.0".into(), 2.try_into().unwrap(), expiries().targets);
    top.delegations = Some(delegations);
    let top = craft::sign_top(top, &root.signed, &org.targets_key().await).await;
    files.push(("targets".into(), craft::bytes(&top)));
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    craft::publish_raw(registry, &org, &files).await;
    // Writers' heads (`<role>.json`), as signers leave them.
    let metadata = &org.metadata;
    futures_util::stream::iter(&files)
        .map(|(role, bytes)| async move {
            let head = format!("{role}.json");
            registry.put_file(metadata, &head, bytes).await;
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;

    let mut cold = Vec::new();
    let mut caches = Vec::new();
    for _ in 0..runs {
        let cache = tempfile::tempdir().unwrap();
        let (client, verifier) = client(registry, &org, cache.path());
        cold.push(measure(&client, &verifier, &registry.image(&format!("{path}:v1"))).await);
        caches.push(cache);
    }
    let cold = median_run(cold);
    let cache = caches.pop().expect("at least one run");
    row(
        &format!("{roles} delegated roles x {per_role} targets, cold"),
        &cold,
    );
    let cached = cache
        .path()
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let fetched: Vec<u64> = std::fs::read_dir(cached)
        .unwrap()
        .map(Result::unwrap)
        .filter(|e| e.file_name().to_string_lossy().starts_with("team-"))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    let fetched_roles = fetched.len();
    println!(
        "{:<56} {:>10} of {roles} roles fetched; their bytes / all delegated bytes = {:.4}",
        "  lazy search",
        fetched_roles,
        fetched.iter().sum::<u64>() as f64 / total_role_bytes as f64
    );
    assert_eq!(
        fetched_roles, 1,
        "the search must fetch only the role on the path"
    );

    // One change (a new image signed into one role), then publish: only that role is
    // re-signed and pushed; publish signs snapshot and timestamp over every role's head.
    registry.push_image(&path, "v2", "fleet two").await;
    let traffic = registry.client.traffic();
    let before = traffic.requests();
    let start = Instant::now();
    let editor = org.editor(registry).await;
    editor
        .sign(
            &[registry.image(&format!("{path}:v2"))],
            &format!("team-{chosen}"),
            std::slice::from_ref(&key),
            expiries().targets,
        )
        .await
        .expect("sign");
    let signed = (traffic.requests() - before, start.elapsed());
    let before = traffic.requests();
    let start = Instant::now();
    org.publish(registry).await;
    let published = (traffic.requests() - before, start.elapsed());
    for (case, (requests, time)) in [
        (format!("sign one image into 1 of {roles} roles"), signed),
        (
            format!("publish after that change ({roles} roles)"),
            published,
        ),
    ] {
        println!(
            "{case:<56} {requests:>10} {:>12} {:>10.2}ms",
            "-",
            time.as_secs_f64() * 1000.0
        );
    }
    org.verify_fresh(registry, &format!("{path}:v2"))
        .await
        .expect("the change verifies");
}

/// Signing throughput: `count` targets signed into one delegated role (one new role version)
/// and published, once as `count` distinct images (one referrer attached to each) and once as
/// `count` tags of one image (one attachment: the TUF work alone).
async fn signing_throughput(registry: &TestRegistry, count: usize) {
    let (org, key) = delegating_org(registry, "release/tuf", "release").await;
    for (path, distinct) in [("release/app", true), ("release/tags", false)] {
        tuf_oci::editor::set_pointer(&registry.client, &registry.repo(path), "../../release/tuf")
            .await
            .unwrap();
        // Tags of one image: its manifest pushed again under each tag (pushing its blobs
        // concurrently would race in the registry).
        let first = registry.push_image(path, "b0", "one build").await;
        let one = registry
            .client
            .manifest(&registry.repo(path).digested(&first.digest), 1 << 20)
            .await
            .unwrap()
            .expect("pushed");
        let one = &one;
        futures_util::stream::iter(1..count)
            .map(|i| async move {
                let tag = format!("b{i}");
                if distinct {
                    registry.push_image(path, &tag, &format!("build {i}")).await;
                } else {
                    let tagged = registry.repo(path).tagged(&tag);
                    let media_type = &one.media_type;
                    registry
                        .client
                        .push_manifest(&tagged, &one.bytes, media_type)
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        let images: Vec<_> = (0..count)
            .map(|i| registry.image(&format!("{path}:b{i}")))
            .collect();

        let traffic = registry.client.traffic();
        let before = traffic.requests();
        let start = Instant::now();
        org.editor(registry)
            .await
            .sign(
                &images,
                "release",
                std::slice::from_ref(&key),
                expiries().targets,
            )
            .await
            .expect("sign");
        let signed = start.elapsed();
        org.publish(registry).await;
        let total = start.elapsed();
        let what = if distinct {
            format!("{count} distinct images")
        } else {
            format!("{count} tags of one image")
        };
        println!(
            "{:<56} {:>10} {:>12} {:>10.2}ms",
            format!("sign {what} in one role version + publish"),
            traffic.requests() - before,
            "-",
            total.as_secs_f64() * 1000.0
        );
        println!(
            "{:<56} {:>10} {:>12} {:>10.2}ms",
            "  of which signing (attachments included)",
            "-",
            "-",
            signed.as_secs_f64() * 1000.0
        );
        org.verify_fresh(registry, &format!("{path}:b{}", count - 1))
            .await
            .expect("the last image verifies");
    }
}

/// A policy protecting `scope`, bootstrapped with the metadata location as well as the root,
/// whose verifications go to a service listening on `dir/verifier.sock`; returns the policy and
/// the socket.
fn service_policy(
    dir: &std::path::Path,
    registry: &TestRegistry,
    org: &Org,
    scope: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let socket = dir.join("verifier.sock");
    let policy = tuf_oci_tests::write_bootstrapped_policy(
        dir,
        registry,
        org,
        &[scope],
        &format!(
            "socket = \"{}\"\nrefresh_interval_seconds = 60",
            socket.display()
        ),
    );
    (policy, socket)
}

/// Starts the front binary, as a node runs it, on `listen` before `containerd` checking with
/// `policy`, and waits until it listens.
async fn start_front(
    containerd: &std::path::Path,
    listen: &std::path::Path,
    policy: &std::path::Path,
) -> std::process::Child {
    let mut front =
        std::process::Command::new(tuf_oci_tests::workspace_binary("containerd-tuf-transfer"));
    front
        .arg("--containerd")
        .arg(containerd)
        .arg("--listen")
        .arg(listen)
        .arg("--policy")
        .arg(policy);
    listening(front, listen).await
}

/// Starts the verification service on `socket` and waits until it listens.
async fn start_service(
    verifier: &std::path::Path,
    policy: &std::path::Path,
    socket: &std::path::Path,
) -> std::process::Child {
    let mut service = std::process::Command::new(verifier);
    service.args(["serve", "--policy"]).arg(policy);
    listening(service, socket).await
}

/// Spawns `command`, its logs dropped, and waits until `socket` exists.
async fn listening(
    mut command: std::process::Command,
    socket: &std::path::Path,
) -> std::process::Child {
    let child = command.stderr(std::process::Stdio::null()).spawn().unwrap();
    while !socket.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child
}

/// Runs the bindir verifier as containerd does for `name` resolved to `image`; whether it
/// allowed the pull.
fn run_bindir(
    verifier: &std::path::Path,
    policy: &std::path::Path,
    name: &str,
    image: &Entry,
) -> bool {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(verifier)
        .env("CONTAINERD_TUF_POLICY", policy)
        .args([
            "-name",
            name,
            "-digest",
            &image.digest,
            "-stdin-media-type",
            "application/vnd.oci.descriptor.v1+json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(image).unwrap())
        .unwrap();
    child.wait().unwrap().success()
}

/// How long one `ctr images pull` of `name` through `socket` (containerd's or a front's) takes.
fn timed_pull(
    containerd: &tuf_oci_tests::containerd::Containerd,
    socket: &std::path::Path,
    name: &str,
) -> Duration {
    let start = Instant::now();
    // `--debug` turns off ctr's progress display, which ends a pull only on its next 100 ms
    // tick: without it, pull times come in 100 ms steps and a few ms decide the step.
    let out = containerd.ctr_at(socket, &["--debug", "images", "pull", "--plain-http", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

/// A new organisation at `metadata` delegating `role/*` to `role`, published; with the role's
/// key.
async fn delegating_org(registry: &TestRegistry, metadata: &str, role: &str) -> (Org, SigningKey) {
    let org = Org::init(registry, metadata).await;
    let key = org.key(role).await;
    let paths = [format!("{role}/*")];
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    org.delegate(
        registry,
        "targets",
        &org.targets_key().await,
        &delegation(role, &paths, &[&key], 1),
    )
    .await;
    org.publish(registry).await;
    (org, key)
}

/// A new organisation with its metadata repository beside repository `app` (`../tuf`), whose
/// top-level targets sign the images `(tag, content)` pushed to `app`, published.
async fn signed_app(
    registry: &TestRegistry,
    app: &str,
    images: &[(String, String)],
) -> (Org, Vec<Entry>) {
    let (parent, _) = app.rsplit_once('/').expect("app is parent/name");
    let org = Org::init(registry, &format!("{parent}/tuf")).await;
    let mut pushed = Vec::new();
    for (tag, content) in images {
        pushed.push(registry.push_image(app, tag, content).await);
    }
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo(app), "../tuf")
        .await
        .unwrap();
    let references: Vec<_> = images
        .iter()
        .map(|(tag, _)| registry.image(&format!("{app}:{tag}")))
        .collect();
    org.editor(registry)
        .await
        .sign(
            &references,
            "targets",
            &org.targets_key().await,
            expiries().targets,
        )
        .await
        .expect("sign");
    org.publish(registry).await;
    (org, pushed)
}

/// A descriptor for a manifest that does not exist (only its metadata matters here).
fn fake_entry(i: usize) -> Entry {
    Entry::of(
        tuf_oci::layout::MANIFEST_MEDIA_TYPE,
        format!("fake manifest {i}").as_bytes(),
    )
}

fn descriptor(entry: &Entry) -> oci_spec::image::Descriptor {
    serde_json::from_value(serde_json::to_value(entry).unwrap()).unwrap()
}

/// The containerd image verifier: one bindir invocation in-process (cold cache) vs through the
/// warm service, and a `ctr images pull` with vs without the verifier installed.
async fn containerd_verifier(registry: &TestRegistry, runs: usize, layer_bytes: usize) {
    use tuf_oci_tests::containerd::{Containerd, Version};

    let content = "x".repeat(layer_bytes);
    let (org, images) = signed_app(registry, "plugin/app", &[("v1".into(), content)]).await;
    let image = &images[0];
    let dir = tempfile::tempdir().unwrap();
    let (policy, socket) = service_policy(dir.path(), registry, &org, "plugin/");
    let verifier = tuf_oci_tests::workspace_binary("containerd-tuf-verifier");
    let name = format!("{}/plugin/app:v1", registry.host);
    let invoke = || {
        let start = Instant::now();
        assert!(run_bindir(&verifier, &policy, &name, image));
        start.elapsed()
    };
    let mut cold = Duration::ZERO;
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(dir.path().join("cache"));
        cold += invoke();
    }
    let mut service = start_service(&verifier, &policy, &socket).await;
    invoke();
    let mut warm = Duration::ZERO;
    for _ in 0..runs {
        warm += invoke();
    }
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / runs as f64;
    println!(
        "{:<56} {:>10} {:>12} {:>10.2}ms",
        "bindir verifier, in-process, cold cache",
        "",
        "",
        per(cold)
    );
    println!(
        "{:<56} {:>10} {:>12} {:>10.2}ms",
        "bindir verifier, warm service",
        "",
        "",
        per(warm)
    );
    println!(
        "{:<56} {:>10.2}",
        "  ratio warm service / in-process cold",
        warm.as_secs_f64() / cold.as_secs_f64()
    );

    let bin_dir = dir.path().join("verifiers");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::copy(&verifier, bin_dir.join("containerd-tuf-verifier")).unwrap();
    // The same, in-process, for a client that follows the image's `tuf-metadata` pointer
    // instead of being given the metadata location.
    let pointer_dir = dir.path().join("pointer");
    std::fs::create_dir_all(&pointer_dir).unwrap();
    let pointer_policy =
        tuf_oci_tests::write_policy(&pointer_dir, registry, &org, &["plugin/"], &[], "");
    // Pulls, side by side in every run: no verifier; verifier answered by the warm service;
    // by a service just started with an empty cache (cold metadata); in-process with an empty
    // cache (service stopped), given the metadata location or following the pointer.
    let pull = |verifiers: Option<&std::path::Path>, policy: &std::path::Path| {
        let containerd = Containerd::start(
            Version::V2_3,
            verifiers,
            &[("CONTAINERD_TUF_POLICY", policy)],
        );
        timed_pull(&containerd, &containerd.socket, &name)
    };
    let stop = |mut service: std::process::Child| {
        let _ = service.kill();
        let _ = service.wait();
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_dir_all(dir.path().join("cache"));
    };
    let mut pulls: [Vec<Duration>; 5] = Default::default();
    for _ in 0..runs {
        pulls[0].push(pull(None, &policy));
        pulls[1].push(pull(Some(&bin_dir), &policy));
        stop(service);
        service = start_service(&verifier, &policy, &socket).await;
        pulls[2].push(pull(Some(&bin_dir), &policy));
        stop(service);
        pulls[3].push(pull(Some(&bin_dir), &policy));
        let _ = std::fs::remove_dir_all(pointer_dir.join("cache"));
        pulls[4].push(pull(Some(&bin_dir), &pointer_policy));
        service = start_service(&verifier, &policy, &socket).await;
        invoke();
    }
    stop(service);
    let mb = layer_bytes >> 20;
    let [plain, warm, service_cold, cold, cold_pointer] = pulls.map(median);
    let verified = [
        ("warm service", warm),
        ("service, cold metadata", service_cold),
        ("in-process, cold metadata", cold),
        ("in-process, cold, following the pointer", cold_pointer),
    ];
    for (case, time) in [("no verifier", plain)].iter().chain(&verified) {
        println!(
            "{:<56} {:>10} {:>12} {:>10.2}ms",
            format!("ctr pull ({mb} MiB), {case}, median"),
            "",
            "",
            time.as_secs_f64() * 1000.0
        );
    }
    for (case, time) in verified {
        println!(
            "{:<56} {:>10.2}",
            format!("  ratio {case} / no verifier"),
            time.as_secs_f64() / plain.as_secs_f64()
        );
    }
}

/// CPU time (user and system) process `pid` has used, in clock ticks of 10 ms.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which may hold spaces: state is the first, utime the 12th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The middle of pull times.
fn median(samples: Vec<Duration>) -> Duration {
    median_by(samples, |d| *d)
}

/// The transfer front: `ctr images pull` (containerd 1.6, client-side) through the front vs
/// directly, with cold and warm metadata, and the latency a forwarded unary call gains.
async fn transfer_front(registry: &TestRegistry, runs: usize, layer_bytes: usize) {
    use containerd_client::services::v1::version_client::VersionClient;
    use tuf_oci_tests::containerd::{Containerd, Version};

    // Two images of the same size: the first pull through a new front has cold metadata, the
    // second warm metadata; both have cold content.
    let images =
        [("v1", "z"), ("v2", "w")].map(|(tag, fill)| (tag.into(), fill.repeat(layer_bytes)));
    let (org, _) = signed_app(registry, "front/app", &images).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = tuf_oci_tests::write_bootstrapped_policy(
        dir.path(),
        registry,
        &org,
        &["front/"],
        "refresh_interval_seconds = 60",
    );
    let pull = |containerd: &Containerd, socket: &std::path::Path, tag: &str| {
        timed_pull(
            containerd,
            socket,
            &format!("{}/front/app:{tag}", registry.host),
        )
    };
    // [direct v1, direct v2, front v1 (cold metadata), front v2 (warm metadata)]
    let mut times: [Vec<Duration>; 4] = Default::default();
    let mut front_ticks = 0;
    for run in 0..runs {
        let direct = Containerd::start(Version::V1_6, None, &[]);
        times[0].push(pull(&direct, &direct.socket, "v1"));
        times[1].push(pull(&direct, &direct.socket, "v2"));
        let _ = std::fs::remove_dir_all(dir.path().join("cache"));
        let fronted = Containerd::start(Version::V1_6, None, &[]);
        let socket = dir.path().join(format!("front-{run}.sock"));
        let mut front = start_front(&fronted.socket, &socket, &policy).await;
        let started = cpu_ticks(front.id());
        times[2].push(pull(&fronted, &socket, "v1"));
        times[3].push(pull(&fronted, &socket, "v2"));
        front_ticks += cpu_ticks(front.id()) - started;
        let _ = front.kill();
        let _ = front.wait();
    }
    let mb = layer_bytes >> 20;
    let [direct_v1, direct_v2, front_cold, front_warm] = times.map(median);
    for (case, time) in [
        ("direct (v1)", direct_v1),
        ("direct (v2)", direct_v2),
        ("through the front, cold metadata (v1)", front_cold),
        ("through the front, warm metadata (v2)", front_warm),
    ] {
        println!(
            "{:<56} {:>10} {:>12} {:>10.2}ms",
            format!("ctr pull 1.6 ({mb} MiB), {case}, median"),
            "",
            "",
            time.as_secs_f64() * 1000.0
        );
    }
    // The front's CPU time per MiB it relays: steadier than the ratios on a shared machine.
    println!(
        "{:<56} {:>10} {:>12} {:>10.2}ms",
        "  front CPU per MiB pulled through it",
        "",
        "",
        front_ticks as f64 * 10.0 / (2 * runs * mb) as f64
    );
    for (case, front, direct) in [
        ("cold", front_cold, direct_v1),
        ("warm", front_warm, direct_v2),
    ] {
        println!(
            "{:<56} {:>10.2}",
            format!("  ratio front ({case} metadata) / direct"),
            front.as_secs_f64() / direct.as_secs_f64()
        );
    }

    // Forwarded unary latency: containerd's Version call, direct vs through the front.
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let socket = dir.path().join("front-unary.sock");
    let mut front = start_front(&containerd.socket, &socket, &policy).await;
    let calls = runs * 100;
    let mut latency = [Duration::ZERO; 2];
    for (i, target) in [containerd.socket.clone(), socket.clone()]
        .iter()
        .enumerate()
    {
        let channel = containerd_tuf_verifier::client::unix_channel(target, Duration::from_secs(5))
            .await
            .unwrap();
        let mut client = VersionClient::new(channel);
        client.version(()).await.unwrap();
        let start = Instant::now();
        for _ in 0..calls {
            client.version(()).await.unwrap();
        }
        latency[i] = start.elapsed();
    }
    let _ = front.kill();
    let _ = front.wait();
    let per_call = |d: Duration| d.as_secs_f64() * 1e6 / calls as f64;
    println!(
        "{:<56} {:>10} {:>12} {:>10.1}us",
        "unary Version call, direct",
        "",
        "",
        per_call(latency[0])
    );
    println!(
        "{:<56} {:>10} {:>12} {:>10.1}us",
        "unary Version call, through the front",
        "",
        "",
        per_call(latency[1])
    );
    println!(
        "{:<56} {:>10.2}",
        "  ratio front / direct",
        latency[1].as_secs_f64() / latency[0].as_secs_f64()
    );
}

/// `tuf-oci copy` (image plus all its TUF metadata) vs `skopeo copy` (image only) of the same
/// four-layer image, registry to registry, with the peak memory of each process.
async fn copy_vs_skopeo(registry: &TestRegistry, layer_bytes: usize) {
    use std::process::Command;

    let org = Org::init(registry, "bench/big").await;
    let fills: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|f| f.repeat(layer_bytes))
        .collect();
    let contents: Vec<&str> = fills.iter().map(String::as_str).collect();
    registry
        .push_image_layers("bench/big", "v1", &contents)
        .await;
    org.sign(
        registry,
        &registry.image("bench/big:v1"),
        "targets",
        &org.targets_key().await,
    )
    .await;
    org.publish(registry).await;
    let measure = |program: &std::path::Path, args: &[String]| {
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%e %M"])
            .arg(program)
            .args(args)
            .output()
            .expect("/usr/bin/time (Debian package time)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default().to_string();
        let mut fields = last.split_whitespace();
        let seconds: f64 = fields
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        let kib: u64 = fields
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        (seconds, kib)
    };
    let ours_dest = TestRegistry::start();
    let theirs_dest = TestRegistry::start();
    let source = format!("{}/bench/big:v1", registry.host);
    let ours = measure(
        &tuf_oci_tests::cli_binary(),
        &[
            "--insecure-registry".into(),
            format!("{},{}", registry.host, ours_dest.host),
            "copy".into(),
            source.clone(),
            format!("{}/bench/big:v1", ours_dest.host),
        ],
    );
    let theirs = measure(
        std::path::Path::new("skopeo"),
        &[
            "copy".into(),
            "--quiet".into(),
            "--src-tls-verify=false".into(),
            "--dest-tls-verify=false".into(),
            format!("docker://{source}"),
            format!("docker://{}/bench/big:v1", theirs_dest.host),
        ],
    );
    let mb = 4 * (layer_bytes >> 20);
    println!(
        "{:<56} {:>10} {:>9} MiB {:>10.2}s",
        format!("tuf-oci copy ({mb} MiB, with TUF metadata)"),
        "",
        ours.1 >> 10,
        ours.0
    );
    println!(
        "{:<56} {:>10} {:>9} MiB {:>10.2}s",
        format!("skopeo copy ({mb} MiB, image only)"),
        "",
        theirs.1 >> 10,
        theirs.0
    );
    println!(
        "{:<56} {:>10.2}",
        "  ratio time tuf-oci / skopeo",
        ours.0 / theirs.0
    );
}

/// Peak resident memory of the verification service and of the front, each answering
/// `concurrent` pulls at once (the service: bindir invocations; the front: `ctr images pull` on
/// containerd 1.6).
async fn peak_memory_under_load(registry: &TestRegistry, concurrent: usize) {
    use tuf_oci_tests::containerd::{Containerd, Version};

    let wanted: Vec<(String, String)> = (0..concurrent)
        .map(|i| (format!("t{i}"), format!("load {i}")))
        .collect();
    let (org, images) = signed_app(registry, "load/app", &wanted).await;
    let dir = tempfile::tempdir().unwrap();
    let (policy, socket) = service_policy(dir.path(), registry, &org, "load/");
    let peak_kib = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or_default()
    };

    let verifier = tuf_oci_tests::workspace_binary("containerd-tuf-verifier");
    let mut service = start_service(&verifier, &policy, &socket).await;
    let mut calls = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let (verifier, policy) = (verifier.clone(), policy.clone());
        let name = format!("{}/load/app:t{i}", registry.host);
        let image = image.clone();
        calls.push(tokio::task::spawn_blocking(move || {
            run_bindir(&verifier, &policy, &name, &image)
        }));
    }
    for call in calls {
        assert!(call.await.unwrap(), "a verification failed under load");
    }
    let service_peak = peak_kib(service.id());
    let _ = service.kill();
    let _ = service.wait();

    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let front_socket = dir.path().join("front.sock");
    let mut front = start_front(&containerd.socket, &front_socket, &policy).await;
    let mut pulls = Vec::new();
    for i in 0..concurrent {
        let name = format!("{}/load/app:t{i}", registry.host);
        pulls.push(
            containerd.spawn_ctr_at(&front_socket, &["images", "pull", "--plain-http", &name]),
        );
    }
    for pull in pulls {
        assert!(
            pull.await.unwrap().status.success(),
            "a pull through the front failed under load"
        );
    }
    let front_peak = peak_kib(front.id());
    let _ = front.kill();
    let _ = front.wait();
    println!(
        "{:<56} {:>10} {:>9} MiB",
        format!("peak RSS, verifier service, {concurrent} concurrent"),
        "",
        service_peak >> 10
    );
    println!(
        "{:<56} {:>10} {:>9} MiB",
        format!("peak RSS, front, {concurrent} concurrent ctr pulls"),
        "",
        front_peak >> 10
    );
}
