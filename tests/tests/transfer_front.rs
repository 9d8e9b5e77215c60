//! containerd-tuf-transfer in front of real containerd 1.6 and 2.3.4: every call is forwarded,
//! pulls (client-side on 1.6, Transfer service on 2.x) land only when TUF verifies them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_tuf_transfer::{server, upstream::Upstream};
use containerd_tuf_verifier::engine::Engine;
use containerd_tuf_verifier::policy::Policy;
use tokio::sync::oneshot;
use tuf_oci::layout::Entry;
use tuf_oci_tests::containerd::{Containerd, Version};
use tuf_oci_tests::relay::Relay;
use tuf_oci_tests::{Org, TeamA, TestRegistry, write_policy};

struct Setup {
    registry: TestRegistry,
    org: Org,
    dir: tempfile::TempDir,
    policy: PathBuf,
    signed: Entry,
}

async fn setup() -> Setup {
    let registry = TestRegistry::start();
    let TeamA { org, signed, .. } = TeamA::create(&registry).await;
    registry.push_image("public/app", "v1", "public").await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &registry, &org, &["team-a/"], &["public/"], "");
    Setup {
        registry,
        org,
        dir,
        policy,
        signed,
    }
}

struct Front {
    socket: PathBuf,
    /// Where the front stages imports.
    staging: PathBuf,
    stop: Option<oneshot::Sender<()>>,
}

