//! `containerd-tuf-verifier-client`: the image verifier to put in containerd's bin_dir when the
//! verification service runs. It asks the service and, when the service does not answer, runs
//! the full `containerd-tuf-verifier` in-process. It links no verification engine, so each pull
//! pays a smaller executable's start.
//!
//!     containerd-tuf-verifier-client -name REF -digest DIGEST -stdin-media-type MEDIA_TYPE < descriptor
//!
//! The full executable is `$CONTAINERD_TUF_VERIFIER`, or /usr/bin/containerd-tuf-verifier.

use std::path::PathBuf;
use std::process::ExitCode;

use containerd_tuf_verifier::{bindir, logs, policy::Policy};

/// The full executable, where the package installs it.
const VERIFIER: &str = "/usr/bin/containerd-tuf-verifier";
/// Names another full executable.
const VERIFIER_ENV: &str = "CONTAINERD_TUF_VERIFIER";

const USAGE: &str = "\
containerd-tuf-verifier-client: TUF verification of containerd image pulls, through the service

containerd runs it as an image verifier (bindir), with the resolved descriptor on stdin:
    containerd-tuf-verifier-client -name REF -digest DIGEST -stdin-media-type application/vnd.oci.descriptor.v1+json
Exit 0 allows the pull; otherwise stdout says which check failed.

It asks the verification service on the policy's socket (containerd-tuf-verifier serve); when
the service does not answer, it runs $CONTAINERD_TUF_VERIFIER (default
/usr/bin/containerd-tuf-verifier), which verifies in-process. The policy is
$CONTAINERD_TUF_POLICY, or /etc/containerd-tuf/policy.toml. Logs go to stderr;
$CONTAINERD_TUF_LOG sets the filter (e.g. debug).";

fn main() -> ExitCode {
    logs::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = bindir::info(&args, "containerd-tuf-verifier-client", USAGE) {
        return code;
    }
    let verifier =
        std::env::var_os(VERIFIER_ENV).map_or_else(|| PathBuf::from(VERIFIER), PathBuf::from);
    bindir::report(|stdin| bindir::run_client(&args, stdin, Policy::from_env(), &verifier))
}
