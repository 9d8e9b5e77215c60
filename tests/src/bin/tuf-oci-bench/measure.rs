//! Measuring: clients whose registry traffic is counted, medians, and the printed rows.

use std::time::{Duration, Instant};

use tuf_oci::{Registry, RegistryConfig, TrustConfig, Verifier};
use tuf_oci_tests::{Org, TestRegistry};

/// A fresh client (own counters) trusting `org`, keeping trusted metadata in `cache`.
pub(crate) fn client(
    registry: &TestRegistry,
    org: &Org,
    cache: &std::path::Path,
) -> (Registry, Verifier) {
    client_with(registry, org, cache, Duration::ZERO)
}

pub(crate) fn client_with(
    registry: &TestRegistry,
    org: &Org,
    cache: &std::path::Path,
    refresh_interval: Duration,
) -> (Registry, Verifier) {
    let client = Registry::new(&RegistryConfig {
        insecure_hosts: vec![registry.host.clone()],
        timeout: Duration::from_secs(30),
    })
    .expect("registry client");
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

pub(crate) struct Measured {
    pub(crate) requests: u64,
    pub(crate) bytes: u64,
    pub(crate) time: Duration,
}

/// The run of median time among `runs` of one case. Requests and bytes are the same in every
/// run.
pub(crate) fn median_run(runs: Vec<Measured>) -> Measured {
    median_by(runs, |m| m.time)
}

/// The middle of `samples` by `key`: single runs on a shared machine vary by up to a factor
/// of two, and a mean would charge an outlier to whichever configuration ran then.
fn median_by<T, K: Ord>(mut samples: Vec<T>, key: impl FnMut(&T) -> K) -> T {
    samples.sort_unstable_by_key(key);
    samples.swap_remove(samples.len() / 2)
}

/// A verification as `tuf-oci verify` makes it (TUF, then the image the registry serves).
pub(crate) async fn measure(
    client: &Registry,
    verifier: &Verifier,
    image: &tuf_oci::ImageRef,
) -> Measured {
    measured(client, async {
        verifier.verify(image).await.expect("verification");
    })
    .await
}

/// The requests, bytes and time `work` costs `client`.
pub(crate) async fn measured(
    client: &Registry,
    work: impl std::future::Future<Output = ()>,
) -> Measured {
    let (requests, bytes) = (client.traffic().requests(), client.traffic().bytes());
    let start = Instant::now();
    work.await;
    Measured {
        time: start.elapsed(),
        requests: client.traffic().requests() - requests,
        bytes: client.traffic().bytes() - bytes,
    }
}

pub(crate) fn row(case: &str, m: &Measured) {
    println!(
        "{case:<56} {:>10} {:>12} {:>10.2}ms",
        m.requests,
        m.bytes,
        m.time.as_secs_f64() * 1000.0
    );
}

/// The middle of pull times.
pub(crate) fn median(samples: Vec<Duration>) -> Duration {
    median_by(samples, |d| *d)
}

/// The wall time (seconds) and peak resident memory (KiB) of one run of `program`, as
/// `/usr/bin/time` reports them; a run that fails ends the benchmark with its output.
pub(crate) fn timed_process(program: &std::path::Path, args: &[String]) -> (f64, u64) {
    let out = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%e %M"])
        .arg(program)
        .args(args)
        .output()
        .expect("/usr/bin/time (Debian package time)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed: {stderr}",
        program.display()
    );
    let last = stderr.lines().last().unwrap_or_default();
    let mut fields = last.split_whitespace();
    let seconds = fields
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    let kib = fields
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    (seconds, kib)
}
