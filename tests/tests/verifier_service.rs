//! The verification service on a real Unix socket: concurrent calls, the bindir executable's
//! fast path giving the same answers as in-process verification, a service restart while
//! requests run, and a corrupted trusted-metadata cache that is rebuilt, never trusted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_tuf_verifier::api::{self, VerifyRequest};
use containerd_tuf_verifier::bindir;
use containerd_tuf_verifier::engine::Engine;
use containerd_tuf_verifier::policy::Policy;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tuf_oci::layout::Entry;
use tuf_oci_tests::{Org, TeamA, TestRegistry, write_policy};

struct Fixture {
    registry: TestRegistry,
    org: Org,
    dir: tempfile::TempDir,
    policy: PathBuf,
    socket: PathBuf,
    signed: Entry,
    unsigned: Entry,
}

async fn fixture() -> Fixture {
    let registry = TestRegistry::start();
    let TeamA {
        org,
        signed,
        unsigned,
    } = TeamA::create(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/verifier.sock");
    let policy = write_policy(
        dir.path(),
        &registry,
        &org,
        &["team-a/"],
        &[],
        &format!(
            "socket = \"{}\"\nrefresh_interval_seconds = 30",
            socket.display()
        ),
    );
    Fixture {
        registry,
        org,
        dir,
        policy,
        socket,
        signed,
        unsigned,
    }
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn start_service(policy: &Path, socket: &Path) -> Running {
    let engine = Arc::new(Engine::new(Policy::load(policy).unwrap()).unwrap());
    let listener = containerd_tuf_verifier::server::bind(socket).unwrap();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        containerd_tuf_verifier::server::serve(engine, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn bindir_args(name: &str, descriptor: &Entry) -> Vec<String> {
    [
        "-name",
        name,
        "-digest",
        &descriptor.digest,
        "-stdin-media-type",
        bindir::DESCRIPTOR_MEDIA_TYPE,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn bindir_run(f: &Fixture, name: &str, descriptor: &Entry) -> bindir::Outcome {
    let stdin = serde_json::to_vec(descriptor).unwrap();
    // Boxed: a whole verification's future is large in debug builds, and the tests hold
    // several of them on a test thread's stack.
    Box::pin(bindir::run(
        &bindir_args(name, descriptor),
        &stdin[..],
        Policy::load(&f.policy),
        true,
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_verifications() {
    let f = fixture().await;
    let service = start_service(&f.policy, &f.socket);
    let client =
        containerd_tuf_verifier::client::connect(&f.socket, std::time::Duration::from_secs(2))
            .await
            .unwrap();
    let health = client
        .clone()
        .health(api::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.scopes, ["org"]);
    let mut calls = Vec::new();
    for i in 0..50 {
        let mut client = client.clone();
        let (tag, entry) = if i % 2 == 0 {
            ("v1", &f.signed)
        } else {
            ("v2", &f.unsigned)
        };
        let request = VerifyRequest {
            reference: format!("{}/team-a/app:{tag}", f.registry.host),
            descriptor: Some(api::Descriptor {
                media_type: entry.media_type.clone(),
                digest: entry.digest.clone(),
                size: entry.size,
                ..Default::default()
            }),
            ..Default::default()
        };
        calls.push(tokio::spawn(async move {
            (i, client.verify(request).await.unwrap().into_inner())
        }));
    }
    for call in calls {
        let (i, answer) = call.await.unwrap();
        if i % 2 == 0 {
            assert!(answer.allowed, "{}", answer.reason);
            let target = answer.target.unwrap();
            assert_eq!(target.name, "team-a/app:v1");
            assert_eq!(target.role, "team-a");
        } else {
            assert!(!answer.allowed);
            assert!(
                answer
                    .reason
                    .contains("no trusted role signs target team-a/app:v2"),
                "{}",
                answer.reason
            );
        }
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fast_path_and_in_process_agree_and_survive_a_restart() {
    let f = fixture().await;
    let signed_name = format!("{}/team-a/app:v1", f.registry.host);
    let unsigned_name = format!("{}/team-a/app:v2", f.registry.host);

    let in_process = (
        bindir_run(&f, &signed_name, &f.signed).await,
        bindir_run(&f, &unsigned_name, &f.unsigned).await,
    );
    assert!(!in_process.0.via_service && !in_process.1.via_service);
    assert_eq!(in_process.0.code, 0, "{}", in_process.0.message);
    assert_eq!(in_process.1.code, 1);

    let service = start_service(&f.policy, &f.socket);
    let fast = (
        bindir_run(&f, &signed_name, &f.signed).await,
        bindir_run(&f, &unsigned_name, &f.unsigned).await,
    );
    assert!(fast.0.via_service && fast.1.via_service);
    assert_eq!(
        (&fast.0.code, &fast.0.message),
        (&in_process.0.code, &in_process.0.message)
    );
    assert_eq!(
        (&fast.1.code, &fast.1.message),
        (&in_process.1.code, &in_process.1.message)
    );

    // Requests keep coming while the service is stopped and started again: every answer is
    // still right, from the service or in-process.
    let f = Arc::new(f);
    let load = {
        let f = f.clone();
        let name = signed_name.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..30 {
                answers.push(bindir_run(&f, &name, &f.signed).await);
            }
            answers
        })
    };
    service.stop().await;
    let service = start_service(&f.policy, &f.socket);
    let answers = load.await.unwrap();
    assert!(answers.iter().all(|a| a.code == 0), "{answers:?}");
    assert!(bindir_run(&f, &signed_name, &f.signed).await.via_service);
    service.stop().await;
}

#[tokio::test]
async fn corrupted_cache_is_rebuilt_not_trusted() {
    let f = fixture().await;
    let name = format!("{}/team-a/app:v1", f.registry.host);
    assert_eq!(bindir_run(&f, &name, &f.signed).await.code, 0);
    let cache = f.dir.path().join("cache");
    let metadata_cache = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut damaged = 0;
    for entry in std::fs::read_dir(&metadata_cache).unwrap() {
        let path = entry.unwrap().path();
        std::fs::write(&path, b"{\"signed\": garbage").unwrap();
        damaged += 1;
    }
    assert!(damaged >= 4);
    // A cached timestamp that parses but is not signed by the trusted root is ignored too.
    let forged = std::fs::read(f.dir.path().join("root.json")).unwrap();
    std::fs::write(metadata_cache.join("timestamp.json"), forged).unwrap();

    let outcome = bindir_run(&f, &name, &f.signed).await;
    assert_eq!(outcome.code, 0, "{}", outcome.message);
    let timestamp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(metadata_cache.join("timestamp.json")).unwrap())
            .unwrap();
    assert_eq!(timestamp["signed"]["_type"], "timestamp");
    // A cache directory that cannot be written fails closed with the path in the reason.
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::write(&cache, b"not a directory").unwrap();
    let outcome = bindir_run(&f, &name, &f.signed).await;
    assert_eq!(outcome.code, 1);
    assert!(
        outcome.message.contains(&cache.display().to_string()),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn scopes_of_one_root_share_what_it_trusted() {
    // Trusted metadata is kept per trusted root, not per scope. A newer state seen through
    // one scope is what another scope of the same root compares with, so an older copy read
    // through it (a stale bundle, a lagging mirror, a forged pointer) is a rollback.
    let f = fixture().await;
    let host = &f.registry.host;
    let bundle = f.dir.path().join("bundle");
    let image = format!("{host}/team-a/app:v1");
    tuf_oci_tests::tuf_oci_copy(host, &image, &format!("oci:{}", bundle.display()));
    f.org.publish(&f.registry).await;
    let policy = f.dir.path().join("two-scopes.toml");
    let scope = |name: &str, prefix: &str, extra: &str| {
        format!(
            "[[scope]]\nname = \"{name}\"\nregistries = [\"{host}\"]\n\
             repositories = [\"{prefix}\"]\nroot = \"{}\"\n{extra}\n",
            f.dir.path().join("root.json").display()
        )
    };
    let text = format!(
        "cache_dir = \"{}\"\ninsecure_registries = [\"{host}\"]\n{}{}",
        f.dir.path().join("cache").display(),
        scope("registry", "team-a/", ""),
        scope(
            "bundle",
            "prod/",
            &format!(
                "metadata = \"oci:{}:org/tuf\"\nsigned_as = [[\"prod/\", \"team-a/\"]]",
                bundle.display()
            )
        ),
    );
    std::fs::write(&policy, text).unwrap();
    let engine = Engine::new(Policy::load(&policy).unwrap()).unwrap();
    let seen = engine.check(&image, None).await;
    assert!(seen.allowed, "{}", seen.reason);
    let older = engine.check(&format!("{host}/prod/app:v1"), None).await;
    assert!(!older.allowed, "the older bundle passed: {}", older.reason);
    assert!(
        older.reason.contains("rollback of timestamp"),
        "{}",
        older.reason
    );
}

#[tokio::test]
async fn a_service_brings_metadata_up_to_date_when_it_starts() {
    // Top-level targets signs solo/app:v1, and the policy gives the metadata location.
    let registry = TestRegistry::start();
    let (org, signed) = tuf_oci_tests::solo(&registry, true).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("verifier.sock");
    let policy = tuf_oci_tests::write_bootstrapped_policy(
        dir.path(),
        &registry,
        &org,
        &["solo/"],
        &format!(
            "socket = \"{}\"\nrefresh_interval_seconds = 300",
            socket.display()
        ),
    );
    let service = start_service(&policy, &socket);
    // Before any verification is asked for, the service holds a trusted timestamp.
    tuf_oci_tests::wait_for_file(&dir.path().join("cache"), "timestamp.json").await;
    // With the registry gone, the first verification needs nothing more from it.
    let host = registry.host.clone();
    drop(registry);
    let mut client =
        containerd_tuf_verifier::client::connect(&socket, std::time::Duration::from_secs(2))
            .await
            .unwrap();
    let answer = client
        .verify(VerifyRequest {
            reference: format!("{host}/solo/app:v1"),
            descriptor: Some(api::Descriptor {
                media_type: signed.media_type.clone(),
                digest: signed.digest.clone(),
                size: signed.size,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.allowed, "{}", answer.reason);
    service.stop().await;
}

/// A TCP proxy to `upstream` holding each new connection for `delay` before forwarding it: a
/// registry as slow to answer as a remote one. Returns its `host:port` and the number of
/// connections made; stops when the task is aborted.
async fn slow_proxy(
    upstream: String,
    delay: std::time::Duration,
) -> (String, Arc<std::sync::atomic::AtomicUsize>, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let connections = Arc::<std::sync::atomic::AtomicUsize>::default();
    let counter = connections.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let mut server = tokio::net::TcpStream::connect(upstream).await?;
                tokio::io::copy_bidirectional(&mut client, &mut server).await
            });
        }
    });
    (host, connections, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_executable_waits_for_a_slow_cold_verification_by_the_service() {
    let registry = TestRegistry::start();
    let TeamA { org, signed, .. } = TeamA::create(&registry).await;
    // Each connection to the registry takes longer than connecting to the service may.
    let delay = std::time::Duration::from_secs(1);
    let (host, connections, proxy) = slow_proxy(registry.host.clone(), delay).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("verifier.sock");
    let root = dir.path().join("root.json");
    std::fs::write(&root, &org.root).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "cache_dir = \"{cache}\"\nsocket = \"{socket}\"\ninsecure_registries = [\"{host}\"]\n\
             [[scope]]\nname = \"org\"\nregistries = [\"{host}\"]\nrepositories = [\"team-a/\"]\n\
             root = \"{root}\"\n",
            cache = dir.path().join("cache").display(),
            socket = socket.display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let service = start_service(&policy, &socket);
    let name = format!("{host}/team-a/app:v1");
    let stdin = serde_json::to_vec(&signed).unwrap();
    let started = std::time::Instant::now();
    let outcome = bindir::run(
        &bindir_args(&name, &signed),
        &stdin[..],
        Policy::load(&policy),
        true,
    )
    .await;
    // The service's answer, not an in-process repeat of its work after giving up on it.
    assert!(
        outcome.via_service,
        "{outcome:?} after {:?} and {connections:?} registry connections",
        started.elapsed()
    );
    assert_eq!(outcome.code, 0, "{}", outcome.message);
    assert!(started.elapsed() >= delay);
    service.stop().await;
    proxy.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edited_policy_applies_before_the_service_restarts() {
    let f = fixture().await;
    let service = start_service(&f.policy, &f.socket);
    let name = format!("{}/team-a/app:v1", f.registry.host);
    let before = bindir_run(&f, &name, &f.signed).await;
    assert_eq!(before.code, 0, "{}", before.message);
    assert!(before.via_service);
    // The administrator narrows the scope: team-a is no longer covered, the default denies.
    write_policy(
        f.dir.path(),
        &f.registry,
        &f.org,
        &["other/"],
        &[],
        &format!("socket = \"{}\"", f.socket.display()),
    );
    let after = bindir_run(&f, &name, &f.signed).await;
    assert_eq!(
        after.code, 1,
        "the edited policy applies: {}",
        after.message
    );
    assert!(!after.via_service, "the service runs the old policy");
    assert!(
        after.message.contains("no scope covers"),
        "{}",
        after.message
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaced_root_file_applies_before_the_service_restarts() {
    let f = fixture().await;
    let service = start_service(&f.policy, &f.socket);
    let name = format!("{}/team-a/app:v1", f.registry.host);
    assert!(bindir_run(&f, &name, &f.signed).await.via_service);
    // The policy is untouched; the root file it names now holds another repository's root.
    let other = Org::init(&f.registry, "other/tuf").await;
    let policy = std::fs::read_to_string(&f.policy).unwrap();
    let root_file = policy
        .lines()
        .find_map(|line| line.trim().strip_prefix("root = "))
        .map(|quoted| quoted.trim_matches('"').to_string())
        .expect("the policy names a root file");
    std::fs::write(&root_file, &other.root).unwrap();
    let after = bindir_run(&f, &name, &f.signed).await;
    assert!(!after.via_service, "the service runs the old root");
    assert_eq!(after.code, 1, "{}", after.message);
    service.stop().await;
}
