//! Benchmarks against a real registry: requests and bytes per verification (cold and warm), one
//! cold verification with many targets in one role and with many delegated roles (the lazy
//! search must fetch only the role on the target's path), publishing after one change among
//! many roles, signing throughput, and the containerd image verifier: bindir latency
//! in-process vs through the service, `ctr images pull` with vs without it (containerd 2.3.4),
//! the transfer front, copies, `tuf-oci pull` against `ctr images pull`, memory under load.
//!
//!     cargo run --release -p tuf-oci-tests --bin tuf-oci-bench            # full size
//!     cargo run -p tuf-oci-tests --bin tuf-oci-bench -- --smoke           # CI size
//!     cargo run --release -p tuf-oci-tests --bin tuf-oci-bench -- signing roles  # some cases
//!
//! Prints figures and ratios; it asserts only what must hold at any size (the lazy search).
//!
//! Cases by module: [`verification`], [`signing`], [`containerd`] (verifier, front, memory),
//! [`copy`], [`pull`]; shared: [`measure`] (counted clients, medians, rows) and [`fixtures`].

use tuf_oci_tests::TestRegistry;

mod containerd;
mod copy;
mod fixtures;
mod measure;
mod pull;
mod signing;
mod verification;

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
    // Cases named on the command line, or all of them.
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    const CASES: [&str; 9] = [
        "requests", "targets", "roles", "signing", "verifier", "front", "copy", "pull", "memory",
    ];
    if let Some(unknown) = named.iter().find(|n| !CASES.contains(&n.as_str())) {
        eprintln!(
            "tuf-oci-bench: no case {unknown:?}; cases: {}",
            CASES.join(" ")
        );
        std::process::exit(2);
    }
    let registry = TestRegistry::start();
    println!(
        "tuf-oci verification benchmark ({})",
        if smoke { "smoke size" } else { "full size" }
    );
    println!(
        "{:<56} {:>10} {:>12} {:>12}",
        "case", "requests", "bytes", "time"
    );
    let run = |case: &str| named.is_empty() || named.iter().any(|n| n == case);
    if run("requests") {
        verification::requests_per_verification(&registry, sizes.runs).await;
    }
    if run("targets") {
        verification::many_targets_in_one_role(&registry, sizes.targets_in_one_role, sizes.runs)
            .await;
    }
    if run("roles") {
        verification::many_delegated_roles(
            &registry,
            sizes.roles,
            sizes.targets_per_role,
            sizes.runs,
        )
        .await;
    }
    if run("signing") {
        signing::signing_throughput(&registry, sizes.signed_at_once).await;
    }
    if run("verifier") {
        containerd::containerd_verifier(&registry, sizes.runs, sizes.layer_bytes).await;
    }
    if run("front") {
        containerd::transfer_front(&registry, sizes.runs, sizes.layer_bytes).await;
    }
    if run("copy") {
        copy::copy_vs_skopeo(&registry, sizes.layer_bytes).await;
    }
    if run("pull") {
        pull::pull_vs_ctr(&registry, sizes.layer_bytes).await;
    }
    if run("memory") {
        containerd::peak_memory_under_load(
            &registry,
            if smoke { 10 } else { 50 },
            sizes.layer_bytes,
        )
        .await;
    }
}
