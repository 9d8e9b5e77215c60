//! The `tuf-oci` command end to end: key rotation (root included), timestamp refresh,
//! revocation, listing, and clear errors for bad input.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use std::num::NonZeroU64;

use tough::schema::{Root, Signed, Targets};
use tuf_oci::keys::SigningKey;
use tuf_oci_tests::hostile::{HostileRegistry, Rule};
use tuf_oci_tests::{TestRegistry, cli_binary, craft};

struct Cli<'a> {
    registry: &'a TestRegistry,
    dir: &'a Path,
}

impl<'a> Cli<'a> {
    fn new(registry: &'a TestRegistry, dir: &'a Path) -> Self {
        Cli { registry, dir }
    }

    /// The single repository the tests sign in: its own metadata repository.
    fn solo(&self) -> String {
        format!("{}/solo/app", self.registry.host)
    }

    /// The keys directory.
    fn keys(&self) -> String {
        self.dir.join("keys").to_str().unwrap().to_string()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(cli_binary())
            .arg("--insecure-registry")
            .arg(&self.registry.host)
            .arg("--root")
            .arg(self.dir.join("root.json"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args)
            .output()
            .expect("run tuf-oci")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tuf-oci {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "tuf-oci {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }
}

/// `args` run against the metadata repository `metadata`.
fn at<'a>(metadata: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    [&["--metadata-repo", metadata], args].concat()
}

/// `rotate --out` naming the trusted root replaces it only once the rotation is published:
/// replaced before a publish that fails (another writer's claim on the timestamp), the root
/// trusted would be the new one alone, under which the next publish could not read what the
/// old keys published, and could not finish the rotation.
#[tokio::test]
async fn a_rotation_whose_publish_fails_keeps_the_trusted_root_for_the_next() {
    let (registry, dir) = (TestRegistry::start(), tempfile::tempdir().unwrap());
    let cli = Cli::new(&registry, dir.path());
    let (metadata, keys) = (cli.solo(), cli.keys());
    let keys = keys.as_str();
    let root = dir.path().join("root.json");
    let root = root.to_str().unwrap();
    registry.push_image("solo/app", "v1", "cli").await;
    cli.ok(&at(&metadata, &["init", "--keys", keys, "--out", root]));
    let targets_key = format!("{keys}/targets");
    cli.ok(&at(
        &metadata,
        &[
            "sign",
            &format!("{metadata}:v1"),
            "--role",
            "targets",
            "--key",
            &targets_key,
        ],
    ));
    cli.ok(&at(&metadata, &["publish", "--keys", keys]));
    let trusted = std::fs::read(root).unwrap();

    let timestamp = registry
        .get_file(&registry.repo("solo/app"), "timestamp.json")
        .await;
    let next = craft::parse::<tough::schema::Timestamp>(&timestamp)
        .signed
        .version
        .get()
        + 1;
    let file = format!("{next}.timestamp.json");
    let rival = tuf_oci::claim::Claim::new(&file).unwrap();
    registry
        .stake(&registry.repo("solo/app"), &rival, &file)
        .await;
    let refused = cli.fails(&at(
        &metadata,
        &["rotate", "timestamp", "--keys", keys, "--out", root],
    ));
    assert!(
        refused.contains("not replaced") && refused.contains("run publish"),
        "{refused}"
    );
    assert_eq!(std::fs::read(root).unwrap(), trusted);

    rival
        .withdraw(
            &registry.client,
            &registry.repo("solo/app"),
            tuf_oci::claim::Withdrawal::NothingWritten,
        )
        .await
        .unwrap();
    cli.ok(&at(&metadata, &["publish", "--keys", keys]));
    cli.ok(&["verify", &format!("{metadata}:v1")]);
}

#[tokio::test]
async fn rotate_refresh_revoke_and_list() {
    let (registry, dir) = (TestRegistry::start(), tempfile::tempdir().unwrap());
    let cli = Cli::new(&registry, dir.path());
    let (metadata, keys) = (cli.solo(), cli.keys());
    let keys = keys.as_str();
    let image = format!("{metadata}:v1");
    let pushed = registry.push_image("solo/app", "v1", "cli").await;

    cli.ok(&[
        "--metadata-repo",
        &metadata,
        "init",
        "--keys",
        keys,
        "--out",
        dir.path().join("root.json").to_str().unwrap(),
    ]);
    // One image named, one listed in a file: both in one version of the role.
    let second = registry.push_image("solo/app", "v2", "cli two").await;
    let listed = dir.path().join("images.txt");
    std::fs::write(&listed, format!("\n{metadata}:v2\n")).unwrap();
    cli.ok(&[
        "sign",
        &image,
        "--images-from",
        listed.to_str().unwrap(),
        "--role",
        "targets",
        "--key",
        &format!("{keys}/targets"),
    ]);
    // An image whose metadata lives elsewhere is not signed with them.
    registry.push_image("other/app", "v1", "elsewhere").await;
    let other = format!("{}/other/app", registry.host);
    cli.ok(&["pointer", "set", &other, "--to", "/other/tuf"]);
    let refused = cli.fails(&[
        "sign",
        &image,
        &format!("{other}:v1"),
        "--role",
        "targets",
        "--key",
        &format!("{keys}/targets"),
    ]);
    assert!(
        refused.contains(&format!("{other}:v1: its metadata repository is"))
            && refused.contains("other/tuf"),
        "{refused}"
    );
    cli.ok(&["--metadata-repo", &metadata, "publish", "--keys", keys]);
    let descriptor: serde_json::Value = serde_json::from_str(&cli.ok(&["verify", &image])).unwrap();
    assert_eq!(descriptor["digest"], pushed.digest.as_str());
    assert_eq!(cli.ok(&["pointer", "show", &metadata]).trim(), metadata);

    // A rotation that fails (one new key, threshold two) leaves the keys as they were.
    let key_files = || {
        let mut names: Vec<_> = std::fs::read_dir(keys)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = key_files();
    let refused = cli.fails(&[
        "--metadata-repo",
        &metadata,
        "rotate",
        "root",
        "--keys",
        keys,
        "--threshold",
        "2",
    ]);
    assert!(refused.contains("threshold"), "{refused}");
    assert_eq!(key_files(), before);
    cli.ok(&["--metadata-repo", &metadata, "publish", "--keys", keys]);

    // Rotations write root N+1; the client still holds root version 1 and follows the chain.
    cli.ok(&[
        "--metadata-repo",
        &metadata,
        "rotate",
        "root",
        "--keys",
        keys,
    ]);
    // Keys retired in the same second as this rotation's (here, as if by rotations just
    // before it) are not replaced by its own.
    let retired = Path::new(keys).join("retired");
    let now = jiff::Timestamp::now().as_second();
    let earlier: Vec<_> = (now..now + 30)
        .map(|second| retired.join(format!("snapshot.{second}.key")))
        .collect();
    for file in &earlier {
        std::fs::write(file, b"retired before").unwrap();
    }
    cli.ok(&[
        "--metadata-repo",
        &metadata,
        "rotate",
        "snapshot",
        "--keys",
        keys,
    ]);
    for file in &earlier {
        assert_eq!(std::fs::read(file).unwrap(), b"retired before", "{file:?}");
    }
    cli.ok(&[
        "--metadata-repo",
        &metadata,
        "rotate",
        "targets",
        "--keys",
        keys,
    ]);
    cli.ok(&["--metadata-repo", &metadata, "timestamp", "--keys", keys]);
    assert!(Path::new(keys).join("retired").read_dir().unwrap().count() >= 6);
    let fresh_cache = tempfile::tempdir().unwrap();
    let out = Command::new(cli_binary())
        .args(["--insecure-registry", &registry.host, "--cache-dir"])
        .arg(fresh_cache.path())
        .arg("--root")
        .arg(dir.path().join("root.json"))
        .args(["verify", &image])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cli.ok(&["verify", &image]);
    let listing = cli.ok(&["--metadata-repo", &metadata, "list"]);
    assert_eq!(
        listing.trim(),
        format!(
            "solo/app:v1\t{}\ttargets\nsolo/app:v2\t{}\ttargets",
            pushed.digest, second.digest
        )
    );

    cli.ok(&[
        "remove",
        &image,
        "--role",
        "targets",
        "--key",
        &format!("{keys}/targets"),
    ]);
    cli.ok(&["--metadata-repo", &metadata, "publish", "--keys", keys]);
    let err = cli.fails(&["verify", &image]);
    assert!(
        err.contains("no trusted role signs target solo/app:v1"),
        "{err}"
    );
}

/// A withdrawn delegation: once published, what the role signed is no longer found, by a
/// client that trusted it before as by a new one; the snapshot still names the role's last
/// version (TUF 5.5.5), and the key no other delegation uses goes from top-level targets.
#[tokio::test]
async fn a_withdrawn_delegation_signs_nothing_once_published() {
    let (registry, dir) = (TestRegistry::start(), tempfile::tempdir().unwrap());
    let cli = Cli::new(&registry, dir.path());
    let (metadata, keys) = (cli.solo(), cli.keys());
    let image = format!("{metadata}:v1");
    registry.push_image("solo/app", "v1", "team").await;
    let root = dir.path().join("root.json");
    cli.ok(&at(
        &metadata,
        &["init", "--keys", &keys, "--out", root.to_str().unwrap()],
    ));
    let team = dir.path().join("team");
    cli.ok(&["keygen", team.to_str().unwrap()]);
    let team = team.to_str().unwrap();
    cli.ok(&at(
        &metadata,
        &[
            "delegate",
            "team",
            "--paths",
            "solo/*",
            "--key",
            team,
            "--keys-dir",
            &keys,
        ],
    ));
    cli.ok(&["sign", &image, "--role", "team", "--key", team]);
    cli.ok(&at(&metadata, &["publish", "--keys", &keys]));
    cli.ok(&["verify", &image]);

    cli.ok(&at(&metadata, &["undelegate", "team", "--keys-dir", &keys]));
    cli.ok(&at(&metadata, &["publish", "--keys", &keys]));
    let fresh = tempfile::tempdir().unwrap();
    for cache in [dir.path().join("cache"), fresh.path().to_path_buf()] {
        let out = Command::new(cli_binary())
            .args(["--insecure-registry", &registry.host, "--root"])
            .arg(&root)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["verify", &image])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no trusted role signs target solo/app:v1"),
            "{cache:?}: {err}"
        );
    }
    let repository = registry.repo("solo/app");
    let snapshot: Signed<tough::schema::Snapshot> =
        serde_json::from_slice(&registry.get_file(&repository, "snapshot.json").await).unwrap();
    assert!(snapshot.signed.meta.contains_key("team.json"));
    let targets: Signed<Targets> =
        serde_json::from_slice(&registry.get_file(&repository, "targets.json").await).unwrap();
    let delegations = targets.signed.delegations.unwrap();
    assert!(delegations.roles.is_empty() && delegations.keys.is_empty());

    let err = cli.fails(&["sign", &image, "--role", "team", "--key", team]);
    assert!(err.contains("no role delegates team"), "{err}");
    let err = cli.fails(&at(&metadata, &["undelegate", "team", "--keys-dir", &keys]));
    assert!(
        err.contains("delegated role team: not delegated by targets"),
        "{err}"
    );

    // A compromised key's role is replaced by one of a new name, with a new key, signing
    // again what it should. Its old name, delegated to the new key, is refused: that key
    // cannot read the versions the old one signed, which would stop every writer and client.
    let renewed = dir.path().join("renewed");
    cli.ok(&["keygen", renewed.to_str().unwrap()]);
    let renewed = renewed.to_str().unwrap();
    let delegate = |role| {
        at(
            &metadata,
            &[
                "delegate",
                role,
                "--paths",
                "solo/*",
                "--key",
                renewed,
                "--keys-dir",
                &keys,
            ],
        )
    };
    let err = cli.fails(&delegate("team"));
    assert!(
        err.contains(
            "delegated role team: its newest version stored cannot be read with these keys"
        ) && err.contains("role of another name"),
        "{err}"
    );
    cli.ok(&delegate("team-2"));
    cli.ok(&["sign", &image, "--role", "team-2", "--key", renewed]);
    cli.ok(&at(&metadata, &["publish", "--keys", &keys]));
    cli.ok(&["verify", &image]);
    let listing = cli.ok(&at(&metadata, &["list"]));
    assert!(listing.trim().ends_with("\tteam-2"), "{listing}");
}

#[tokio::test]
async fn bad_input_names_what_failed() {
    let (registry, dir) = (TestRegistry::start(), tempfile::tempdir().unwrap());
    let cli = Cli::new(&registry, dir.path());
    let err = cli.fails(&["verify", "not a reference"]);
    assert!(
        err.contains("invalid reference \"not a reference\""),
        "{err}"
    );
    let err = cli.fails(&["verify", &format!("{}/a/b:v1", registry.host)]);
    assert!(err.contains("reading trusted root"), "{err}");
    std::fs::write(dir.path().join("root.json"), b"{}").unwrap();
    let err = cli.fails(&["verify", &format!("{}/a/b:v1", registry.host)]);
    assert!(err.contains("root metadata cannot be parsed"), "{err}");
    let err = cli.fails(&["--metadata-repo", "no-host", "list"]);
    assert!(err.contains("invalid reference \"no-host\""), "{err}");
    let err = cli.fails(&["publish", "--keys", "/nonexistent"]);
    assert!(err.contains("--metadata-repo"), "{err}");
    // An expiry for metadata the command does not write would not take.
    let err = cli.fails(&[
        "publish",
        "--keys",
        "/nonexistent",
        "--targets-expires",
        "30d",
    ]);
    assert!(
        err.contains("--targets-expires: publish writes no targets metadata"),
        "{err}"
    );
    // A deadline that would overflow the clock arithmetic under every request.
    let out = cli.run(&["--timeout", "18446744073709551615", "verify", "x/a/b:v1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--timeout"), "{err}");
    // A clock skew so wide that expiry would stop counting.
    let out = cli.run(&["--clock-skew", "86401", "verify", "x/a/b:v1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--clock-skew"), "{err}");
    // A lock wait the pull's lease (an hour) would not outlast.
    let out = cli.run(&["pull", "x/a/b:v1", "--lock-wait", "1801"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--lock-wait"), "{err}");
    // A delegation signed by nobody, or by two sets of keys at once.
    let delegate = [
        "delegate",
        "team-a",
        "--paths",
        "team-a/*",
        "--key",
        "team-a.pub",
    ];
    for signers in [&[][..], &["--keys-dir", "keys", "--signing-key", "parent"]] {
        let out = cli.run(&[&delegate[..], signers].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("--signing-key") && err.contains("--keys-dir"),
            "{err}"
        );
    }
    let err = cli.fails(&[&delegate[..], &["--signing-key", "parent"]].concat());
    assert!(
        err.contains("team-a.pub: not found, nor a private key"),
        "{err}"
    );
}

#[tokio::test]
async fn trusted_metadata_is_kept_between_runs_by_default() {
    // Without a cache each run would start from the bootstrap root again, and take whatever
    // older state a registry served it.
    let registry = TestRegistry::start();
    let (org, _) = tuf_oci_tests::solo(&registry, true).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.json"), &org.root).unwrap();
    let verify = |env: &[(&str, &Path)]| {
        let mut command = Command::new(cli_binary());
        command
            .env_remove("TUF_OCI_CACHE_DIR")
            .env_remove("XDG_CACHE_HOME");
        for (key, value) in env {
            command.env(key, value);
        }
        command
            .args(["--insecure-registry", &registry.host, "--root"])
            .arg(dir.path().join("root.json"))
            .args(["verify", &format!("{}/solo/app:v1", registry.host)])
            .output()
            .unwrap()
    };
    let out = verify(&[("XDG_CACHE_HOME", &dir.path().join("cache"))]);
    assert!(out.status.success(), "{out:?}");
    let kept = tuf_oci::verify::trust_dir(&dir.path().join("cache/tuf-oci"), &org.root).unwrap();
    assert!(kept.join("timestamp.json").exists(), "{kept:?}");

    // A home where nothing can be kept (here a file) verifies all the same, saying so; a
    // relative XDG_CACHE_HOME is ignored, as XDG says.
    let home = dir.path().join("not-a-directory");
    std::fs::write(&home, b"").unwrap();
    let out = verify(&[("HOME", &home), ("XDG_CACHE_HOME", Path::new("relative"))]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("kept for this run only"), "{said}");
    assert!(!Path::new("relative").exists());
}

#[tokio::test]
async fn init_makes_as_many_root_keys_as_its_threshold_needs() {
    let (registry, dir) = (TestRegistry::start(), tempfile::tempdir().unwrap());
    let cli = Cli::new(&registry, dir.path());
    let keys = dir.path().join("keys");
    cli.ok(&[
        "--metadata-repo",
        &format!("{}/org/tuf", registry.host),
        "init",
        "--keys",
        keys.to_str().unwrap(),
        "--root-threshold",
        "2",
        "--out",
        dir.path().join("root.json").to_str().unwrap(),
    ]);
    assert!(keys.join("root.key").exists() && keys.join("root-2.key").exists());
    assert!(!keys.join("targets-2.key").exists());
    let root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("root.json")).unwrap()).unwrap();
    let role = &root["signed"]["roles"]["root"];
    assert_eq!(role["threshold"], 2);
    assert_eq!(role["keyids"].as_array().unwrap().len(), 2);
    assert_eq!(root["signatures"].as_array().unwrap().len(), 2);
}

// Threads for the proxy while the test waits on the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_stopped_part_way_is_taken_up_by_the_same_keys() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    let init_to = |host: &str, path: &str, keys: &str, out: &Path| {
        Command::new(cli_binary())
            .args(["--insecure-registry", host, "--metadata-repo"])
            .arg(format!("{host}/{path}"))
            .args(["init", "--keys"])
            .arg(dir.path().join(keys))
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let init_in = |host: &str, path: &str, keys: &str| init_to(host, path, keys, &root);
    let init = |host: &str, keys: &str| init_in(host, "solo/tuf", keys);
    // The registry fails the snapshot's write (the first try and the client's two more):
    // init stops with its root and targets stored, and these can never be stored again.
    let fail = Rule::Fail {
        path_suffix: "/manifests/1.snapshot.json".into(),
        method: "PUT",
        times: Arc::new(AtomicUsize::new(3)),
    };
    let proxy = HostileRegistry::start(&registry.host, vec![fail]).await;
    let stopped = init(&proxy.host, "keys");
    let err = String::from_utf8_lossy(&stopped.stderr);
    assert!(!stopped.status.success(), "{err}");
    assert!(err.contains("1.snapshot.json"), "{err}");
    // The root was written as soon as it was stored.
    let repository = registry.repo("solo/tuf");
    let stored_root = registry.get_file(&repository, "1.root.json").await;
    assert_eq!(std::fs::read(&root).unwrap(), stored_root);
    let refused_in = |path: &str, keys: &str, reason: &str| {
        let out = init_in(&registry.host, path, keys);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(reason), "{err}");
        assert_eq!(std::fs::read(&root).unwrap(), stored_root);
    };
    let refused = |keys: &str, reason: &str| refused_in("solo/tuf", keys, reason);

    // Other keys leave the unfinished repository as it is, and say why (their root written
    // elsewhere: where the first root is, they would not write theirs).
    let elsewhere = dir.path().join("other-root.json");
    let out = init_to(&registry.host, "solo/tuf", "other-keys", &elsewhere);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "unfinished repository (1.root.json) with other keys or thresholds than these \
             (root, targets, snapshot, timestamp)"
        ),
        "{err}"
    );
    assert_eq!(
        registry.get_file(&repository, "1.root.json").await,
        stored_root
    );
    // The same keys take up only what they signed, as init stores it.
    // A root listing the keys with signatures not over it (an attacker's, stored first).
    let mut forged: Signed<Root> = craft::parse(&stored_root);
    forged.signed.expires = jiff::Timestamp::now() + std::time::Duration::from_secs(3600);
    registry
        .put_file(&repository, "1.root.json", &craft::bytes(&forged))
        .await;
    refused("keys", "(1.root.json) that is unusable");
    registry
        .put_file(&repository, "1.root.json", &stored_root)
        .await;
    let stored_targets = registry.get_file(&repository, "1.targets.json").await;
    let mut later: Signed<Targets> = craft::parse(&stored_targets);
    later.signed.version = NonZeroU64::new(2).unwrap();
    let targets_key = SigningKey::load(&dir.path().join("keys/targets"))
        .await
        .unwrap();
    let later = craft::sign_top(
        later.signed,
        &craft::parse::<Root>(&stored_root).signed,
        &[targets_key],
    )
    .await;
    registry
        .put_file(&repository, "1.targets.json", &craft::bytes(&later))
        .await;
    refused("keys", "(1.targets.json) that is version 2");
    registry
        .put_file(&repository, "1.targets.json", &stored_targets)
        .await;
    // A role version init never stores: that repository was published (its timestamp tag
    // gone since, say).
    registry
        .put_file(
            &registry.repo("published/tuf"),
            "2.targets.json",
            &stored_targets,
        )
        .await;
    refused_in(
        "published/tuf",
        "keys",
        "already holds a TUF repository (2.targets.json)",
    );

    // The same keys take it up: clients get the root stored first, and the repository
    // verifies from it.
    let taken_up = init(&registry.host, "keys");
    assert!(
        taken_up.status.success(),
        "{}",
        String::from_utf8_lossy(&taken_up.stderr)
    );
    assert_eq!(std::fs::read(&root).unwrap(), stored_root);
    let cli = Cli::new(&registry, dir.path());
    cli.ok(&[
        "--metadata-repo",
        &format!("{}/solo/tuf", registry.host),
        "list",
    ]);
    // Another repository's init, with other keys, does not replace this one's root where
    // clients of it read it.
    refused_in("other/tuf", "other-keys", "holds another trusted root");
    let stored = registry
        .client
        .tags(&registry.repo("other/tuf"))
        .await
        .unwrap();
    assert!(stored.is_empty(), "refused, it stored {stored:?}");
    // Once published, the repository is never initialised again.
    let again = init(&registry.host, "keys");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds a TUF repository"), "{err}");
}

