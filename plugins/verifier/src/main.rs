//! `containerd-tuf-verifier`: run by containerd as an image verifier (bindir), or as the
//! verification service with `serve`.
//!
//!     containerd-tuf-verifier -name REF -digest DIGEST -stdin-media-type MEDIA_TYPE < descriptor
//!     containerd-tuf-verifier serve [--policy FILE]
//!     containerd-tuf-verifier check [--policy FILE]
//!     containerd-tuf-verifier --version
//!
//! The policy comes from `--policy`, `CONTAINERD_TUF_POLICY`, or /etc/containerd-tuf/policy.toml.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use containerd_tuf_verifier::policy::Policy;
use containerd_tuf_verifier::{bindir, engine::Engine, logs, server};

const USAGE: &str = "\
containerd-tuf-verifier: TUF verification of containerd image pulls

containerd runs it as an image verifier (bindir), with the resolved descriptor on stdin:
    containerd-tuf-verifier -name REF -digest DIGEST -stdin-media-type application/vnd.oci.descriptor.v1+json
Exit 0 allows the pull; otherwise stdout says which check failed.

Run the verification service (warm metadata, used by the executable when its socket is up):
    containerd-tuf-verifier serve [--policy FILE]
On nodes running it, containerd-tuf-verifier-client is the smaller image verifier: it asks the
service, and runs this executable with $CONTAINERD_TUF_IN_PROCESS=1 (verify in-process without
asking the service) when the service does not answer.

Check a policy before putting it in place (it loads, and every trusted root it names reads):
    containerd-tuf-verifier check [--policy FILE]

The policy is --policy, $CONTAINERD_TUF_POLICY, or /etc/containerd-tuf/policy.toml
(example: /usr/share/doc/containerd-tuf/policy.example.toml). Logs go to stderr;
$CONTAINERD_TUF_LOG sets the filter (e.g. debug).";

fn main() -> ExitCode {
    logs::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = bindir::info(&args, "containerd-tuf-verifier", USAGE) {
        return code;
    }
    if args.first().map(String::as_str) == Some("serve") {
        let served = runtime(tokio::runtime::Builder::new_multi_thread())
            .and_then(|runtime| runtime.block_on(serve(&args[1..])));
        return match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("containerd-tuf-verifier: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some("check") {
        return match check(&args[1..]) {
            Ok(scopes) => {
                println!(
                    "containerd-tuf-verifier: the policy loads; {scopes} scopes, their trusted \
                     roots read"
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("containerd-tuf-verifier: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let ask_service = std::env::var_os(bindir::IN_PROCESS_ENV).is_none();
    bindir::report(|stdin| bindir::run(&args, stdin, Policy::from_env(), ask_service))
}

fn runtime(mut builder: tokio::runtime::Builder) -> anyhow::Result<tokio::runtime::Runtime> {
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The policy `command`'s `args` name: `--policy FILE`, or the one the environment does.
fn policy_of(command: &str, args: &[String]) -> anyhow::Result<Policy> {
    match args {
        [] => Policy::from_env(),
        [flag, path] if flag == "--policy" => Policy::load(&PathBuf::from(path)),
        _ => anyhow::bail!("usage: containerd-tuf-verifier {command} [--policy FILE]"),
    }
}

/// Whether the policy `args` name would be served, as `serve` sets it up (its trusted roots
/// read and parsed), without serving it: how many scopes it has.
fn check(args: &[String]) -> anyhow::Result<usize> {
    let mut policy = policy_of("check", args)?;
    let scopes = policy.scopes.len();
    // Nothing is written to the node's cache (a new trust directory there would be taken up
    // from a sibling, under the running service's lock): set up in a scratch one instead.
    let scratch = tempfile::tempdir().context("a scratch directory for the check")?;
    policy.cache_dir = scratch.path().to_path_buf();
    Engine::new(policy)?;
    Ok(scopes)
}

async fn serve(args: &[String]) -> anyhow::Result<()> {
    let policy = policy_of("serve", args)?;
    let socket = policy
        .socket
        .clone()
        .context("the policy names no socket to serve on")?;
    let engine = Arc::new(Engine::new(policy)?);
    let listener = server::bind(&socket)?;
    tracing::info!(socket = %socket.display(), "serving tufoci.verifier.v1");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
    };
    server::serve(engine, listener, shutdown).await?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
