//! `tuf-oci`: create, sign, publish and verify TUF metadata stored in OCI registries.

mod copy_cmd;
mod expiry;
mod keys_dir;

use std::collections::HashSet;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use containerd_tuf_transfer::pull::{MAX_LOCK_WAIT, PullOptions, pull};
use tuf_oci::descriptor::target_digest;
use tuf_oci::editor::{self, Editor, NewDelegation};
use tuf_oci::location::same_registry;
use tuf_oci::schema::RoleType;
use tuf_oci::store::{ContentStore, RegistryStore, check_graph};
use tuf_oci::{
    ImageRef, Registry, RegistryConfig, Repository, TrustConfig, Verifier, verify_in_store,
};

use crate::expiry::Expiry;
use crate::keys_dir::KeysDir;

/// The trusted root read when `--root` names none.
const DEFAULT_ROOT: &str = "root.json";

/// TUF-verified OCI images: metadata lives in the registry beside the images.
#[derive(Debug, Parser)]
#[command(name = "tuf-oci", version)]
struct Cli {
    /// Registry hosts (host:port) reached over plain HTTP; everything else uses HTTPS.
    #[arg(
        long = "insecure-registry",
        env = "TUF_OCI_INSECURE_REGISTRIES",
        value_delimiter = ',',
        global = true
    )]
    insecure: Vec<String>,
    /// The trusted root metadata (bootstrap) [default: root.json]. Named (here or by the
    /// variable), it must be there: a copy never goes unverified for a mistyped path.
    #[arg(long, env = "TUF_OCI_ROOT", global = true)]
    root: Option<PathBuf>,
    /// Metadata repository (host/path); overrides `tuf-metadata` pointers.
    #[arg(long, env = "TUF_OCI_METADATA_REPO", global = true)]
    metadata_repo: Option<String>,
    /// Directory for trusted metadata kept between runs (rollback protection). Default:
    /// $XDG_CACHE_HOME/tuf-oci, else $HOME/.cache/tuf-oci.
    #[arg(long, env = "TUF_OCI_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Verify images of local repository path prefix LOCAL as signed under SIGNED
    /// (`prod/app=team-a/app`), for copies promoted to other repositories (copy checks the
    /// source's image tags under those names). Repeatable.
    #[arg(long = "signed-as", value_name = "LOCAL=SIGNED", global = true)]
    signed_as: Vec<String>,
    /// Seconds this machine's clock may run ahead of the signers' before metadata counts as
    /// expired (0: strict; at most 86400, a day: every second lengthens a freeze attack's
    /// window, as the verifier's policy caps it).
    #[arg(long, default_value_t = 0, global = true,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    clock_skew: u64,
    /// Per-request deadline in seconds (1 to 86400).
    #[arg(long, default_value_t = 30, global = true,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an Ed25519 key pair: STEM.key (private) and STEM.pub (TUF public key).
    Keygen { stem: PathBuf },
    /// Create a TUF repository in --metadata-repo; writes the root to --out.
    Init {
        /// Directory of top-level keys (root.key, targets.key, ...); missing ones are generated.
        #[arg(long)]
        keys: PathBuf,
        /// Where to write the trusted root for clients.
        #[arg(long, default_value = "root.json")]
        out: PathBuf,
        /// How many root keys must sign a new root.
        #[arg(long, default_value = "1")]
        root_threshold: NonZeroU64,
        #[command(flatten)]
        expiry: Expiry,
    },
    /// Delegate target name patterns to a role with its own keys and threshold.
    Delegate {
        /// The delegated role's name.
        role: String,
        /// Target name patterns, e.g. 'team-a/*'.
        #[arg(long, required = true, num_args = 1..)]
        paths: Vec<String>,
        /// The role's public keys (STEM or STEM.pub), repeatable.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[arg(long, default_value = "1")]
        threshold: NonZeroU64,
        /// Stop the search at this role for names it covers.
        #[arg(long)]
        terminating: bool,
        #[command(flatten)]
        delegator: Delegator,
        #[command(flatten)]
        expiry: Expiry,
    },
    /// Withdraw a delegation: nothing the role signs is found through its parent once
    /// published.
    Undelegate {
        /// The delegated role's name.
        role: String,
        #[command(flatten)]
        delegator: Delegator,
        #[command(flatten)]
        expiry: Expiry,
    },
    /// Sign the descriptors the registry serves for IMAGEs (host/repo:tag) into a role, in one
    /// new version of it.
    Sign {
        images: Vec<String>,
        /// Also sign the images listed in FILE, one per line (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        images_from: Option<PathBuf>,
        #[arg(long)]
        role: String,
        /// The role's private keys, repeatable (threshold).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[command(flatten)]
        expiry: Expiry,
    },
    /// Remove (revoke) IMAGE's target (host/repo:tag) from a role.
    Remove {
        image: String,
        #[arg(long)]
        role: String,
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[command(flatten)]
        expiry: Expiry,
    },
    /// Rebuild snapshot and timestamp from the newest signed roles.
    Publish {
        #[arg(long)]
        keys: PathBuf,
        #[command(flatten)]
        expiry: Expiry,
    },
    /// Re-sign timestamp alone with a fresh expiry (for cron).
    Timestamp {
        #[arg(long)]
        keys: PathBuf,
        #[command(flatten)]
        expiry: Expiry,
    },
    /// Replace a top-level role's keys (root included) through a new root version.
    Rotate {
        /// root, targets, snapshot or timestamp.
        role: String,
        /// Top-level keys directory; the role's keys are replaced there (old ones kept in retired/).
        #[arg(long)]
        keys: PathBuf,
        /// Number of new keys.
        #[arg(long, default_value = "1")]
        count: u64,
        #[arg(long, default_value = "1")]
        threshold: NonZeroU64,
        /// Where to write the new root (clients need not update: they follow the chain).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        expiry: Expiry,
    },
    /// Manage a repository's `tuf-metadata` pointer.
    Pointer {
        #[command(subcommand)]
        action: PointerAction,
    },
    /// Verify IMAGE and print its signed descriptor: host/repo:tag, host/repo@sha256:..., or an
    /// image in an OCI layout or bundle (oci:DIR:repo:tag, oci-archive:FILE:repo:tag), offline.
    Verify {
        image: String,
        /// Also read every object of the image (configs, layers) and check its digest.
        #[arg(long)]
        deep: bool,
    },
    /// TUF-first pull into containerd: resolve IMAGE through TUF, fetch by digest, record and
    /// unpack it through containerd's API (works on containerd 1.6).
    Pull {
        image: String,
        /// containerd's socket.
        #[arg(
            long,
            env = "CONTAINERD_ADDRESS",
            default_value = "/run/containerd/containerd.sock"
        )]
        address: PathBuf,
        /// containerd namespace.
        #[arg(long, env = "CONTAINERD_NAMESPACE", default_value = "default")]
        namespace: String,
        /// Snapshotter to unpack for.
        #[arg(long, default_value = "overlayfs")]
        snapshotter: String,
        /// Record the image without unpacking it.
        #[arg(long)]
        no_unpack: bool,
        /// Seconds the pull waits for other clients' writes of blobs it needs, counted from its
        /// first wait (0 to 1800: half the pull's lease).
        #[arg(long, default_value_t = 600,
              value_parser = clap::value_parser!(u64).range(0..=MAX_LOCK_WAIT.as_secs()))]
        lock_wait: u64,
    },
    /// Copy an image repository with all its TUF metadata (registry, oci:DIR, oci-archive:FILE),
    /// so the copy verifies at the destination with the source unreachable. When the --root file
    /// exists, the source's metadata is verified against it before anything is written.
    Copy {
        /// host/repo[:tag], oci:DIR[:repo[:tag]] or oci-archive:FILE[:repo[:tag]].
        source: String,
        /// Same forms.
        destination: String,
        /// Copy every image tag of the source repository.
        #[arg(long)]
        all_tags: bool,
        /// Do not copy the metadata repository; point the destination at the source's.
        #[arg(long)]
        keep_metadata_remote: bool,
        /// List what would be copied without writing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// List every signed target (from the published, verified metadata).
    List {
        /// A repository whose pointer leads to the metadata (or use --metadata-repo).
        repository: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PointerAction {
    /// Point REPOSITORY's `tuf-metadata` at a metadata repository (../tuf, /org/tuf, host/org/tuf).
    Set {
        repository: String,
        #[arg(long)]
        to: String,
    },
    /// Show where REPOSITORY's metadata is.
    Show { repository: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TUF_OCI_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tuf-oci: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Set up by the first command that talks to a registry: it needs the system's CA
    // certificates, which a machine keeping root keys offline may lack.
    let client = std::cell::OnceCell::new();
    let registry = || -> anyhow::Result<&Registry> {
        if let Some(registry) = client.get() {
            return Ok(registry);
        }
        let registry = Registry::new(&RegistryConfig {
            insecure_hosts: cli.insecure.clone(),
            timeout: Duration::from_secs(cli.timeout),
        })?;
        Ok(client.get_or_init(|| registry))
    };
    let override_repo = cli
        .metadata_repo
        .as_deref()
        .map(Repository::parse)
        .transpose()?;
    let signed_as = cli
        .signed_as
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(local, signed)| (local.to_string(), signed.to_string()))
                .with_context(|| format!("--signed-as {pair}: expected LOCAL=SIGNED"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Chosen once, by the first command that verifies.
    let cache = std::cell::OnceCell::new();
    let cache_dir = || {
        cache
            .get_or_init(|| cli.cache_dir.clone().or_else(default_cache_dir))
            .clone()
    };
    let root_path = cli
        .root
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    let trust = || -> anyhow::Result<TrustConfig> {
        let root = std::fs::read(&root_path)
            .with_context(|| format!("reading trusted root {}", root_path.display()))?;
        Ok(TrustConfig {
            root,
            metadata_override: override_repo.clone(),
            cache_dir: cache_dir(),
            signed_as: signed_as.clone(),
            limits: tuf_oci::Limits {
                clock_skew: Duration::from_secs(cli.clock_skew),
                ..tuf_oci::Limits::default()
            },
            ..Default::default()
        })
    };
    let verifier =
        || -> anyhow::Result<Verifier> { Ok(Verifier::new(registry()?.clone(), trust()?)?) };
    let metadata_repo = || {
        override_repo
            .clone()
            .context("--metadata-repo (or TUF_OCI_METADATA_REPO) is required")
    };
    match cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "tuf-oci",
                &mut std::io::stdout(),
            );
        }
        Command::Keygen { stem } => {
            let key = tuf_oci::keys::generate(&stem)?;
            println!("{}", tuf_oci::keys::key_id(&key, &stem)?);
        }
        Command::Init {
            keys,
            out,
            root_threshold,
            expiry,
        } => {
            // Arguments first: nothing is generated for a command that cannot run.
            let expires = expiry.all()?;
            let metadata = metadata_repo()?;
            let dir = KeysDir::new(keys);
            // Before any key is made or anything stored.
            if out.exists() {
                let held = dir.top_level(root_threshold, false).await.ok();
                check_root_out(&out, held.as_ref())?;
            }
            let top = dir.top_level(root_threshold, true).await?;
            let new = editor::init(registry()?, &metadata, &top, &expires).await?;
            // Written before the rest is stored: should that stop part way, the root is
            // stored already and a rerun keeps it.
            write_root(&out, new.root())?;
            eprintln!("wrote trusted root {}", out.display());
            new.finish(&top, &expires).await?;
        }
        Command::Delegate {
            role,
            paths,
            keys,
            threshold,
            terminating,
            delegator,
            expiry,
        } => {
            expiry.only("delegate", &["targets"])?;
            let mut public = Vec::new();
            for key in &keys {
                public.push(tuf_oci::keys::read_public(key).await?);
            }
            let signers = delegator.keys().await?;
            let from = delegator.from;
            let metadata = metadata_repo()?;
            let editor = open_editor(&verifier()?, &metadata).await?;
            let delegation = NewDelegation {
                role,
                paths,
                keys: public,
                threshold,
                terminating,
            };
            let version = editor
                .delegate(&from, &delegation, &signers, expiry.targets()?)
                .await?;
            eprintln!(
                "{from} version {version} delegates to {}; run publish",
                delegation.role
            );
        }
        Command::Undelegate {
            role,
            delegator,
            expiry,
        } => {
            expiry.only("undelegate", &["targets"])?;
            let signers = delegator.keys().await?;
            let from = delegator.from;
            let editor = open_editor(&verifier()?, &metadata_repo()?).await?;
            let withdrawn = editor
                .undelegate(&from, &role, &signers, expiry.targets()?)
                .await?;
            eprintln!(
                "{from} version {} no longer delegates to {role}; run publish",
                withdrawn.version
            );
            match withdrawn.still_delegated_by {
                Ok(still) if still.is_empty() => {}
                Ok(still) => eprintln!(
                    "{role} is still delegated by {}: withdraw it there too if its key is \
                     compromised",
                    still.join(", ")
                ),
                Err(e) => eprintln!(
                    "the roles still delegating {role} could not be listed ({e}); check with \
                     `tuf-oci list`"
                ),
            }
        }
        Command::Sign {
            mut images,
            images_from,
            role,
            keys,
            expiry,
        } => {
            expiry.only("sign", &["targets"])?;
            if let Some(file) = images_from {
                let listed = if file.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())
                        .context("reading the images to sign from standard input")?
                } else {
                    std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?
                };
                images.extend(
                    listed
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string),
                );
            }
            let images = images
                .iter()
                .map(|image| ImageRef::parse(image))
                .collect::<Result<Vec<_>, _>>()?;
            let Some(first) = images.first() else {
                bail!("name at least one image to sign");
            };
            let verifier = verifier()?;
            let editor = open_editor(&verifier, &first.repository).await?;
            // One version of one role signs them all: an image whose metadata lives elsewhere
            // would be signed where its clients never look.
            let mut checked = HashSet::from([first.repository.clone()]);
            for image in &images {
                if !checked.insert(image.repository.clone()) {
                    continue;
                }
                let theirs = verifier.metadata_repository(&image.repository).await?;
                let ours = editor.metadata_repository();
                if theirs.path != ours.path || !same_registry(&theirs.registry, &ours.registry) {
                    bail!(
                        "{image}: its metadata repository is {theirs}, not {ours} (that of \
                         {first}); sign it on its own"
                    );
                }
            }
            let signed = editor
                .sign(
                    &images,
                    &role,
                    &keys_dir::load(&keys).await?,
                    expiry.targets()?,
                )
                .await?;
            for (name, target) in &signed {
                eprintln!("{role} signs {name} = {}", target_digest(target));
            }
            eprintln!("{} targets signed; run publish", signed.len());
        }
        Command::Remove {
            image,
            role,
            keys,
            expiry,
        } => {
            expiry.only("remove", &["targets"])?;
            let image = ImageRef::parse(&image)?;
            let name = image
                .target_name()
                .with_context(|| format!("{image}: a target name needs a tag"))?;
            let editor = open_editor(&verifier()?, &image.repository).await?;
            editor
                .remove(
                    &name,
                    &role,
                    &keys_dir::load(&keys).await?,
                    expiry.targets()?,
                )
                .await?;
            eprintln!("{role} no longer signs {name}; run publish");
        }
        Command::Publish { keys, expiry } => {
            expiry.only("publish", &["snapshot", "timestamp"])?;
            let dir = KeysDir::new(keys);
            let metadata = metadata_repo()?;
            let editor = open_editor(&verifier()?, &metadata).await?;
            let version = editor
                .publish(
                    &dir.role("snapshot").await?,
                    &dir.role("timestamp").await?,
                    &expiry.all()?,
                )
                .await?;
            eprintln!("published snapshot version {version}");
        }
        Command::Timestamp { keys, expiry } => {
            // The snapshot too, when the published one would expire before the timestamp.
            expiry.only("timestamp", &["snapshot", "timestamp"])?;
            let dir = KeysDir::new(keys);
            let metadata = metadata_repo()?;
            let editor = open_editor(&verifier()?, &metadata).await?;
            let expiries = expiry.all()?;
            let timestamp_keys = dir.role("timestamp").await?;
            let snapshot_keys = if editor.snapshot_expires_before(expiries.timestamp) {
                Some(dir.role("snapshot").await)
            } else {
                None
            };
            if let Some(Ok(snapshot_keys)) = &snapshot_keys {
                let version = editor
                    .refresh_snapshot(snapshot_keys, &timestamp_keys, &expiries)
                    .await?;
                eprintln!(
                    "snapshot version {version} (the published one would expire before the \
                     timestamp), and a timestamp naming it"
                );
            } else {
                let version = editor
                    .refresh_timestamp(&timestamp_keys, expiries.timestamp)
                    .await?;
                eprintln!("timestamp version {version}");
                // The timestamp is re-signed even so (without it clients stop at once), and the
                // command fails, so that a cron job shows the snapshot is about to expire.
                if let Some(Err(e)) = snapshot_keys {
                    return Err(e.context(
                        "the published snapshot expires before the new timestamp and was not \
                         re-signed",
                    ));
                }
            }
        }
        Command::Rotate {
            role,
            keys,
            count,
            threshold,
            out,
            expiry,
        } => {
            let role_type = top_level_role(&role)?;
            let dir = KeysDir::new(keys);
            let metadata = metadata_repo()?;
            let mut editor = open_editor(&verifier()?, &metadata).await?;
            anyhow::ensure!(
                count >= threshold.get(),
                "--threshold {threshold} needs at least as many keys (--count {count})"
            );
            let old_root_keys = dir.role("root").await?;
            // Top-level targets is re-signed with its current keys too when they are kept, so
            // that a rotation cut short leaves it valid under the current root.
            let current_keys = match role_type {
                RoleType::Targets => dir.role_if_kept("targets").await?,
                _ => Vec::new(),
            };
            let expiries = expiry.all()?;
            let next_root =
                tuf_oci::layout::versioned_file("root", editor.root().signed.version.get() + 1);
            let staged = dir.stage(&role, count).await?;
            let root = match editor
                .rotate(
                    role_type,
                    &old_root_keys,
                    &current_keys,
                    staged.keys(),
                    threshold,
                    &expiries,
                )
                .await
            {
                Ok(root) => root,
                // Root N+1 may be stored even so (a failed read-back, the targets re-signing
                // after it): then the new keys may be the only ones it trusts. When it cannot
                // be told, they are kept too.
                Err(e) if editor.has_file(&next_root).await.unwrap_or(true) => {
                    let kept = staged.keep();
                    return Err(anyhow::Error::new(e).context(format!(
                        "rotating {role}: {next_root} is stored, and the new keys it may trust \
                         are kept in {}",
                        kept.display()
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            staged.commit()?;
            let published = editor
                .publish(
                    &dir.role("snapshot").await?,
                    &dir.role("timestamp").await?,
                    &expiries,
                )
                .await;
            if let Some(out) = out {
                // The trusted root itself is replaced only once the rotation is published:
                // trusting the new root alone, the next publish could not read the state
                // published under the old keys, and so could not finish it.
                if published.is_err() && same_file(&out, &root_path) {
                    eprintln!(
                        "{} not replaced: it stays the root before {next_root}, so that a \
                         publish can finish the rotation; write {next_root} there once published",
                        out.display()
                    );
                } else {
                    write_root(&out, &root).context(
                        "the new root is stored and its keys are in place: run publish (clients \
                         follow the chain from the root they hold)",
                    )?;
                }
            }
            let version = published.context(format!(
                "{next_root} is stored and its keys are in place: run publish to finish the \
                 rotation"
            ))?;
            eprintln!(
                "root version {} holds the new {role} keys; published snapshot version {version}",
                editor.root().signed.version
            );
        }
        Command::Pointer {
            action: PointerAction::Set { repository, to },
        } => {
            let target =
                editor::set_pointer(registry()?, &Repository::parse(&repository)?, &to).await?;
            eprintln!("{repository} -> {target}");
        }
        Command::Pointer {
            action: PointerAction::Show { repository },
        } => {
            let repository = Repository::parse(&repository)?;
            println!(
                "{}",
                tuf_oci::source::metadata_repository(registry()?, &repository).await?
            );
        }
        Command::Verify { image, deep } => {
            let (shown, verified) = if image.starts_with("oci:")
                || image.starts_with("oci-archive:")
            {
                let staging = tempfile::tempdir()
                    .context("creating a temporary directory to unpack the archive")?;
                let (store, path, reference) = copy_cmd::open_layout(&image, staging.path())?;
                let trust = trust()?;
                let verified = verify_in_store(store, &path, &reference, &trust, deep).await?;
                (image.clone(), verified)
            } else {
                let image = ImageRef::parse(&image)?;
                let verifier = verifier()?;
                let verified = verifier.verify(&image).await?;
                if deep {
                    let store = RegistryStore::new(registry()?.clone(), &image.repository.registry);
                    let path = &image.repository.path;
                    let stored = store
                        .manifest(path, &verified.digest(), verified.target().length)
                        .await?
                        .context("the signed manifest vanished")?;
                    check_graph(&store, path, &stored).await?;
                }
                (image.to_string(), verified)
            };
            println!("{}", serde_json::to_string_pretty(verified.descriptor())?);
            eprintln!(
                "verified {shown}: {} signed by {}",
                verified.name(),
                verified.role()
            );
        }
        Command::Pull {
            image,
            address,
            namespace,
            snapshotter,
            no_unpack,
            lock_wait,
        } => {
            let image = ImageRef::parse(&image)?;
            let options = PullOptions {
                address,
                namespace,
                snapshotter: (!no_unpack).then_some(snapshotter),
                lock_wait: Duration::from_secs(lock_wait),
            };
            let progress = |line: &str| eprintln!("{line}");
            let interrupted = async {
                // When no handler can be installed, Ctrl-C ends the process as it always does.
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let pulled = pull(&verifier()?, &image, &options, &progress, interrupted)
                .await
                .with_context(|| format!("pulling {image}"))?;
            println!("{} {}", pulled.name, pulled.digest);
        }
        Command::Copy {
            source,
            destination,
            all_tags,
            keep_metadata_remote,
            dry_run,
        } => {
            let from = copy_cmd::Endpoint::parse(&source)?;
            let to = copy_cmd::Endpoint::parse(&destination)?;
            // Said rather than silently ignored (the variables may be set for signing).
            if cli.metadata_repo.is_some() {
                eprintln!(
                    "--metadata-repo is not used by copy: it copies the metadata the source's \
                     {} tag leads to",
                    tuf_oci::layout::METADATA_TAG
                );
            }
            let metadata = if keep_metadata_remote {
                tuf_oci::copy::MetadataMode::KeepRemote
            } else {
                tuf_oci::copy::MetadataMode::Copy
            };
            // The source is verified against the trusted root when there is one: a forged
            // timestamp copied unverified would hold every later copy back as older.
            let root = match std::fs::read(&root_path) {
                // Nothing of the metadata repository is copied then.
                _ if keep_metadata_remote => None,
                Ok(root) => {
                    eprintln!("verifying the source against {}", root_path.display());
                    Some(root)
                }
                // Only the default may be missing: a root named is one meant to be used.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && cli.root.is_none() => {
                    eprintln!(
                        "no trusted root at {}: the source's metadata is copied unverified",
                        root_path.display()
                    );
                    None
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading trusted root {}", root_path.display()));
                }
            };
            let options = tuf_oci::copy::CopyOptions {
                tags: copy_cmd::tags(&from, &to, all_tags)?,
                metadata,
                dry_run,
                root,
                signed_as: signed_as.clone(),
            };
            let copied = copy_cmd::run(registry()?, &from, &to, &options).await;
            let (report, from_path, to_path) = copied.map_err(|e| {
                let unsigned = matches!(
                    e.downcast_ref::<tuf_oci::Error>(),
                    Some(tuf_oci::Error::TargetNotSigned { .. })
                );
                if unsigned {
                    e.context(
                        "the source's tags are checked under the names they are signed with: a \
                         copy made under another name is copied with --signed-as LOCAL=SIGNED",
                    )
                } else {
                    e
                }
            })?;
            eprintln!(
                "{} {} objects ({} bytes), {} mounted, {} already present",
                if dry_run { "would copy" } else { "copied" },
                report.written.len(),
                report.bytes,
                report.mounted,
                report.skipped
            );
            if let Some(metadata) = &report.metadata_repository {
                eprintln!("metadata repository at the destination: {metadata}");
            }
            let signed = tuf_oci::location::signed_path(&signed_as, &from_path);
            if signed != to_path {
                eprintln!(
                    "targets stay named {signed}:<tag>; verify the copy with --signed-as {to_path}={signed}"
                );
            }
        }
        Command::List { repository } => {
            let repository = match repository {
                Some(r) => Repository::parse(&r)?,
                None => metadata_repo()?,
            };
            let mut updater = verifier()?
                .updater(&repository, tuf_oci::Expiration::Enforce)
                .await?;
            for (role, metadata) in updater.all_roles().await? {
                let mut names: Vec<_> = metadata.target_names().collect();
                names.sort_unstable();
                for name in names {
                    // Listed where a pull finds it: a name outside the paths delegated to
                    // the role, or one a role searched before it signs, is not what a pull
                    // of that name gets.
                    match updater.find(name, None).await {
                        Ok(found) if found.role() == role => {
                            println!("{name}\t{}\t{role}", found.digest());
                        }
                        Ok(found) => eprintln!(
                            "{name} in {role} not listed: a pull gets {}'s",
                            found.role()
                        ),
                        Err(e) => eprintln!("{name} in {role} not listed: {e}"),
                    }
                }
            }
        }
    }
    Ok(())
}

/// Where trusted metadata is kept when no `--cache-dir` is given: without it, each run would
/// start again from the bootstrap root, and accept any older state a registry served.
/// A user without a usable home (a service account, a read-only root) keeps it in memory
/// for the run, with a warning.
fn default_cache_dir() -> Option<PathBuf> {
    // XDG: a relative path is to be ignored.
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    let dir = base.join("tuf-oci");
    let made =
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&dir);
    match made {
        Ok(()) => Some(dir),
        Err(e) => {
            eprintln!(
                "tuf-oci: {}: {e}; trusted metadata is kept for this run only (--cache-dir sets \
                 where)",
                dir.display()
            );
            None
        }
    }
}

/// The role whose delegations `delegate` and `undelegate` change, and the keys it signs with.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("signer").required(true).args(["signing_keys", "keys_dir"])))]
struct Delegator {
    /// The delegating role (default: top-level targets).
    #[arg(long, default_value = "targets")]
    from: String,
    /// Private keys (STEM or STEM.key) of the delegating role, repeatable.
    #[arg(long = "signing-key")]
    signing_keys: Vec<PathBuf>,
    /// Top-level keys directory, whose targets keys sign (for --from targets).
    #[arg(long)]
    keys_dir: Option<PathBuf>,
}

impl Delegator {
    /// Its keys: top-level targets' from the keys directory, a delegated role's given one by
    /// one.
    async fn keys(&self) -> anyhow::Result<Vec<tuf_oci::keys::SigningKey>> {
        match &self.keys_dir {
            Some(dir) if self.from == "targets" => KeysDir::new(dir.clone()).role("targets").await,
            Some(_) => bail!("--keys-dir signs top-level targets only; use --signing-key"),
            None => keys_dir::load(&self.signing_keys).await,
        }
    }
}

/// [`Editor::open`], saying so when the published state is read across a key rotation cut
/// short.
async fn open_editor(verifier: &Verifier, repository: &Repository) -> anyhow::Result<Editor> {
    let editor = Editor::open(verifier, repository).await?;
    if editor.finishes_a_rotation() {
        eprintln!(
            "the published metadata is signed with keys root version {} no longer trusts (a key \
             rotation cut short): read under the root before it; publish to finish the rotation",
            editor.root().signed.version
        );
    }
    Ok(editor)
}

/// Refuses an `init` whose `out` holds another repository's trusted root (one whose root
/// keys are not those of `top`, the keys held, if any): replaced, the clients of that
/// repository would lose theirs. A root of these keys is this repository's, an init cut short
/// being run again.
fn check_root_out(out: &std::path::Path, top: Option<&editor::TopLevelKeys>) -> anyhow::Result<()> {
    let held = match std::fs::read(out) {
        Ok(held) => held,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", out.display())),
    };
    // A root's own parse: one that does not read as a root is no root of these keys either.
    let root = tuf_oci::updater::trusted_root(&held).ok();
    let trusted = root
        .as_ref()
        .and_then(|root| root.signed.roles.get(&RoleType::Root));
    let keys = top.map(|top| top.root.0.as_slice()).unwrap_or_default();
    let ours = |key: &tuf_oci::keys::SigningKey| {
        let id = key.public().key_id().ok();
        trusted.is_some_and(|trusted| id.is_some_and(|id| trusted.keyids.contains(&id)))
    };
    if keys.is_empty() || !keys.iter().all(ours) {
        bail!(
            "{} holds another trusted root (its root keys are not those in --keys): not \
             replaced; name another file with --out",
            out.display()
        );
    }
    Ok(())
}

/// Writes a trusted root for clients to `out`, whole or not at all: a root cut short would
/// be taken for a broken bootstrap, and the one it replaced lost.
fn write_root(out: &std::path::Path, root: &[u8]) -> anyhow::Result<()> {
    // Public, as the file it replaces was.
    tuf_oci::atomic::replace(out, 0o644, |file| std::io::Write::write_all(file, root))
        .with_context(|| format!("writing {}", out.display()))
}

/// Whether `a` and `b` name one file (both spelt alike, or both existing and the same).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    a == b
        || std::fs::canonicalize(a)
            .ok()
            .is_some_and(|a| std::fs::canonicalize(b).is_ok_and(|b| a == b))
}

fn top_level_role(name: &str) -> anyhow::Result<RoleType> {
    Ok(match name {
        "root" => RoleType::Root,
        "targets" => RoleType::Targets,
        "snapshot" => RoleType::Snapshot,
        "timestamp" => RoleType::Timestamp,
        other => {
            bail!("{other} is not a top-level role; re-delegate a delegated role with new keys")
        }
    })
}
