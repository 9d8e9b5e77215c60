//! `containerd-tuf-transfer`: a verifying gRPC front for containerd.
//!
//!     containerd-tuf-transfer --containerd /run/containerd/containerd.sock \
//!         --listen /run/containerd/tuf.sock [--policy /etc/containerd-tuf/policy.toml]
//!
//! then point clients at the front: `ctr --address /run/containerd/tuf.sock images pull ...`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use containerd_tuf_transfer::{server, upstream::Upstream};
use containerd_tuf_verifier::engine::Engine;
use containerd_tuf_verifier::policy::Policy;

#[derive(Debug, Parser)]
#[command(name = "containerd-tuf-transfer", version)]
struct Args {
    /// containerd's socket.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    containerd: PathBuf,
    /// The front's socket.
    #[arg(long, default_value = "/run/containerd/tuf.sock")]
    listen: PathBuf,
    /// Policy file (default: $CONTAINERD_TUF_POLICY or /etc/containerd-tuf/policy.toml).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Where imported archives are staged while they are checked, each in a directory of its
    /// own removed once containerd has it (default: $TMPDIR, else /tmp). Archives may be
    /// large: choose a disk, not a small tmpfs.
    #[arg(long)]
    staging_dir: Option<PathBuf>,
}

// One thread: relaying is bound by system calls and wake-ups, and a second worker adds
// cross-thread wake-ups to each frame (0.85 ms of CPU per MiB relayed against 0.58,
// `docs/performance.md`). Archive checks run on the blocking pool.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONTAINERD_TUF_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let policy = match &args.policy {
        Some(path) => Policy::load(path)?,
        None => Policy::from_env()?,
    };
    let engine = Arc::new(Engine::new(policy)?);
    let listener = containerd_tuf_verifier::server::bind(&args.listen)?;
    tracing::info!(listen = %args.listen.display(), containerd = %args.containerd.display(), "serving");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let staging = args.staging_dir.unwrap_or_else(std::env::temp_dir);
    server::serve(
        listener,
        Upstream::new(args.containerd),
        engine,
        staging,
        shutdown,
    )
    .await?;
    let _ = std::fs::remove_file(&args.listen);
    Ok(())
}