impl Front {
    /// Waits (a few seconds at most) for the front to have removed every archive it staged.
    async fn assert_nothing_staged(&self) {
        let staged = || std::fs::read_dir(&self.staging).unwrap().count();
        for _ in 0..500 {
            if staged() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "{} still holds {} staged imports",
            self.staging.display(),
            staged()
        );
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn start_front(dir: &Path, policy: &Path, containerd: &Containerd) -> Front {
    start_front_to(dir, policy, &containerd.socket)
}

/// [`start_front`] in front of whatever serves `upstream`.
fn start_front_to(dir: &Path, policy: &Path, upstream: &Path) -> Front {
    let port = tuf_oci_tests::free_port();
    let socket = dir.join(format!("front-{port}.sock"));
    let staging = dir.join(format!("staging-{port}"));
    std::fs::create_dir(&staging).unwrap();
    let engine = Arc::new(Engine::new(Policy::load(policy).unwrap()).unwrap());
    let listener = containerd_tuf_verifier::server::bind(&socket).unwrap();
    let (stop, stopped) = oneshot::channel();
    let upstream = Upstream::new(upstream.to_path_buf());
    tokio::spawn({
        let staging = staging.clone();
        async move {
            server::serve(listener, upstream, engine, staging, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        }
    });
    Front {
        socket,
        staging,
        stop: Some(stop),
    }
}

/// `ctr` through the front, off the async runtime's threads.
async fn ctr(containerd: &Containerd, front: &Front, args: &[&str]) -> Result<String, String> {
    let out = containerd.spawn_ctr_at(&front.socket, args).await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }
}

/// A gzip copy of the archive at `path` (`path.gz`).
fn gzip(path: &Path) -> PathBuf {
    let out = path.with_extension("tar.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&out).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut encoder).unwrap();
    encoder.finish().unwrap();
    out
}

/// An archive of unsigned content claiming the name `name`.
async fn forged_archive(registry: &TestRegistry, name: &str) -> Vec<u8> {
    registry.push_image("team-a/app", "forged", "forged").await;
    registry.oci_archive("team-a/app", "forged", name).await
}

/// `ctr images import ARCHIVE` through the front.
async fn import(containerd: &Containerd, front: &Front, archive: &Path) -> Result<String, String> {
    ctr(
        containerd,
        front,
        &["images", "import", archive.to_str().unwrap()],
    )
    .await
}

fn image_digest(containerd: &Containerd, name: &str) -> String {
    let out = String::from_utf8(containerd.ctr(&["images", "ls"]).stdout).unwrap();
    out.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
        .unwrap_or_else(|| panic!("{name} not in\n{out}"))
        .to_string()
}

async fn pulls_are_checked(version: Version, extra: &[&str]) {
    let setup = setup().await;
    let containerd = Containerd::start(version, None, &[]);
    let front = start_front(setup.dir.path(), &setup.policy, &containerd);
    let host = &setup.registry.host;
    let signed = format!("{host}/team-a/app:v1");
    let pull = |reference: String| {
        let (containerd, front) = (&containerd, &front);
        async move {
            let mut args = vec!["images", "pull", "--plain-http"];
            args.extend_from_slice(extra);
            args.push(&reference);
            ctr(containerd, front, &args).await
        }
    };

    pull(signed.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", containerd.log()));
    assert_eq!(image_digest(&containerd, &signed), setup.signed.digest);

    let unsigned = format!("{host}/team-a/app:v2");
    let err = pull(unsigned.clone()).await.unwrap_err();
    assert!(
        err.contains("no trusted role signs target team-a/app:v2"),
        "{err}"
    );
    assert!(!containerd.images().contains(&unsigned));

    pull(format!("{host}/public/app:v1")).await.unwrap();

    // Everything else behaves as against containerd itself.
    for args in [
        vec!["namespaces", "ls"],
        vec!["images", "ls"],
        vec!["content", "ls", "-q"],
        vec!["leases", "ls"],
        vec!["version"],
    ] {
        let through = ctr(&containerd, &front, &args).await.unwrap();
        let direct = String::from_utf8(containerd.ctr(&args).stdout).unwrap();
        if args[0] == "version" {
            assert!(through.contains("Server:"), "{through}");
        } else {
            assert_eq!(through, direct, "ctr {args:?}");
        }
    }
    ctr(&containerd, &front, &["images", "rm", &signed])
        .await
        .unwrap();
    assert!(!containerd.images().contains(&signed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containerd_1_6_client_side_pulls() {
    pulls_are_checked(Version::V1_6, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containerd_2_transfer_pulls() {
    pulls_are_checked(Version::V2_3, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containerd_2_local_pulls() {
    pulls_are_checked(Version::V2_3, &["--local"]).await;
}

/// An image as `docker push` stores it (Docker's schema 2 manifest, a gzipped layer) pulls
/// verified through the front: client-side on containerd 1.6, by Transfer on 2.x.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_pushed_images_pull_through_the_front() {
    let setup = setup().await;
    let registry = &setup.registry;
    let pushed = registry
        .push_docker_image("team-a/app", "docker", "docker layer")
        .await;
    let team = setup.org.key("team-a").await;
    setup
        .org
        .sign(
            registry,
            &registry.image("team-a/app:docker"),
            "team-a",
            &[team],
        )
        .await;
    setup.org.publish(registry).await;
    let name = format!("{}/team-a/app:docker", registry.host);
    for version in [Version::V1_6, Version::V2_3] {
        let containerd = Containerd::start(version, None, &[]);
        let front = start_front(setup.dir.path(), &setup.policy, &containerd);
        ctr(
            &containerd,
            &front,
            &["images", "pull", "--plain-http", &name],
        )
        .await
        .unwrap_or_else(|e| panic!("{version:?}: {e}\n{}", containerd.log()));
        assert_eq!(
            image_digest(&containerd, &name),
            pushed.digest,
            "{version:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_pull_fetches_the_tuf_digest_not_the_moved_tag() {
    let setup = setup().await;
    let evil = setup.registry.push_image("team-a/app", "v1", "moved").await;
    let containerd = Containerd::start(Version::V2_3, None, &[]);
    let front = start_front(setup.dir.path(), &setup.policy, &containerd);
    let name = format!("{}/team-a/app:v1", setup.registry.host);
    ctr(
        &containerd,
        &front,
        &["images", "pull", "--plain-http", &name],
    )
    .await
    .unwrap();
    let digest = image_digest(&containerd, &name);
    assert_eq!(digest, setup.signed.digest);
    assert_ne!(digest, evil.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_and_a_containerd_restart() {
    let setup = setup().await;
    let mut containerd = Containerd::start(Version::V2_3, None, &[]);
    let front = start_front(setup.dir.path(), &setup.policy, &containerd);
    let host = setup.registry.host.clone();
    for i in 0..20 {
        setup
            .registry
            .push_image("public/many", &format!("t{i}"), &format!("content {i}"))
            .await;
    }
    let mut pulls = Vec::new();
    for i in 0..20 {
        let reference = if i % 2 == 0 {
            format!("{host}/team-a/app:v1")
        } else {
            format!("{host}/public/many:t{i}")
        };
        pulls.push(containerd.spawn_ctr_at(
            &front.socket,
            &["images", "pull", "--plain-http", &reference],
        ));
    }
    for pull in pulls {
        let out = pull.await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    containerd.restart();
    let out = ctr(&containerd, &front, &["images", "ls", "-q"])
        .await
        .unwrap();
    assert!(out.contains(&format!("{host}/team-a/app:v1")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imports_are_checked() {
    let setup = setup().await;
    let host = setup.registry.host.clone();
    let name = format!("{host}/team-a/app:v1");
    // The signed image as an archive; and other content claiming the same name.
    let signed = setup.registry.oci_archive("team-a/app", "v1", &name).await;
    let forged = forged_archive(&setup.registry, &name).await;
    let signed_path = setup.dir.path().join("signed.tar");
    let forged_path = setup.dir.path().join("forged.tar");
    std::fs::write(&signed_path, signed).unwrap();
    std::fs::write(&forged_path, forged).unwrap();

    // containerd 1.6: ctr imports client-side and records the image with Images.Create/Update.
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let front = start_front(setup.dir.path(), &setup.policy, &containerd);
    let err = import(&containerd, &front, &forged_path).await.unwrap_err();
    assert!(err.contains(": digest is sha256:"), "{err}");
    assert!(!containerd.images().contains(&name));
    import(&containerd, &front, &signed_path).await.unwrap();
    assert_eq!(image_digest(&containerd, &name), setup.signed.digest);

    // containerd 2.x imports through the Transfer service, which containerd's own verifiers
    // skip: the front receives the archive, verifies it, then hands it to containerd. Gzip
    // archives are read as containerd reads them.
    let (signed_path, forged_path) = (gzip(&signed_path), gzip(&forged_path));
    let containerd = Containerd::start(Version::V2_3, None, &[]);
    let front = start_front(setup.dir.path(), &setup.policy, &containerd);
    let err = import(&containerd, &front, &forged_path).await.unwrap_err();
    assert!(err.contains(": digest is sha256:"), "{err}");
    assert!(!containerd.images().contains(&name));
    import(&containerd, &front, &signed_path).await.unwrap();
    assert_eq!(image_digest(&containerd, &name), setup.signed.digest);
    front.assert_nothing_staged().await;
    // Unpacked like any import, progress shown as without the front.
    let out = ctr(&containerd, &front, &["images", "check"])
        .await
        .unwrap();
    assert!(out.contains("complete"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_expired_and_moved_are_refused_on_1_6() {
    let setup = setup().await;
    let registry = &setup.registry;
    let host = registry.host.clone();
    let team = [setup.org.key("team-a").await];
    for tag in ["v3", "v4"] {
        registry.push_image("team-a/app", tag, tag).await;
        setup
            .org
            .sign(
                registry,
                &registry.image(&format!("team-a/app:{tag}")),
                "team-a",
                &team,
            )
            .await;
    }
    setup.org.publish(registry).await;
    // v3 revoked; v4's tag moved.
    setup
        .org
        .editor(registry)
        .await
        .remove(
            "team-a/app:v3",
            "team-a",
            &team,
            tuf_oci_tests::expiries().targets,
        )
        .await
        .unwrap();
    setup.org.publish(registry).await;
    registry.push_image("team-a/app", "v4", "moved").await;

    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let front = start_front(setup.dir.path(), &setup.policy, &containerd);
    let pull = |tag: &str| {
        let reference = format!("{host}/team-a/app:{tag}");
        let (containerd, front) = (&containerd, &front);
        async move {
            ctr(
                containerd,
                front,
                &["images", "pull", "--plain-http", &reference],
            )
            .await
        }
    };
    let err = pull("v3").await.unwrap_err();
    assert!(
        err.contains("no trusted role signs target team-a/app:v3"),
        "{err}"
    );
    let err = pull("v4").await.unwrap_err();
    assert!(err.contains(": digest is sha256:"), "{err}");

    // Freeze: a timestamp that expired refuses everything in scope, even what was signed.
    let mut expires = tuf_oci_tests::expiries();
    expires.timestamp = tuf_oci_tests::past();
    setup.org.publish_with(registry, &expires).await;
    let err = pull("v1").await.unwrap_err();
    assert!(err.contains("timestamp metadata expired"), "{err}");
    for tag in ["v1", "v3", "v4"] {
        assert!(
            !containerd
                .images()
                .contains(&format!("{host}/team-a/app:{tag}"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn front_killed_mid_pull_leaves_no_image() {
    let setup = setup().await;
    let registry = &setup.registry;
    let big = "y".repeat(96 << 20);
    registry.push_image("public/big", "v1", &big).await;
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let socket = setup.dir.path().join("front-process.sock");
    let front = tuf_oci_tests::start_front(&containerd.socket, &socket, &setup.policy).await;
    let name = format!("{}/public/big:v1", registry.host);
    let mut pull = std::process::Command::new(&containerd.ctr)
        .arg("--address")
        .arg(&socket)
        .args(["images", "pull", "--plain-http", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill the front while content is being written through it.
    let mut ingesting = false;
    for _ in 0..2000 {
        let active = String::from_utf8(containerd.ctr(&["content", "active"]).stdout).unwrap();
        if active.lines().count() > 1 {
            ingesting = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    drop(front);
    assert!(ingesting, "the pull never reached containerd");
    assert!(
        !pull.wait().unwrap().success(),
        "the pull cannot finish without the front"
    );
    assert!(!containerd.images().contains(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn air_gapped_imports_verify_against_a_bundle_on_disk() {
    let setup = setup().await;
    let host = setup.registry.host.clone();
    let name = format!("{host}/team-a/app:v1");
    let signed = setup.registry.oci_archive("team-a/app", "v1", &name).await;
    let forged = forged_archive(&setup.registry, &name).await;
    // The TUF metadata travels as a bundle; the registry is then gone.
    let bundle = setup.dir.path().join("bundle");
    tuf_oci_tests::tuf_oci_copy(&host, &name, &format!("oci:{}", bundle.display()));
    let metadata = format!("metadata = \"oci:{}:org/tuf\"\n", bundle.display());
    let (_dir, offline, policy) = go_offline(setup, &metadata);
    let (signed_path, forged_path) = (offline.join("signed.tar"), offline.join("forged.tar"));
    std::fs::write(&signed_path, signed).unwrap();
    std::fs::write(&forged_path, forged).unwrap();

    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let front = start_front(&offline, &policy, &containerd);
    let err = import(&containerd, &front, &forged_path).await.unwrap_err();
    assert!(err.contains(": digest is sha256:"), "{err}");
    import(&containerd, &front, &signed_path).await.unwrap();
    assert!(containerd.images().contains(&name));

    // A digest pinned beside the tag must be the one the tag is signed for.
    let pinned = format!("{name}@sha256:{}", "0".repeat(64));
    let err = ctr(&containerd, &front, &["images", "tag", &name, &pinned])
        .await
        .unwrap_err();
    assert!(
        err.contains(&format!(
            "digest is sha256:{} (the digest pinned), but TUF signed sha256:",
            "0".repeat(64)
        )),
        "{err}"
    );
    assert!(!containerd.images().contains(&pinned));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containerd_2_imports_verify_from_the_archive_alone() {
    let setup = setup().await;
    let host = setup.registry.host.clone();
    let name = format!("{host}/team-a/app:v1");
    // The signed image with all its TUF metadata in one archive, as `tuf-oci copy` writes it.
    let bundle = setup.dir.path().join("bundle.tar");
    tuf_oci_tests::tuf_oci_copy(&host, &name, &format!("oci-archive:{}", bundle.display()));
    let forged = forged_archive(&setup.registry, &name).await;
    let tampered = setup.dir.path().join("tampered.tar");
    tamper(&bundle, &forged, &tampered);
    // The registry is gone: only the archive and the trusted root remain.
    let (_dir, offline, policy) = go_offline(setup, "");

    let containerd = Containerd::start(Version::V2_3, None, &[]);
    let front = start_front(&offline, &policy, &containerd);
    let err = import(&containerd, &front, &tampered).await.unwrap_err();
    assert!(err.contains(&format!("{name}: digest is sha256:")), "{err}");
    assert!(containerd.images().is_empty(), "{:?}", containerd.images());
    import(&containerd, &front, &bundle).await.unwrap();
    // The image, under the name it was copied from; its TUF metadata is not an image.
    assert_eq!(containerd.images(), std::slice::from_ref(&name));
    front.assert_nothing_staged().await;

    // A protected name for the archive's own index (which no TUF target signs) is refused.
    let index_name = format!("{host}/team-a/app:bundle");
    let err = ctr(
        &containerd,
        &front,
        &[
            "images",
            "import",
            "--index-name",
            &index_name,
            bundle.to_str().unwrap(),
        ],
    )
    .await
    .unwrap_err();
    assert!(err.contains("the archive's own index"), "{err}");
    assert_eq!(containerd.images(), std::slice::from_ref(&name));
    // So is the name `--digests` gives it under a protected base name.
    let base = format!("{host}/team-a/app");
    let err = ctr(
        &containerd,
        &front,
        &[
            "images",
            "import",
            "--digests",
            "--base-name",
            &base,
            bundle.to_str().unwrap(),
        ],
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("the archive's own index") && err.contains("no `--digests`"),
        "{err}"
    );
    assert_eq!(containerd.images(), std::slice::from_ref(&name));

    // Exports pass through untouched. `--local`: ctr's Transfer-service export stops reading
    // its stream once the Transfer returns and truncates archives now and then, against
    // containerd directly too (the front keeps containerd's order, data before the answer:
    // `streams::tests`). The client-side export reads content through the front instead.
    let exported = offline.join("exported.tar");
    ctr(
        &containerd,
        &front,
        &[
            "images",
            "export",
            "--local",
            exported.to_str().unwrap(),
            &name,
        ],
    )
    .await
    .unwrap();
    let mut archive = tar::Archive::new(std::fs::File::open(&exported).unwrap());
    let entries: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(entries.iter().any(|e| e == "index.json"), "{entries:?}");
}

/// For an import through the front on containerd 2.x: the set-up (kept for its lifetime), an
/// archive of the signed `team-a/app:v1`, containerd, and the front before it.
async fn importing() -> (Setup, Vec<u8>, Containerd, Front) {
    let setup = setup().await;
    let name = format!("{}/team-a/app:v1", setup.registry.host);
    let archive = setup.registry.oci_archive("team-a/app", "v1", &name).await;
    let containerd = Containerd::start(Version::V2_3, None, &[]);
    let front = start_front(setup.dir.path(), &setup.policy, &containerd);
    (setup, archive, containerd, front)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_import_leaves_nothing_staged() {
    // containerd fails a Transfer whose progress stream it cannot find. The checked archive
    // the front staged and handed over must go once the Transfer is answered, whatever
    // containerd does with the stream it was handed on (`import::HandedOver`).
    let (_setup, archive, containerd, front) = importing().await;
    let status = import_stream(&front, archive, "no-such-progress-stream", None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(containerd.images().is_empty(), "{:?}", containerd.images());
    front.assert_nothing_staged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imports_past_the_limit_wait_their_turn() {
    // Each import holds its archive on disk a few times over until containerd has it: past
    // the limit, an import is not staged, nor its archive asked for, until another ends.
    let (_setup, archive, _containerd, front) = importing().await;
    let front = Arc::new(front);
    let limit = containerd_tuf_transfer::import::MAX_CONCURRENT;
    let held = Held::new();
    let imports: Vec<_> = (0..=limit)
        .map(|_| {
            let (front, archive, held) = (front.clone(), archive.clone(), held.clone());
            tokio::spawn(async move { import_stream(&front, archive, "", Some(held)).await })
        })
        .collect();
    let staged = || {
        std::fs::read_dir(&front.staging)
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("containerd-tuf-import-")
            })
            .count()
    };
    held.until_asked(limit).await;
    // Time for the one past the limit to be asked for too, were it not waiting its turn.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!((held.asked(), staged()), (limit, limit));
    // One ends: the one waiting has its turn.
    held.permits.add_permits(1);
    held.until_asked(limit + 1).await;
    held.permits.add_permits(limit);
    let mut results = Vec::new();
    for import in imports {
        results.push(import.await.unwrap());
    }
    assert!(results.iter().all(Result::is_ok), "{results:#?}");
    front.assert_nothing_staged().await;
}

/// What holds [`import_stream`]s back: each archive waits for one of `permits` once the front
/// has asked for it (counted in `asked`).
#[derive(Clone)]
struct Held {
    permits: Arc<tokio::sync::Semaphore>,
    asked: Arc<std::sync::atomic::AtomicUsize>,
}

impl Held {
    /// No permits yet, nothing asked.
    fn new() -> Self {
        Held {
            permits: Arc::new(tokio::sync::Semaphore::new(0)),
            asked: Arc::default(),
        }
    }

    fn asked(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits (20 s at most) until the front has asked for `count` archives.
    async fn until_asked(&self, count: usize) {
        let waited = std::time::Instant::now();
        while self.asked() < count && waited.elapsed() < std::time::Duration::from_secs(20) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(self.asked(), count, "archives asked for");
    }
}

/// An import the front cannot stage (its staging directory gone) fails as the front's fault,
/// `UNAVAILABLE` (to be tried again) naming the directory, not as a bad archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_the_front_cannot_stage_is_unavailable_naming_where() {
    let (_setup, archive, containerd, front) = importing().await;
    std::fs::remove_dir(&front.staging).unwrap();
    let status = import_stream(&front, archive, "progress", None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("staging directory in {}", front.staging.display())),
        "{status:?}"
    );
    assert!(containerd.images().is_empty(), "{:?}", containerd.images());
}

/// Imports `archive` through the front as `ctr` does on containerd 2.x: under a lease of its
/// own (containerd's client takes one for every Transfer: a stream without one is closed by
/// the next garbage collection), the archive on an
/// import stream, sent as the receiver's window allows, and a Transfer naming that stream,
/// reporting progress on the stream `progress` (none when empty), held back by `held`.
async fn import_stream(
    front: &Front,
    archive: Vec<u8>,
    progress: &str,
    held: Option<Held>,
) -> Result<(), tonic::Status> {
    use containerd_client::services::v1::leases_client::LeasesClient;
    use containerd_client::services::v1::streaming_client::StreamingClient;
    use containerd_client::services::v1::transfer_client::TransferClient;
    use containerd_client::services::v1::{
        CreateRequest, StreamInit, TransferOptions, TransferRequest,
    };
    use containerd_client::types::transfer::{Data, ImageImportStream, WindowUpdate};
    use prost::Message as _;
    let any = |type_url: &str, value: Vec<u8>| prost_types::Any {
        type_url: type_url.into(),
        value,
    };
    let channel = containerd_tuf_verifier::client::unix_channel(
        &front.socket,
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();
    static STREAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = format!(
        "import-test-{}",
        STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut request = tonic::Request::new(CreateRequest {
        id: id.clone(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("containerd-namespace", "default".parse().unwrap());
    LeasesClient::new(channel.clone()).create(request).await?;
    let lease: tonic::metadata::MetadataValue<_> = id.parse().unwrap();
    let in_namespace = |request: &mut tonic::metadata::MetadataMap| {
        request.insert("containerd-namespace", "default".parse().unwrap());
        request.insert("containerd-lease", lease.clone());
    };
    let (to_stream, outgoing) = tokio::sync::mpsc::channel(4);
    let init = StreamInit { id: id.clone() }.encode_to_vec();
    to_stream
        .send(any("containerd.services.streaming.v1.StreamInit", init))
        .await
        .unwrap();
    let outgoing = futures_util::stream::unfold(outgoing, |mut outgoing| async move {
        outgoing.recv().await.map(|message| (message, outgoing))
    });
    let mut request = tonic::Request::new(outgoing);
    in_namespace(request.metadata_mut());
    let mut incoming = StreamingClient::new(channel.clone())
        .stream(request)
        .await?
        .into_inner();
    incoming.message().await?.expect("stream acknowledged");
    let mut held = held;
    let sending = tokio::spawn(async move {
        let mut chunks = archive.chunks(32 * 1024).peekable();
        let mut window = 0;
        while chunks.peek().is_some() {
            let Ok(Some(message)) = incoming.message().await else {
                return;
            };
            window += WindowUpdate::decode(message.value.as_slice())
                .unwrap()
                .update;
            if let Some(held) = held.take() {
                held.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.permits.acquire().await.unwrap().forget();
            }
            while window > 0
                && let Some(chunk) = chunks.next()
            {
                let data = Data {
                    data: chunk.to_vec(),
                };
                let message = any("containerd.types.transfer.Data", data.encode_to_vec());
                if to_stream.send(message).await.is_err() {
                    return;
                }
                window -= i32::try_from(chunk.len()).unwrap();
            }
        }
        // The archive's end. The stream stays open, as ctr's does: dropping the answers
        // would cancel it, and with it what is not yet delivered.
        drop(to_stream);
        while let Ok(Some(_)) = incoming.message().await {}
    });
    let source = ImageImportStream {
        stream: id,
        ..Default::default()
    };
    let mut request = tonic::Request::new(TransferRequest {
        source: Some(any(
            "containerd.types.transfer.ImageImportStream",
            source.encode_to_vec(),
        )),
        destination: Some(any(
            "containerd.types.transfer.ImageStore",
            store("", &[]).encode_to_vec(),
        )),
        options: Some(TransferOptions {
            progress_stream: progress.into(),
        }),
    });
    in_namespace(request.metadata_mut());
    let answer = TransferClient::new(channel).transfer(request).await;
    sending.abort();
    answer.map(|_| ())
}

/// Stops the registry; keeps only the trusted root and a policy protecting its host (plus
/// `scope_extra` lines) in the returned `offline` directory.
fn go_offline(setup: Setup, scope_extra: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let Setup {
        registry, org, dir, ..
    } = setup;
    let host = registry.host.clone();
    drop(registry);
    let offline = dir.path().join("offline");
    std::fs::create_dir_all(&offline).unwrap();
    std::fs::write(offline.join("root.json"), &org.root).unwrap();
    let policy = offline.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "cache_dir = \"{cache}\"\n[[scope]]\nname = \"org\"\nregistries = [\"{host}\"]\n\
             root = \"{root}\"\n{scope_extra}",
            cache = offline.join("cache").display(),
            root = offline.join("root.json").display(),
        ),
    )
    .unwrap();
    (dir, offline, policy)
}

/// `bundle` with its `v1` entry pointing at the image of the archive `forged` (whose blobs are
/// added), written to `out`.
fn tamper(bundle: &Path, forged: &[u8], out: &Path) {
    let work = tempfile::tempdir().unwrap();
    let (layout, other) = (work.path().join("layout"), work.path().join("other"));
    tuf_oci::store::unpack(bundle, &layout, tuf_oci::store::Unpacked::Layout).unwrap();
    tar::Archive::new(forged).unpack(&other).unwrap();
    for blob in std::fs::read_dir(other.join("blobs/sha256")).unwrap() {
        let blob = blob.unwrap();
        std::fs::copy(
            blob.path(),
            layout.join("blobs/sha256").join(blob.file_name()),
        )
        .unwrap();
    }
    let forged_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(other.join("index.json")).unwrap()).unwrap();
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "team-a/app:v1")
        .expect("the bundle names team-a/app:v1");
    for field in ["digest", "size", "mediaType"] {
        entry[field] = forged_index["manifests"][0][field].clone();
    }
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    tuf_oci::store::pack(&layout, out, &[]).unwrap();
}

#[tokio::test]
async fn a_front_brings_metadata_up_to_date_when_it_starts() {
    let registry = TestRegistry::start();
    let (org, _) = tuf_oci_tests::solo(&registry, true).await;
    let dir = tempfile::tempdir().unwrap();
    let policy =
        tuf_oci_tests::write_bootstrapped_policy(dir.path(), &registry, &org, &["solo/"], "");
    // Nothing is forwarded, so no containerd is needed behind the front.
    let engine = Arc::new(Engine::new(Policy::load(&policy).unwrap()).unwrap());
    let listener = containerd_tuf_verifier::server::bind(&dir.path().join("front.sock")).unwrap();
    let upstream = Upstream::new(dir.path().join("no-containerd.sock"));
    let (stop, stopped) = oneshot::channel::<()>();
    let staging = dir.path().to_path_buf();
    let served = tokio::spawn(server::serve(listener, upstream, engine, staging, async {
        let _ = stopped.await;
    }));
    // Before any pull, the front holds a trusted timestamp.
    tuf_oci_tests::wait_for_file(&dir.path().join("cache"), "timestamp.json").await;
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_the_front_does_not_know_are_refused() {
    // containerd 1.6 serves CRI on its main socket, and CRI's PullImage records images itself:
    // such calls must not pass the front unchecked.
    let setup = setup().await;
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let front = start_front(setup.dir.path(), &setup.policy, &containerd);
    let channel = containerd_tuf_verifier::client::unix_channel(
        &front.socket,
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    for path in [
        "/runtime.v1.ImageService/PullImage",
        "/runtime.v1alpha2.ImageService/PullImage",
        "/runtime.v1.RuntimeService/Version",
        "/example.v1.Unknown/Call",
    ] {
        grpc.ready().await.unwrap();
        let status = grpc
            .unary(
                tonic::Request::new(()),
                tonic::codegen::http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<(), ()>::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{path}");
        assert!(status.message().contains(path), "{}", status.message());
    }
    // containerd's own services still pass.
    ctr(&containerd, &front, &["version"]).await.unwrap();
}

/// A Transfer of `source` (an `OCIRegistry` or an `ImageStore`, encoded) into `store`, through
/// the front, in the default namespace.
async fn transfer_into(
    front: &Front,
    source: prost_types::Any,
    store: containerd_client::types::transfer::ImageStore,
) -> Result<(), tonic::Status> {
    use prost::Message as _;
    let destination = prost_types::Any {
        type_url: "containerd.types.transfer.ImageStore".into(),
        value: store.encode_to_vec(),
    };
    transfer(front, source, destination).await
}

/// A Transfer of `source` into `destination`, through the front, in the default namespace.
async fn transfer(
    front: &Front,
    source: prost_types::Any,
    destination: prost_types::Any,
) -> Result<(), tonic::Status> {
    use containerd_client::services::v1::TransferRequest;
    use containerd_client::services::v1::transfer_client::TransferClient;
    let channel = containerd_tuf_verifier::client::unix_channel(
        &front.socket,
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();
    let mut request = tonic::Request::new(TransferRequest {
        source: Some(source),
        destination: Some(destination),
        options: None,
    });
    request
        .metadata_mut()
        .insert("containerd-namespace", "default".parse().unwrap());
    TransferClient::new(channel)
        .transfer(request)
        .await
        .map(|_| ())
}

/// An `OCIRegistry` source for `reference`, over plain HTTP.
fn from_registry(reference: &str) -> prost_types::Any {
    use containerd_client::types::transfer::{OciRegistry, RegistryResolver};
    use prost::Message as _;
    prost_types::Any {
        type_url: "containerd.types.transfer.OCIRegistry".into(),
        value: OciRegistry {
            reference: reference.into(),
            resolver: Some(RegistryResolver {
                default_scheme: "http".into(),
                ..Default::default()
            }),
        }
        .encode_to_vec(),
    }
}

/// An image store named `name`, with `extra` complete references.
fn store(name: &str, extra: &[&str]) -> containerd_client::types::transfer::ImageStore {
    use containerd_client::types::transfer::{ImageReference, ImageStore};
    ImageStore {
        name: name.into(),
        extra_references: extra
            .iter()
            .map(|name| ImageReference {
                name: name.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_destinations_are_checked_on_2() {
    // containerd names the records of a Transfer after its destination, not its source: each
    // of those names must be signed for what the source brings.
    let setup = setup().await;
    let host = &setup.registry.host;
    let containerd = Containerd::start(Version::V2_3, None, &[]);
    let front = start_front(setup.dir.path(), &setup.policy, &containerd);
    let signed = format!("{host}/team-a/app:v1");
    let unsigned = format!("{host}/team-a/app:v2");
    let public = format!("{host}/public/app:v1");
    let refusals = [
        // Unverified content under a protected name.
        (from_registry(&public), store(&signed, &[])),
        // Verified content under a protected name that does not sign it.
        (from_registry(&signed), store(&unsigned, &[])),
        (
            from_registry(&signed),
            store(&format!("{host}/public/copy:v1"), &[&unsigned]),
        ),
    ];
    for (source, destination) in refusals {
        let names = destination.name.clone();
        let status = transfer_into(&front, source, destination)
            .await
            .expect_err(&names);
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("tuf-oci"), "{}", status.message());
    }
    let images = containerd.images();
    assert!(
        !images.contains(&signed) && !images.contains(&unsigned),
        "{images:?}"
    );
    // A verified pull under its own name and an unprotected one is recorded.
    let copy = format!("{host}/public/copy:v1");
    transfer_into(&front, from_registry(&signed), store(&signed, &[&copy]))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", containerd.log()));
    assert_eq!(image_digest(&containerd, &signed), setup.signed.digest);
    assert_eq!(image_digest(&containerd, &copy), setup.signed.digest);

    // Tags: image store to image store, as `ctr images tag` does on 2.x.
    let from_store = |name: &str| {
        use prost::Message as _;
        prost_types::Any {
            type_url: "containerd.types.transfer.ImageStore".into(),
            value: store(name, &[]).encode_to_vec(),
        }
    };
    ctr(
        &containerd,
        &front,
        &["images", "pull", "--plain-http", &public],
    )
    .await
    .unwrap();
    // A tag cannot be pinned to what the front would check (containerd reads the source
    // record after the front does), so it may not name a protected image, even one TUF signs
    // for the same digest; nor may it name images through a prefix.
    let through_prefix = {
        use containerd_client::types::transfer::ImageReference;
        let mut prefixed = store("", &[]);
        prefixed.extra_references.push(ImageReference {
            name: format!("{host}/team-a"),
            is_prefix: true,
            ..Default::default()
        });
        prefixed
    };
    for (from, to) in [
        (&public, store(&signed, &[])),
        (&signed, store(&unsigned, &[])),
        (&signed, store(&signed, &[])),
        (&public, through_prefix),
    ] {
        let status = transfer_into(&front, from_store(from), to)
            .await
            .expect_err(from);
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    }
    assert_eq!(image_digest(&containerd, &signed), setup.signed.digest);
    assert!(!containerd.images().contains(&unsigned));
    let other = format!("{host}/public/other:v1");
    transfer_into(&front, from_store(&signed), store(&other, &[]))
        .await
        .unwrap();
    assert_eq!(image_digest(&containerd, &other), setup.signed.digest);

    // A destination the front does not know might record images (a newer containerd's): it
    // is refused, not passed on.
    let unknown = prost_types::Any {
        type_url: "containerd.types.transfer.ImageStoreV2".into(),
        value: Vec::new(),
    };
    let status = transfer(&front, from_registry(&public), unknown)
        .await
        .expect_err("unknown destination");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("ImageStoreV2"),
        "{}",
        status.message()
    );

    // Under `default = "allow"`, a name with user information before a protected host is
    // judged whole, as the policy reads it (refused), not by what precedes its `@`.
    let allow = setup.dir.path().join("allow.toml");
    let text = std::fs::read_to_string(&setup.policy).unwrap();
    std::fs::write(
        &allow,
        text.replace("default = \"deny\"", "default = \"allow\""),
    )
    .unwrap();
    let lenient_dir = setup.dir.path().join("lenient");
    std::fs::create_dir(&lenient_dir).unwrap();
    let lenient = start_front(&lenient_dir, &allow, &containerd);
    let disguised = format!("u@{signed}");
    for (source, name) in [
        (from_store(&public), disguised.clone()),
        (from_registry(&public), disguised.clone()),
    ] {
        let status = transfer_into(&lenient, source, store(&name, &[]))
            .await
            .expect_err(&name);
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains("policy protects"),
            "{}",
            status.message()
        );
    }
    assert!(!containerd.images().contains(&disguised));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_served_as_an_index_is_refused_on_2() {
    // The front pins a Transfer pull to the signed digest; containerd then records the media
    // type the registry answers with. A registry serving the signed manifest as an index is
    // refused by containerd itself (the front does not read the record back).
    use tuf_oci_tests::hostile::{HostileRegistry, Rule};
    let setup = setup().await;
    let digest = setup.signed.digest.clone();
    let signed = setup
        .registry
        .client
        .manifest(
            &setup.registry.repo("team-a/app").digested(&digest),
            1 << 20,
        )
        .await
        .unwrap()
        .unwrap();
    let hostile = HostileRegistry::start(
        &setup.registry.host,
        vec![Rule::Replace {
            path_suffix: format!("/manifests/{digest}"),
            body: signed.bytes,
            content_type: tuf_oci::layout::INDEX_MEDIA_TYPE.into(),
        }],
    )
    .await;
    let policy = setup.dir.path().join("hostile-policy.toml");
    let text = std::fs::read_to_string(&setup.policy).unwrap();
    std::fs::write(&policy, text.replace(&setup.registry.host, &hostile.host)).unwrap();
    let containerd = Containerd::start(Version::V2_3, None, &[]);
    let front = start_front(setup.dir.path(), &policy, &containerd);
    let name = format!("{}/team-a/app:v1", hostile.host);
    let err = ctr(
        &containerd,
        &front,
        &["images", "pull", "--plain-http", &name],
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("media-type: expected index but found manifest"),
        "{err}"
    );
    assert!(containerd.images().is_empty(), "{:?}", containerd.images());
}

/// The front talks to containerd's socket only when root or the front's own user serves it:
/// another user's server there (the socket path left free in a directory others can write)
/// is not talked to, and calls through the front fail naming its user.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_containerd_socket_served_by_another_user_is_not_talked_to() {
    use std::os::unix::fs::PermissionsExt;
    let setup = setup().await;
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    // containerd behind a relay run as root, and that one behind a relay run as nobody.
    let relays = tempfile::tempdir().unwrap();
    let open = |path: &Path| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    };
    open(relays.path());
    let (as_root, as_nobody) = (
        relays.path().join("root.sock"),
        relays.path().join("nobody.sock"),
    );
    let _root_relay = Relay::start(&as_root, &containerd.socket, 0).await;
    open(&as_root);
    let _nobody_relay = Relay::start(&as_nobody, &as_root, 65534).await;

    let through_root = start_front_to(setup.dir.path(), &setup.policy, &as_root);
    let out = containerd
        .spawn_ctr_at(&through_root.socket, &["version"])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let through_nobody = start_front_to(setup.dir.path(), &setup.policy, &as_nobody);
    let out = containerd
        .spawn_ctr_at(&through_nobody.socket, &["version"])
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("runs as uid 65534"),
        "{stderr}"
    );
}

/// A Transfer pull of team-a/app:v1 through the front on containerd 2.3.4, from a proxy in
/// front of the registry that holds the image's layer until [`HeldPull::finish`] and fails
/// timestamp reads once [`HeldPull::fail_timestamps`] is called.
struct HeldPull {
    _hostile: tuf_oci_tests::hostile::HostileRegistry,
    containerd: Containerd,
    _front: Front,
    name: String,
    pull: tokio::task::JoinHandle<std::process::Output>,
    permits: Arc<tokio::sync::Semaphore>,
    failures: Arc<std::sync::atomic::AtomicUsize>,
}

impl HeldPull {
    /// Starts the pull, and returns once the layer is asked for.
    async fn start(setup: &Setup) -> Self {
        use tuf_oci_tests::hostile::{HostileRegistry, Rule};
        let registry = &setup.registry;
        let manifest = registry
            .manifest_json("team-a/app", &setup.signed.digest)
            .await;
        let layer = manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let permits = Arc::new(tokio::sync::Semaphore::new(0));
        let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let rules = vec![
            Rule::Hold {
                path_suffix: format!("/blobs/{layer}"),
                permits: Arc::clone(&permits),
            },
            Rule::Fail {
                path_suffix: "/manifests/timestamp.json".into(),
                method: "GET",
                times: Arc::clone(&failures),
            },
        ];
        let hostile = HostileRegistry::start(&registry.host, rules).await;
        let policy = setup.dir.path().join("hostile-policy.toml");
        let text = std::fs::read_to_string(&setup.policy).unwrap();
        std::fs::write(&policy, text.replace(&registry.host, &hostile.host)).unwrap();
        let containerd = Containerd::start(Version::V2_3, None, &[]);
        let front = start_front(setup.dir.path(), &policy, &containerd);
        let name = format!("{}/team-a/app:v1", hostile.host);
        let args = ["images", "pull", "--plain-http", &name];
        let pull = containerd.spawn_ctr_at(&front.socket, &args);
        hostile.asked(&format!("/blobs/{layer}"), 1).await;
        HeldPull {
            _hostile: hostile,
            containerd,
            _front: front,
            name,
            pull,
            permits,
            failures,
        }
    }

    /// From now on the registry fails every read of the timestamp.
    fn fail_timestamps(&self) {
        let every = usize::MAX;
        self.failures
            .store(every, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lets the layer through and waits for the pull to end.
    async fn finish(self) -> HeldPullEnded {
        self.permits.add_permits(1);
        // The proxy and the front stay until the pull ends, with `self`.
        let out = self.pull.await.unwrap();
        HeldPullEnded {
            succeeded: out.status.success(),
            said: String::from_utf8_lossy(&out.stderr).into_owned(),
            containerd: self.containerd,
            name: self.name,
        }
    }
}

/// How a [`HeldPull`] ended.
struct HeldPullEnded {
    succeeded: bool,
    /// What ctr said.
    said: String,
    containerd: Containerd,
    /// The name pulled.
    name: String,
}

impl HeldPullEnded {
    /// Asserts that the pull failed, saying each of `says`, and left no record of its name.
    fn assert_refused_unrecorded(&self, says: &[&str]) {
        assert!(!self.succeeded, "{}", self.said);
        for part in says {
            assert!(self.said.contains(part), "{part:?} in {}", self.said);
        }
        let images = self.containerd.images();
        assert!(!images.contains(&self.name), "{images:?}");
    }
}

/// A Transfer pull is verified when the call arrives, and containerd records it when its work
/// ends: a tag signed for other content meanwhile is checked again once containerd answers,
/// and the record it made of the older target is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_signed_anew_during_a_transfer_pull_is_not_left_recorded_on_2() {
    let setup = setup().await;
    let registry = &setup.registry;
    let held = HeldPull::start(&setup).await;
    let newer = registry.push_image("team-a/app", "v1", "newer").await;
    let team = [setup.org.key("team-a").await];
    setup
        .org
        .sign(registry, &registry.image("team-a/app:v1"), "team-a", &team)
        .await;
    setup.org.publish(registry).await;

    held.finish().await.assert_refused_unrecorded(&[
        "checked again once containerd recorded the pull",
        &newer.digest,
    ]);
}

/// A Transfer pull whose names cannot be checked again once containerd answers (the registry
/// failing) does not stand either: it is verified as a pull starting then would be, which
/// fails closed. Its record is removed, and the answer says why (UNAVAILABLE: try again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_pull_that_cannot_be_checked_again_is_not_left_recorded_on_2() {
    let setup = setup().await;
    let held = HeldPull::start(&setup).await;
    held.fail_timestamps();
    let ended = held.finish().await;
    let removed = format!("removed: [{}]", ended.name);
    ended.assert_refused_unrecorded(&["could not be checked again", &removed]);
}

/// A Transfer pull that containerd fails, whose names cannot be checked again either (the
/// registry failing), leaves alone the record an earlier pull made of the same target: it
/// may not be this pull's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_transfer_pull_leaves_an_earlier_record_on_2() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tuf_oci_tests::hostile::{HostileRegistry, Rule};
    let setup = setup().await;
    let manifest = format!("/manifests/{}", setup.signed.digest);
    let permits = Arc::new(tokio::sync::Semaphore::new(0));
    let (manifests, timestamps) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let rules = vec![
        Rule::Fail {
            path_suffix: "/manifests/timestamp.json".into(),
            method: "GET",
            times: Arc::clone(&timestamps),
        },
        // Held (after the first pull), then failed: containerd's pull fails.
        Rule::Hold {
            path_suffix: manifest.clone(),
            permits: Arc::clone(&permits),
        },
        Rule::Fail {
            path_suffix: manifest.clone(),
            method: "HEAD",
            times: Arc::clone(&manifests),
        },
        Rule::Fail {
            path_suffix: manifest.clone(),
            method: "GET",
            times: Arc::clone(&manifests),
        },
    ];
    let hostile = HostileRegistry::start(&setup.registry.host, rules).await;
    let policy = setup.dir.path().join("hostile-policy.toml");
    let text = std::fs::read_to_string(&setup.policy).unwrap();
    std::fs::write(&policy, text.replace(&setup.registry.host, &hostile.host)).unwrap();
    let containerd = Containerd::start(Version::V2_3, None, &[]);
    let front = start_front(setup.dir.path(), &policy, &containerd);
    let name = format!("{}/team-a/app:v1", hostile.host);
    let args = ["images", "pull", "--plain-http", &name];

    permits.add_permits(1_000);
    ctr(&containerd, &front, &args).await.unwrap();
    assert!(containerd.images().contains(&name));
    permits.forget_permits(1_000);

    let asked = hostile
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.ends_with(&manifest))
        .count();
    let pull = containerd.spawn_ctr_at(&front.socket, &args);
    hostile.asked(&manifest, asked + 1).await;
    manifests.store(usize::MAX, Ordering::SeqCst);
    timestamps.store(usize::MAX, Ordering::SeqCst);
    permits.add_permits(1_000);
    let out = pull.await.unwrap();
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        containerd.images().contains(&name),
        "{:?}",
        containerd.images()
    );
}

/// A Transfer pull that outlasts the metadata it was verified with (the timestamp expiring
/// while containerd pulls) is not left recorded: checked again as a pull starting then would
/// be, the name no longer verifies (freeze protection), which is a refusal, not a failure to
/// check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_pull_outlasting_its_metadata_is_not_left_recorded_on_2() {
    let setup = setup().await;
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(10);
    let mut expiries = tuf_oci_tests::expiries();
    expiries.timestamp = expires;
    setup.org.publish_with(&setup.registry, &expiries).await;
    let held = HeldPull::start(&setup).await;
    let left = expires.duration_since(jiff::Timestamp::now());
    let left = std::time::Duration::try_from(left).unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_secs(1)).await;

    held.finish()
        .await
        .assert_refused_unrecorded(&["expired", "(checked again once containerd recorded"]);
}