#[tokio::test]
async fn the_timestamp_cron_keeps_a_quiet_repository_from_expiring() {
    // Nothing changes for a week: the cron that re-signs the timestamp must also re-sign the
    // snapshot before it expires, or every client refuses the repository.
    let (registry, dir) = (TestRegistry::start(), tempfile::tempdir().unwrap());
    let cli = Cli::new(&registry, dir.path());
    let (metadata, keys) = (cli.solo(), cli.keys());
    let keys = keys.as_str();
    let image = format!("{metadata}:v1");
    registry.push_image("solo/app", "v1", "quiet").await;
    let root = dir.path().join("root.json");
    cli.ok(&[
        "--metadata-repo",
        &metadata,
        "init",
        "--keys",
        keys,
        "--out",
        root.to_str().unwrap(),
    ]);
    cli.ok(&[
        "sign",
        &image,
        "--role",
        "targets",
        "--key",
        &format!("{keys}/targets"),
    ]);
    let publish = ["--metadata-repo", &metadata, "publish", "--keys", keys];
    cli.ok(&[&publish[..], &["--snapshot-expires", "1h"]].concat());
    let timestamp = ["--metadata-repo", &metadata, "timestamp", "--keys", keys];
    let said = |out: Output| {
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    // Without the snapshot key at hand, the timestamp is still re-signed, and the command
    // fails, naming what was not done.
    let snapshot_key = Path::new(keys).join("snapshot.key");
    let aside = dir.path().join("snapshot.key");
    std::fs::rename(&snapshot_key, &aside).unwrap();
    let alone = cli.fails(&timestamp);
    assert!(alone.contains("timestamp version"), "{alone}");
    assert!(alone.contains("was not re-signed"), "{alone}");
    std::fs::rename(&aside, &snapshot_key).unwrap();
    // The snapshot expires within the new timestamp's day: both are re-signed.
    let first = said(cli.run(&timestamp));
    assert!(first.contains("snapshot version"), "{first}");
    cli.ok(&["verify", &image]);
    // Now it lasts a week: the timestamp alone.
    let second = said(cli.run(&timestamp));
    assert!(second.starts_with("timestamp version"), "{second}");
    cli.ok(&["verify", &image]);
}
