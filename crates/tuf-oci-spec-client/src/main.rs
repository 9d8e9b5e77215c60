//! `tuf-oci-spec-client`: the tuf-oci verification engine (the same updater the registry
//! client uses) behind the command-line contract of TUF conformance suites, over plain HTTP:
//!
//! ```text
//! --metadata-dir D init TRUSTED_ROOT_FILE
//! --metadata-dir D --metadata-url U refresh
//! --metadata-dir D --metadata-url U --target-name P... --target-base-url T --target-dir O download
//! ```
//!
//! Exit 0 on success, 1 on failure. Trusted metadata is kept in D as `root.json`,
//! `timestamp.json`, `snapshot.json`, `targets.json` and `<role>.json`; targets are saved in O
//! under their percent-encoded names and not downloaded again while they verify.

mod http_source;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use sha2::Digest as _;
use tuf_oci::schema::Target;
use tuf_oci::trusted::{TrustedStore, encode_file_name};
use tuf_oci::{Expiration, Limits, Updater};

use crate::http_source::HttpSource;

#[derive(Debug, Parser)]
#[command(name = "tuf-oci-spec-client", version)]
struct Cli {
    /// Directory of trusted metadata.
    #[arg(long)]
    metadata_dir: PathBuf,
    /// Base URL of the repository's metadata.
    #[arg(long)]
    metadata_url: Option<String>,
    /// Targets to download (repeatable).
    #[arg(long = "target-name")]
    target_names: Vec<String>,
    /// Base URL of target files.
    #[arg(long)]
    target_base_url: Option<String>,
    /// Where downloaded targets are kept.
    #[arg(long)]
    target_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Trust this root (no network).
    Init { trusted_root: PathBuf },
    /// Update top-level metadata.
    Refresh,
    /// Update, then download and verify the named targets.
    Download,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tuf-oci-spec-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Init { trusted_root } = &cli.command {
        let root = std::fs::read(trusted_root)
            .with_context(|| format!("reading {}", trusted_root.display()))?;
        TrustedStore::at(&cli.metadata_dir).store("root.json", &root)?;
        return Ok(());
    }
    let url = cli
        .metadata_url
        .as_deref()
        .context("--metadata-url is required")?;
    let mut updater = open(&cli.metadata_dir, HttpSource::new(url)?)?;
    updater.refresh().await?;
    if let Command::Download = cli.command {
        let base = cli
            .target_base_url
            .as_deref()
            .context("--target-base-url is required")?;
        let dir = cli
            .target_dir
            .as_deref()
            .context("--target-dir is required")?;
        let targets = HttpSource::new(base)?;
        let consistent = updater.root().signed.consistent_snapshot;
        for name in &cli.target_names {
            let (_, target) = updater.find_target(name, None).await?;
            download(&targets, name, &target, consistent, dir).await?;
        }
    }
    Ok(())
}

fn open(dir: &Path, source: HttpSource) -> anyhow::Result<Updater<HttpSource>> {
    let store = TrustedStore::at(dir);
    let root = store
        .load("root.json")?
        .with_context(|| format!("no trusted root in {} (run init)", dir.display()))?;
    Ok(Updater::open(
        source,
        store,
        &root,
        Limits::default(),
        Expiration::Enforce,
    )?)
}

/// Fetches `name` unless `dir` already holds a copy matching the target (TUF 5.7).
async fn download(
    source: &HttpSource,
    name: &str,
    target: &Target,
    consistent: bool,
    dir: &Path,
) -> anyhow::Result<()> {
    check_target_path(name)?;
    let path = dir.join(encode_file_name(name));
    // A plain file of the target's size only, read no further than that: what the name
    // holds (a link to `/dev/zero`, say) is checked once opened.
    let held = std::fs::File::open(&path).ok().and_then(|file| {
        let plain = file
            .metadata()
            .is_ok_and(|m| m.is_file() && m.len() == target.length);
        let mut bytes = Vec::new();
        let read = std::io::Read::read_to_end(
            &mut std::io::Read::take(file, target.length + 1),
            &mut bytes,
        );
        (plain && read.is_ok()).then_some(bytes)
    });
    if held.is_some_and(|bytes| matches(&bytes, target)) {
        return Ok(());
    }
    // Consistent snapshots prefix the file name (not the directories) with its hash.
    let remote = if consistent {
        let (parent, file) = name.rsplit_once('/').map_or(("", name), |(p, f)| (p, f));
        let hashed = format!("{}.{file}", hex::encode(&target.hashes.sha256));
        if parent.is_empty() {
            hashed
        } else {
            format!("{parent}/{hashed}")
        }
    } else {
        name.to_string()
    };
    let encoded: Vec<String> = remote.split('/').map(encode_file_name).collect();
    let bytes = source
        .get(&encoded.join("/"), target.length)
        .await?
        .with_context(|| format!("target {name} not found"))?;
    if !matches(&bytes, target) {
        bail!("target {name}: length or sha256 differs from its trusted metadata");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Replaced whole: never written through a link there, nor left half written.
    tuf_oci::atomic::replace(&path, 0o644, |file| std::io::Write::write_all(file, &bytes))?;
    Ok(())
}

/// Refuses a target name whose path would step out of the targets URL (`a/../../x`, `/x`,
/// `//host/x`): no target a repository serves.
fn check_target_path(name: &str) -> anyhow::Result<()> {
    if name
        .split('/')
        .any(|segment| matches!(segment, "" | "." | ".."))
    {
        bail!("target {name}: an empty, `.` or `..` path segment");
    }
    Ok(())
}

fn matches(bytes: &[u8], target: &Target) -> bool {
    bytes.len() as u64 == target.length
        && sha2::Sha256::digest(bytes)[..] == target.hashes.sha256[..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_paths_stepping_out_of_the_targets_url_are_refused() {
        for name in ["a/../../x", "/x", "//host/x", "./x", "a//b", "a/"] {
            assert!(check_target_path(name).is_err(), "{name}");
        }
        for name in ["x", "a/b.tar.gz", "dir/..x"] {
            assert!(check_target_path(name).is_ok(), "{name}");
        }
    }
}
