//! containerd with the image verifier (2.3.4) and through the transfer front (1.6), and the
//! memory of the service and the front under load.

use std::time::{Duration, Instant};

use tuf_oci::layout::Entry;
use tuf_oci_tests::{Org, Running, TestRegistry, serve_verifier, start_front};

use crate::fixtures::signed_app;
use crate::measure::median;

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
        // The client's fallback: none, so that the service answers or the run fails.
        .env(
            "CONTAINERD_TUF_VERIFIER",
            "/nonexistent/containerd-tuf-verifier",
        )
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

/// The containerd image verifier: one bindir invocation in-process (cold cache) vs through the
/// warm service, and a `ctr images pull` with vs without the verifier installed.
pub(crate) async fn containerd_verifier(registry: &TestRegistry, runs: usize, layer_bytes: usize) {
    use tuf_oci_tests::containerd::{Containerd, Version};

    let content = "x".repeat(layer_bytes);
    let (org, images) = signed_app(registry, "plugin/app", &[("v1".into(), content)]).await;
    let image = &images[0];
    let dir = tempfile::tempdir().unwrap();
    let (policy, socket) = service_policy(dir.path(), registry, &org, "plugin/");
    let verifier = tuf_oci_tests::workspace_binary("containerd-tuf-verifier");
    let client = tuf_oci_tests::workspace_binary("containerd-tuf-verifier-client");
    let name = format!("{}/plugin/app:v1", registry.host);
    let invoke_with = |executable: &std::path::Path| {
        let start = Instant::now();
        assert!(run_bindir(executable, &policy, &name, image));
        start.elapsed()
    };
    let invoke = || invoke_with(&verifier);
    let mut cold = Duration::ZERO;
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(dir.path().join("cache"));
        cold += invoke();
    }
    // Stops a service and empties the cache.
    let stop = |service: Running| {
        drop(service);
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_dir_all(dir.path().join("cache"));
    };
    // The first verification a service just started answers, with an empty cache: the service
    // updates the metadata when it starts, and the verification waits for what is left of it.
    let _ = std::fs::remove_dir_all(dir.path().join("cache"));
    let mut service_cold = Duration::ZERO;
    for _ in 0..runs {
        let service = serve_verifier(&policy, &socket).await;
        service_cold += invoke();
        stop(service);
    }
    let mut service = serve_verifier(&policy, &socket).await;
    invoke();
    let (mut warm, mut warm_client) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..runs {
        warm += invoke();
        warm_client += invoke_with(&client);
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
        "bindir verifier, service just started (empty cache)",
        "",
        "",
        per(service_cold)
    );
    println!(
        "{:<56} {:>10} {:>12} {:>10.2}ms",
        "bindir verifier, warm service",
        "",
        "",
        per(warm)
    );
    println!(
        "{:<56} {:>10} {:>12} {:>10.2}ms",
        "bindir client, warm service",
        "",
        "",
        per(warm_client)
    );
    println!(
        "{:<56} {:>10.2}",
        "  ratio warm service / in-process cold",
        warm.as_secs_f64() / cold.as_secs_f64()
    );
    println!(
        "{:<56} {:>10.2}",
        "  ratio client / full executable, warm service",
        warm_client.as_secs_f64() / warm.as_secs_f64()
    );

    let bin_dir = dir.path().join("verifiers");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::copy(&verifier, bin_dir.join("containerd-tuf-verifier")).unwrap();
    // The client, as the package installs it beside the service. Its fallback (the full
    // executable, run when the service does not answer) is left missing: a service row must
    // time the service, and fails loudly rather than time the fallback unseen.
    let client_dir = dir.path().join("client");
    let no_fallback = dir.path().join("no-fallback");
    std::fs::create_dir_all(&client_dir).unwrap();
    std::fs::copy(&client, client_dir.join("containerd-tuf-verifier-client")).unwrap();
    // The same, in-process, for a client that follows the image's `tuf-metadata` pointer
    // instead of being given the metadata location.
    let pointer_dir = dir.path().join("pointer");
    std::fs::create_dir_all(&pointer_dir).unwrap();
    let pointer_policy =
        tuf_oci_tests::write_policy(&pointer_dir, registry, &org, &["plugin/"], &[], "");
    // containerd's own cost of running a verifier: one that only exits 0.
    let true_dir = dir.path().join("true");
    std::fs::create_dir_all(&true_dir).unwrap();
    std::fs::copy("/bin/true", true_dir.join("true")).unwrap();
    // Pulls, side by side in every run: no verifier; a verifier that only exits 0; ours answered
    // by the warm service, through the client and through the full executable; by a service
    // just started with an empty cache (which updates the metadata when it starts, while
    // containerd starts); in-process with an empty cache (service stopped), given the metadata
    // location or following the pointer.
    let pull = |verifiers: Option<&std::path::Path>, policy: &std::path::Path| {
        let containerd = Containerd::start(
            Version::V2_3,
            verifiers,
            &[
                ("CONTAINERD_TUF_POLICY", policy),
                ("CONTAINERD_TUF_VERIFIER", &no_fallback),
            ],
        );
        timed_pull(&containerd, &containerd.socket, &name)
    };
    let mut pulls: [Vec<Duration>; 7] = Default::default();
    for _ in 0..runs {
        pulls[0].push(pull(None, &policy));
        pulls[5].push(pull(Some(&true_dir), &policy));
        pulls[1].push(pull(Some(&client_dir), &policy));
        pulls[6].push(pull(Some(&bin_dir), &policy));
        stop(service);
        service = serve_verifier(&policy, &socket).await;
        pulls[2].push(pull(Some(&client_dir), &policy));
        stop(service);
        pulls[3].push(pull(Some(&bin_dir), &policy));
        let _ = std::fs::remove_dir_all(pointer_dir.join("cache"));
        pulls[4].push(pull(Some(&bin_dir), &pointer_policy));
        service = serve_verifier(&policy, &socket).await;
        invoke();
    }
    stop(service);
    let mb = layer_bytes >> 20;
    let [
        plain,
        warm,
        service_cold,
        cold,
        cold_pointer,
        exits,
        warm_full,
    ] = pulls.map(median);
    let verified = [
        ("verifier that only exits 0 (/bin/true)", exits),
        ("warm service (client)", warm),
        ("warm service (full executable)", warm_full),
        ("service just started, empty cache (client)", service_cold),
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
    // What this verifier adds to what containerd spends on running any verifier.
    for (case, time) in &verified[1..] {
        println!(
            "{:<56} {:>10.2}",
            format!("  ratio {case} / verifier that only exits 0"),
            time.as_secs_f64() / exits.as_secs_f64()
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

/// The transfer front: `ctr images pull` (containerd 1.6, client-side) through the front vs
/// directly, the first and the second pull through a front just started, and the latency a
/// forwarded unary call gains.
pub(crate) async fn transfer_front(registry: &TestRegistry, runs: usize, layer_bytes: usize) {
    use containerd_client::services::v1::version_client::VersionClient;
    use tuf_oci_tests::containerd::{Containerd, Version};

    // Two images of the same size: the first pull through a new front meets the metadata its
    // start-up update left (or the rest of that update), the second warm metadata; both have
    // cold content.
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
    // [direct v1, direct v2, front v1 (first pull), front v2 (second pull)]
    let mut times: [Vec<Duration>; 4] = Default::default();
    let mut front_ticks = 0;
    for run in 0..runs {
        let direct = Containerd::start(Version::V1_6, None, &[]);
        times[0].push(pull(&direct, &direct.socket, "v1"));
        times[1].push(pull(&direct, &direct.socket, "v2"));
        let _ = std::fs::remove_dir_all(dir.path().join("cache"));
        let fronted = Containerd::start(Version::V1_6, None, &[]);
        let socket = dir.path().join(format!("front-{run}.sock"));
        let front = start_front(&fronted.socket, &socket, &policy).await;
        let started = cpu_ticks(front.id());
        times[2].push(pull(&fronted, &socket, "v1"));
        times[3].push(pull(&fronted, &socket, "v2"));
        front_ticks += cpu_ticks(front.id()) - started;
        drop(front);
    }
    let mb = layer_bytes >> 20;
    let [direct_v1, direct_v2, front_first, front_second] = times.map(median);
    for (case, time) in [
        ("direct (v1)", direct_v1),
        ("direct (v2)", direct_v2),
        ("through the front, first pull (v1)", front_first),
        ("through the front, second pull (v2)", front_second),
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
        ("first", front_first, direct_v1),
        ("second", front_second, direct_v2),
    ] {
        println!(
            "{:<56} {:>10.2}",
            format!("  ratio front ({case} pull) / direct"),
            front.as_secs_f64() / direct.as_secs_f64()
        );
    }

    // Forwarded unary latency: containerd's Version call, direct vs through the front.
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let socket = dir.path().join("front-unary.sock");
    let front = start_front(&containerd.socket, &socket, &policy).await;
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
    drop(front);
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

/// Peak resident memory of the verification service and of the front, each answering
/// `concurrent` pulls at once (the service: bindir invocations; the front: `ctr images pull` on
/// containerd 1.6).
pub(crate) async fn peak_memory_under_load(
    registry: &TestRegistry,
    concurrent: usize,
    layer_bytes: usize,
) {
    let wanted: Vec<(String, String)> = (0..concurrent)
        .map(|i| (format!("t{i}"), format!("load {i}")))
        .collect();
    let (org, images) = signed_app(registry, "load/app", &wanted).await;
    let dir = tempfile::tempdir().unwrap();
    let (policy, socket) = service_policy(dir.path(), registry, &org, "load/");

    let verifier = tuf_oci_tests::workspace_binary("containerd-tuf-verifier");
    let service = serve_verifier(&policy, &socket).await;
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
    drop(service);

    let names: Vec<String> = (0..concurrent)
        .map(|i| format!("{}/load/app:t{i}", registry.host))
        .collect();
    let front_peak = front_peak_kib(dir.path(), &policy, &names).await;

    // Large layers: each blob write may run up to the front's bound ahead of containerd.
    let large = (concurrent / 5).max(2);
    let wanted: Vec<(String, String)> = (0..large)
        .map(|i| {
            let fill = char::from(b'a' + i as u8).to_string();
            (format!("t{i}"), fill.repeat(layer_bytes / 2))
        })
        .collect();
    let (org, _) = signed_app(registry, "layered/app", &wanted).await;
    let layered_dir = tempfile::tempdir().unwrap();
    let (layered_policy, _) = service_policy(layered_dir.path(), registry, &org, "layered/");
    let names: Vec<String> = (0..large)
        .map(|i| format!("{}/layered/app:t{i}", registry.host))
        .collect();
    let layered_peak = front_peak_kib(layered_dir.path(), &layered_policy, &names).await;
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
    println!(
        "{:<56} {:>10} {:>9} MiB",
        format!(
            "peak RSS, front, {large} concurrent pulls of {:.1} MiB layers",
            layer_bytes as f64 / 2.0 / f64::from(1 << 20)
        ),
        "",
        layered_peak >> 10
    );
}

/// Peak resident memory (KiB) of process `pid` so far.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or_default()
}

/// Peak resident memory (KiB) of a front, started with `policy` (its socket in `dir`) before
/// a new containerd 1.6, that answered `ctr images pull` of every one of `names` at once.
async fn front_peak_kib(dir: &std::path::Path, policy: &std::path::Path, names: &[String]) -> u64 {
    use tuf_oci_tests::containerd::{Containerd, Version};

    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let front_socket = dir.join("front.sock");
    let front = start_front(&containerd.socket, &front_socket, policy).await;
    let pulls: Vec<_> = names
        .iter()
        .map(|name| {
            containerd.spawn_ctr_at(&front_socket, &["images", "pull", "--plain-http", name])
        })
        .collect();
    for pull in pulls {
        let out = pull.await.unwrap();
        assert!(
            out.status.success(),
            "a pull through the front failed under load: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let peak = peak_kib(front.id());
    drop(front);
    peak
}
