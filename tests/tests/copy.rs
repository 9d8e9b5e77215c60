//! TUF-aware copies: images travel with all their TUF metadata and verify at the destination
//! (another registry, an OCI archive and back) with the source registry stopped.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tuf_oci::copy::{CopyOptions, MetadataMode, Tags, copy_repository};
use tuf_oci::store::{ContentStore, LayoutStore, RegistryStore};
use tuf_oci::{Error, Registry, RegistryConfig, TrustConfig, Verifier};
use tuf_oci_tests::hostile::{HostileRegistry, Rule};
use tuf_oci_tests::{Org, TeamA, TestRegistry, cli_binary, craft, delegation, solo};

fn tuf(args: &[&str], insecure: &[&str]) -> Output {
    Command::new(cli_binary())
        .arg("--insecure-registry")
        .arg(insecure.join(","))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A verifier at `registry` trusting `org`'s root, with names mapped by `signed_as`.
fn verifier(
    registry: &TestRegistry,
    org_root: &[u8],
    cache: &Path,
    signed_as: &[(&str, &str)],
) -> Verifier {
    Verifier::new(
        registry.client.clone(),
        TrustConfig {
            root: org_root.to_vec(),
            cache_dir: Some(cache.to_path_buf()),
            signed_as: signed_as
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..TrustConfig::default()
        },
    )
    .unwrap()
}

/// team-a/app with v1 (signed by team-a), v2 (unsigned), multi (a signed multi-platform index
/// signed by a second role, team-a-release).
async fn source(registry: &TestRegistry) -> (Org, Vec<u8>) {
    let TeamA { org, .. } = TeamA::create(registry).await;
    let release = org.key("team-a-release").await;
    let targets = org.targets_key().await;
    org.delegate(
        registry,
        "targets",
        &targets,
        &delegation("team-a-release", &["team-a/app:multi"], &[&release], 1),
    )
    .await;
    org.publish(registry).await;
    registry.push_index("team-a/app", "multi", "multi").await;
    org.sign(
        registry,
        &registry.image("team-a/app:multi"),
        "team-a-release",
        &[release],
    )
    .await;
    org.publish(registry).await;
    let root = org.root.clone();
    (org, root)
}

#[tokio::test]
async fn registry_to_registry_then_source_stopped() {
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let (_org, root) = source(&a).await;
    let hosts = [a.host.as_str(), b.host.as_str()];
    ok(tuf(
        &[
            "copy",
            &format!("{}/team-a/app", a.host),
            &format!("{}/team-a/app", b.host),
            "--all-tags",
        ],
        &hosts,
    ));
    // A rerun finds everything in place.
    let rerun = ok(tuf(
        &[
            "copy",
            &format!("{}/team-a/app", a.host),
            &format!("{}/team-a/app", b.host),
            "--all-tags",
        ],
        &hosts,
    ));
    assert!(
        rerun.contains("copied 1 objects"),
        "only the pointer is rewritten: {rerun}"
    );
    drop(a);

    let cache = tempfile::tempdir().unwrap();
    let at_b = verifier(&b, &root, cache.path(), &[]);
    assert_eq!(
        at_b.verify(&b.image("team-a/app:v1")).await.unwrap().role(),
        "team-a"
    );
    assert_eq!(
        at_b.verify(&b.image("team-a/app:multi"))
            .await
            .unwrap()
            .role(),
        "team-a-release"
    );
    let err = at_b.verify(&b.image("team-a/app:v2")).await.unwrap_err();
    assert!(matches!(err, Error::TargetNotSigned { .. }), "{err}");

    // Tampering at the destination is refused.
    b.push_image("team-a/app", "v1", "tampered").await;
    let err = at_b.verify(&b.image("team-a/app:v1")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::DescriptorMismatch {
                field: "digest",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn promotion_to_another_repository_verifies_under_the_signed_name() {
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let (_org, root) = source(&a).await;
    let out = ok(tuf(
        &[
            "copy",
            &format!("{}/team-a/app:v1", a.host),
            &format!("{}/prod/app:v1", b.host),
        ],
        &[&a.host, &b.host],
    ));
    assert!(out.contains("--signed-as prod/app=team-a/app"), "{out}");
    drop(a);
    let cache = tempfile::tempdir().unwrap();
    let err = verifier(&b, &root, cache.path(), &[])
        .verify(&b.image("prod/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TargetNotSigned { ref name } if name == "prod/app:v1"),
        "{err}"
    );
    let mapped = verifier(&b, &root, cache.path(), &[("prod/app", "team-a/app")]);
    assert_eq!(
        mapped.verify(&b.image("prod/app:v1")).await.unwrap().name(),
        "team-a/app:v1"
    );
}

#[tokio::test]
async fn through_an_archive_with_both_sources_stopped() {
    let a = TestRegistry::start();
    let c = TestRegistry::start();
    let (_org, root) = source(&a).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.tar");
    let bundle_arg = format!("oci-archive:{}", bundle.display());
    // A file beside the archive is the user's, whatever its name.
    let beside = dir.path().join("bundle.tmp");
    std::fs::write(&beside, b"mine").unwrap();
    // Copied one image at a time: a copy adds to the archive there, as to a layout.
    for tag in ["v1", "multi"] {
        ok(tuf(
            &["copy", &format!("{}/team-a/app:{tag}", a.host), &bundle_arg],
            &[&a.host],
        ));
    }
    assert_eq!(std::fs::read(&beside).unwrap(), b"mine");
    drop(a);
    // An independent OCI client reads what we wrote.
    let inspect = Command::new("skopeo")
        .args(["inspect", "--raw", &format!("{bundle_arg}:team-a/app:v1")])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );

    ok(tuf(
        &[
            "copy",
            &bundle_arg,
            &format!("{}/team-a/app", c.host),
            "--all-tags",
        ],
        &[&c.host],
    ));
    let cache = tempfile::tempdir().unwrap();
    let at_c = verifier(&c, &root, cache.path(), &[]);
    at_c.verify(&c.image("team-a/app:v1")).await.unwrap();
    at_c.verify(&c.image("team-a/app:multi")).await.unwrap();
}

/// `docker save` writes an OCI layout with files of its own beside it (`manifest.json`,
/// `repositories`, and, from older versions, layer links): a copy adding a signed image to
/// such an archive keeps them as they were, and both images are read from it afterwards, ours
/// verified offline.
#[tokio::test]
async fn a_copy_into_a_docker_save_archive_keeps_what_docker_wrote() {
    let a = TestRegistry::start();
    let (_org, root) = source(&a).await;
    let dir = tempfile::tempdir().unwrap();
    let root_file = dir.path().join("root.json");
    std::fs::write(&root_file, &root).unwrap();
    // The image as another tool saved it (no TUF metadata), then docker's files added.
    let plain = dir.path().join("plain.tar");
    ok(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/team-a/app:v1", a.host))
        .arg(format!("oci-archive:{}:saved/app:v1", plain.display()))
        .output()
        .unwrap());
    let saved = dir.path().join("saved.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&saved).unwrap());
    let mut layer = None;
    let mut entries = tar::Archive::new(std::fs::File::open(&plain).unwrap());
    for entry in entries.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        if path.starts_with("blobs/sha256/") && entry.header().entry_type().is_file() {
            layer = Some(path);
        }
        let header = entry.header().clone();
        builder.append(&header, &mut entry).unwrap();
    }
    let layer = layer.expect("a blob in the saved archive");
    let manifest_json = br#"[{"Config":"blobs/sha256/0","RepoTags":["saved/app:v1"],"Layers":[]}]"#;
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest_json.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "manifest.json", &manifest_json[..])
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    let target = format!("../{layer}");
    builder
        .append_link(&mut header, "legacy/layer.tar", &target)
        .unwrap();
    builder.into_inner().unwrap();

    let archive = format!("oci-archive:{}", saved.display());
    ok(tuf(
        &["copy", &format!("{}/team-a/app:multi", a.host), &archive],
        &[&a.host],
    ));
    drop(a);

    let mut kept = (None, None);
    let mut entries = tar::Archive::new(std::fs::File::open(&saved).unwrap());
    for entry in entries.entries().unwrap() {
        let mut entry = entry.unwrap();
        match entry.path().unwrap().to_str().unwrap() {
            "manifest.json" => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
                kept.0 = Some(bytes);
            }
            "legacy/layer.tar" => {
                assert_eq!(entry.header().entry_type(), tar::EntryType::Symlink);
                kept.1 = entry.link_name().unwrap().map(|l| l.display().to_string());
            }
            _ => {}
        }
    }
    assert_eq!(kept.0.as_deref(), Some(&manifest_json[..]));
    assert_eq!(kept.1, Some(target));
    for image in ["saved/app:v1", "team-a/app:multi"] {
        ok(Command::new("skopeo")
            .args(["inspect", "--raw", &format!("{archive}:{image}")])
            .output()
            .unwrap());
    }
    ok(Command::new(cli_binary())
        .arg("--root")
        .arg(&root_file)
        .args(["verify", &format!("{archive}:team-a/app:multi"), "--deep"])
        .output()
        .unwrap());
}

#[tokio::test]
async fn single_repository_mode_and_dry_run() {
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let (org, _) = solo(&a, true).await;
    let hosts = [a.host.as_str(), b.host.as_str()];
    let dry = ok(tuf(
        &[
            "copy",
            &format!("{}/solo/app:v1", a.host),
            &format!("{}/solo/app:v1", b.host),
            "--dry-run",
        ],
        &hosts,
    ));
    assert!(dry.contains("would copy"), "{dry}");
    assert!(
        b.client.tags(&b.repo("solo/app")).await.unwrap().is_empty(),
        "a dry run writes nothing"
    );
    let layout = tempfile::tempdir().unwrap();
    let new_layout = layout.path().join("new");
    let dry = ok(tuf(
        &[
            "copy",
            &format!("{}/solo/app:v1", a.host),
            &format!("oci:{}", new_layout.display()),
            "--dry-run",
        ],
        &hosts,
    ));
    assert!(dry.contains("would copy"), "{dry}");
    assert!(!new_layout.exists(), "a dry run creates no layout");
    // Nor an archive, nor the lock a copy into one holds beside it.
    let archive = layout.path().join("bundle.tar");
    ok(tuf(
        &[
            "copy",
            &format!("{}/solo/app:v1", a.host),
            &format!("oci-archive:{}", archive.display()),
            "--dry-run",
        ],
        &hosts,
    ));
    let written: Vec<_> = std::fs::read_dir(layout.path()).unwrap().collect();
    assert!(written.is_empty(), "{written:?}");
    // The repository is its own metadata repository: nothing can stay remote.
    let remote = tuf(
        &[
            "copy",
            &format!("{}/solo/app:v1", a.host),
            &format!("{}/solo/app:v1", b.host),
            "--keep-metadata-remote",
        ],
        &hosts,
    );
    let stderr = String::from_utf8_lossy(&remote.stderr);
    assert_eq!(remote.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("single-repository mode"), "{stderr}");
    copy_solo_then_verify_without_the_source(a, &b, &org.root).await;
}

/// Copies `solo/app:v1` of `a` to `b`, stops `a`, and verifies the copy at `b`.
async fn copy_solo_then_verify_without_the_source(a: TestRegistry, b: &TestRegistry, root: &[u8]) {
    ok(tuf(
        &[
            "copy",
            &format!("{}/solo/app:v1", a.host),
            &format!("{}/solo/app:v1", b.host),
        ],
        &[&a.host, &b.host],
    ));
    drop(a);
    let cache = tempfile::tempdir().unwrap();
    verifier(b, root, cache.path(), &[])
        .verify(&b.image("solo/app:v1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_single_repository_copies_after_a_timestamp_refresh() {
    // The cron job's timestamp refresh leaves the `tuf-metadata` index naming the timestamp
    // before it, which no tag holds any more: the copy brings what the index names, or the
    // destination refuses the index (distribution checks that an index's manifests exist).
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let (org, _) = solo(&a, true).await;
    org.editor(&a)
        .await
        .refresh_timestamp(
            &[org.key("timestamp").await],
            tuf_oci_tests::expiries().timestamp,
        )
        .await
        .unwrap();
    copy_solo_then_verify_without_the_source(a, &b, &org.root).await;
}

#[tokio::test]
async fn bad_input_is_named() {
    let a = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let fails = |args: &[&str]| {
        let out = tuf(args, &[&a.host]);
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(
        fails(&["copy", "docker://x/y:v1", "oci:/tmp/x"]).contains("unknown transport docker://")
    );
    for by_digest in ["x.example/a/b@sha256:00", "oci:/tmp/x:a/b@sha256:00"] {
        let err = fails(&["copy", by_digest, "oci:/tmp/y"]);
        assert!(err.contains("copies are by tag"), "{err}");
    }
    let renamed = fails(&["copy", "x.example/a/b", "oci:/tmp/x:a/b:v1", "--all-tags"]);
    assert!(
        renamed.contains("the destination takes no tag"),
        "{renamed}"
    );
    // A trusted root named but missing (mistyped) is an error, not an unverified copy.
    let missing = dir.path().join("rot.json");
    let err = fails(&[
        "--root",
        missing.to_str().unwrap(),
        "copy",
        &format!("{}/team-a/app:v1", a.host),
        "oci:/tmp/unwritten",
    ]);
    assert!(
        err.contains(&format!("reading trusted root {}", missing.display())),
        "{err}"
    );
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar").unwrap();
    let err = fails(&[
        "copy",
        &format!("oci-archive:{}:team-a/app:v1", junk.display()),
        &format!("{}/x/y:v1", a.host),
    ]);
    assert!(err.contains("junk.tar"), "{err}");
    // An image without TUF metadata cannot be copied into something that verifies.
    a.push_image("plain/app", "v1", "plain").await;
    let err = fails(&[
        "copy",
        &format!("{}/plain/app:v1", a.host),
        &format!("oci:{}", dir.path().join("l").display()),
    ]);
    assert!(err.contains("no tuf-metadata tag"), "{err}");
}

#[tokio::test]
async fn interrupted_copy_never_verifies_and_a_rerun_completes() {
    use std::io::BufRead;
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let (_org, root) = source(&a).await;
    a.push_image("team-a/app", "big", &"b".repeat(64 << 20))
        .await;
    let args = [
        "--insecure-registry".to_string(),
        format!("{},{}", a.host, b.host),
        "copy".into(),
        format!("{}/team-a/app", a.host),
        format!("{}/team-a/app", b.host),
        "--all-tags".into(),
    ];
    let mut child = Command::new(cli_binary())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    // Kill it as soon as it has started writing.
    lines.next().expect("progress").unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    let cache = tempfile::tempdir().unwrap();
    let err = verifier(&b, &root, cache.path(), &[])
        .verify(&b.image("team-a/app:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Pointer { .. }),
        "the pointer is written last: {err}"
    );

    ok(Command::new(cli_binary()).args(&args).output().unwrap());
    verifier(&b, &root, cache.path(), &[])
        .verify(&b.image("team-a/app:v1"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_copy_pulls_through_the_front_with_the_source_gone() {
    use containerd_tuf_transfer::{server, upstream::Upstream};
    use containerd_tuf_verifier::{engine::Engine, policy::Policy};
    use tuf_oci_tests::containerd::{Containerd, Version};

    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let (org, _) = source(&a).await;
    ok(tuf(
        &[
            "copy",
            &format!("{}/team-a/app:v1", a.host),
            &format!("{}/team-a/app:v1", b.host),
        ],
        &[&a.host, &b.host],
    ));
    drop(a);
    let dir = tempfile::tempdir().unwrap();
    let policy = tuf_oci_tests::write_policy(dir.path(), &b, &org, &["team-a/"], &[], "");
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let socket = dir.path().join("front.sock");
    let engine = std::sync::Arc::new(Engine::new(Policy::load(&policy).unwrap()).unwrap());
    let listener = containerd_tuf_verifier::server::bind(&socket).unwrap();
    tokio::spawn(server::serve(
        listener,
        Upstream::new(containerd.socket.clone()),
        engine,
        dir.path().to_path_buf(),
        std::future::pending(),
    ));
    let name = format!("{}/team-a/app:v1", b.host);
    let out = containerd
        .spawn_ctr_at(&socket, &["images", "pull", "--plain-http", &name])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(containerd.images().contains(&name));
}

#[tokio::test]
async fn bundles_verify_offline_and_deep_checks_find_tampered_layers() {
    let a = TestRegistry::start();
    let (_org, root) = source(&a).await;
    let dir = tempfile::tempdir().unwrap();
    let root_file = dir.path().join("root.json");
    std::fs::write(&root_file, &root).unwrap();
    let bundle = format!("oci-archive:{}", dir.path().join("bundle.tar").display());
    let layout = format!("oci:{}", dir.path().join("layout").display());
    ok(tuf(
        &[
            "copy",
            &format!("{}/team-a/app", a.host),
            &bundle,
            "--all-tags",
        ],
        &[&a.host],
    ));
    ok(tuf(
        &[
            "copy",
            &format!("{}/team-a/app", a.host),
            &layout,
            "--all-tags",
        ],
        &[&a.host],
    ));
    drop(a);
    let verify = |args: &[&str]| {
        Command::new(cli_binary())
            .arg("--root")
            .arg(&root_file)
            .arg("verify")
            .args(args)
            .output()
            .unwrap()
    };
    for image in [
        format!("{bundle}:team-a/app:v1"),
        format!("{bundle}:team-a/app:multi"),
        format!("{layout}:team-a/app:v1"),
    ] {
        ok(verify(&[&image, "--deep"]));
    }
    let out = verify(&[&format!("{layout}:team-a/app:v2")]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no trusted role signs target team-a/app:v2")
    );

    // Replace a layer blob on disk: the manifest still verifies, the deep check does not.
    let layer = tuf_oci_tests::layer_tar("signed");
    let digest = tuf_oci::layout::sha256_digest(&layer);
    let blob = dir
        .path()
        .join("layout/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::fs::write(&blob, tuf_oci_tests::layer_tar("tampered")).unwrap();
    ok(verify(&[&format!("{layout}:team-a/app:v1")]));
    let out = verify(&[&format!("{layout}:team-a/app:v1"), "--deep"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&digest) && err.contains("expected"), "{err}");

    // An archive missing a blob is named in the error, not the directory it was unpacked in.
    let (unpacked, cut) = (dir.path().join("unpacked"), dir.path().join("cut.tar"));
    std::fs::create_dir(&unpacked).unwrap();
    let tar = |args: &[&std::ffi::OsStr]| {
        let status = Command::new("tar").args(args).status().unwrap();
        assert!(status.success());
    };
    tar(&[
        "-xf".as_ref(),
        dir.path().join("bundle.tar").as_os_str(),
        "-C".as_ref(),
        unpacked.as_os_str(),
    ]);
    std::fs::remove_file(
        unpacked
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    tar(&[
        "-cf".as_ref(),
        cut.as_os_str(),
        "-C".as_ref(),
        unpacked.as_os_str(),
        "oci-layout".as_ref(),
        "index.json".as_ref(),
        "blobs".as_ref(),
    ]);
    let out = tuf(
        &[
            "copy",
            &format!("oci-archive:{}:team-a/app", cut.display()),
            &format!("oci:{}", dir.path().join("from-cut").display()),
            "--all-tags",
        ],
        &["localhost:1"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let named = format!("oci-archive:{}", cut.display());
    assert!(
        stderr.contains(&named) && stderr.contains(&digest),
        "{stderr}"
    );

    // A layout holding junk under a blob's name (edited by hand, or from elsewhere) has it
    // written anew by a copy: a blob is held only when its bytes hash to its name.
    let seeded = dir.path().join("seeded");
    std::fs::create_dir_all(seeded.join("blobs/sha256")).unwrap();
    std::fs::write(
        seeded.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        seeded.join("index.json"),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    std::fs::write(
        seeded
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
        b"junk",
    )
    .unwrap();
    // Nor is a link planted where the blob is written first followed.
    let victim = dir.path().join("victim");
    std::os::unix::fs::symlink(
        &victim,
        seeded
            .join("blobs/sha256")
            .join(format!("{}.tmp", digest.trim_start_matches("sha256:"))),
    )
    .unwrap();
    let seeded = format!("oci:{}", seeded.display());
    ok(tuf(
        &[
            "copy",
            &format!("{bundle}:team-a/app"),
            &seeded,
            "--all-tags",
        ],
        &["localhost:1"],
    ));
    ok(verify(&[&format!("{seeded}:team-a/app:v1"), "--deep"]));
    assert!(!victim.exists(), "written through a link");
}

#[tokio::test]
async fn copies_within_a_registry_mount_blobs() {
    let a = TestRegistry::start();
    let (_org, root) = source(&a).await;
    let out = ok(tuf(
        &[
            "copy",
            &format!("{}/team-a/app:v1", a.host),
            &format!("{}/prod/app:v1", a.host),
        ],
        &[&a.host],
    ));
    let mounted: usize = out
        .lines()
        .find(|l| l.contains(" mounted, "))
        .and_then(|l| l.split(", ").find(|p| p.ends_with(" mounted")))
        .and_then(|p| p.trim_end_matches(" mounted").parse().ok())
        .unwrap_or_else(|| panic!("no mount count in {out}"));
    assert!(mounted >= 2, "config and layer mounted: {out}");
    let cache = tempfile::tempdir().unwrap();
    verifier(&a, &root, cache.path(), &[("prod/app", "team-a/app")])
        .verify(&a.image("prod/app:v1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bundle_reads_a_role_by_its_digest_before_a_copy_beside_the_image() {
    // Anyone who could write to the image's part of a bundle could tag junk as the role's
    // version there: read first and found wrong, it stopped verification, though the
    // metadata repository holds the file snapshot names, by its digest.
    let a = TestRegistry::start();
    let (_org, root) = source(&a).await;
    let dir = tempfile::tempdir().unwrap();
    let root_file = dir.path().join("root.json");
    std::fs::write(&root_file, &root).unwrap();
    let layout = dir.path().join("layout");
    ok(tuf(
        &[
            "copy",
            &format!("{}/team-a/app:v1", a.host),
            &format!("oci:{}", layout.display()),
        ],
        &[&a.host],
    ));
    let store = LayoutStore::open(&layout, false).unwrap();
    let beside = store
        .tags("team-a/app")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|tag| {
            let (version, role) = tuf_oci::layout::parse_versioned_file(&tag)?;
            (role == "team-a").then_some((version, tag))
        })
        .max()
        .expect("the role's versions beside the image")
        .1;
    let junk = tuf_oci::layout::Entry::metadata_layer(b"{}");
    let manifest = tuf_oci::layout::metadata_manifest(&beside, &junk, None);
    store
        .put_blob(
            "team-a/app",
            tuf_oci::layout::EMPTY_MEDIA_TYPE,
            tuf_oci::layout::EMPTY_BLOB,
        )
        .await
        .unwrap();
    store
        .put_blob("team-a/app", &junk.media_type, b"{}")
        .await
        .unwrap();
    store
        .put_manifest(
            "team-a/app",
            &beside,
            &manifest,
            tuf_oci::layout::MANIFEST_MEDIA_TYPE,
        )
        .await
        .unwrap();
    store.save(&Default::default()).unwrap();
    drop(store);
    let out = Command::new(cli_binary())
        .arg("--root")
        .arg(&root_file)
        .arg("verify")
        .arg(format!("oci:{}:team-a/app:v1", layout.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("signed by team-a"), "{stderr}");
}

#[tokio::test]
async fn metadata_can_stay_remote() {
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let (_org, root) = source(&a).await;
    let out = ok(tuf(
        &[
            "copy",
            &format!("{}/team-a/app:v1", a.host),
            &format!("{}/team-a/app:v1", b.host),
            "--keep-metadata-remote",
        ],
        &[&a.host, &b.host],
    ));
    assert!(
        !out.contains("metadata repository at the destination"),
        "{out}"
    );
    assert!(b.client.tags(&b.repo("org/tuf")).await.unwrap().is_empty());
    let pointer = tuf_oci::source::metadata_repository(&b.client, &b.repo("team-a/app"))
        .await
        .unwrap();
    assert_eq!(pointer.to_string(), format!("{}/org/tuf", a.host));
    // Images from b, metadata from a.
    let both = tuf_oci::Registry::new(&tuf_oci::RegistryConfig {
        insecure_hosts: vec![a.host.clone(), b.host.clone()],
        timeout: std::time::Duration::from_secs(10),
    })
    .expect("registry client");
    let trust = TrustConfig {
        root,
        ..TrustConfig::default()
    };
    let verified = Verifier::new(both, trust)
        .unwrap()
        .verify(&b.image("team-a/app:v1"))
        .await
        .unwrap();
    assert_eq!(verified.role(), "team-a");
}

#[tokio::test]
async fn older_metadata_is_not_copied_over_newer() {
    // An old copy (an air-gap bundle of last month, a lagging mirror) copied again onto a
    // destination that has since received a newer state would undo its revocations.
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let old = TestRegistry::start();
    let (org, root) = source(&a).await;
    let hosts = [a.host.as_str(), b.host.as_str(), old.host.as_str()];
    let copy = |from: &TestRegistry, to: &TestRegistry| {
        tuf(
            &[
                "copy",
                &format!("{}/team-a/app", from.host),
                &format!("{}/team-a/app", to.host),
                "--all-tags",
            ],
            &hosts,
        )
    };
    ok(copy(&a, &old));
    org.publish(&a).await;
    ok(copy(&a, &b));
    let timestamp = || async { b.get_file(&b.repo("org/tuf"), "timestamp.json").await };
    let before = timestamp().await;

    let out = copy(&old, &b);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rollback of timestamp"), "{stderr}");
    assert_eq!(timestamp().await, before, "the destination keeps its state");
    let cache = tempfile::tempdir().unwrap();
    verifier(&b, &root, cache.path(), &[])
        .verify(&b.image("team-a/app:v1"))
        .await
        .unwrap();
    // The other way round is an ordinary update.
    ok(copy(&b, &old));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newer_timestamp_copied_meanwhile_is_not_overwritten() {
    // The check that the destination holds no newer timestamp is made before anything is
    // written; a copy takes long (blobs), and another copy of a newer state may finish
    // meanwhile. The timestamp, written last, is checked again just before.
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let old = TestRegistry::start();
    let (org, root) = source(&a).await;
    let hosts = [a.host.clone(), b.host.clone(), old.host.clone()];
    let copy = move |from: String, to: String| {
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        tuf(
            &[
                "copy",
                &format!("{from}/team-a/app"),
                &format!("{to}/team-a/app"),
                "--all-tags",
            ],
            &hosts,
        )
    };
    ok(copy(a.host.clone(), old.host.clone()));
    org.publish(&a).await;

    // The old state's copy is held before it writes the snapshot head...
    let (permits, arrived) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let hold = Rule::HoldWrites {
        path_suffix: "/manifests/snapshot.json".into(),
        permits: permits.clone(),
        arrived: arrived.clone(),
    };
    let proxy = HostileRegistry::start(&b.host, vec![hold]).await;
    let to_b = Registry::new(&RegistryConfig {
        insecure_hosts: vec![proxy.host.clone()],
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let (from, to) = (
        RegistryStore::new(old.client.clone(), old.host.clone()),
        RegistryStore::new(to_b, proxy.host.clone()),
    );
    let options = CopyOptions {
        tags: Tags::All,
        metadata: MetadataMode::Copy,
        dry_run: false,
        root: None,
        signed_as: Vec::new(),
    };
    let mut progress = |_: &str| {};
    let held = copy_repository(
        &from,
        "team-a/app",
        Some(&old.host),
        &to,
        "team-a/app",
        &options,
        &mut progress,
    );
    let meanwhile = async {
        for _ in 0..1000 {
            if arrived.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(arrived.load(Ordering::SeqCst), 1, "the held snapshot head");
        // ...while the newer state is copied whole.
        let (from, to) = (a.host.clone(), b.host.clone());
        ok(tokio::task::spawn_blocking(move || copy(from, to))
            .await
            .unwrap());
        let newer = b.get_file(&b.repo("org/tuf"), "timestamp.json").await;
        permits.add_permits(1000);
        newer
    };
    let (held, newer) = tokio::join!(held, meanwhile);
    let err = held.unwrap_err();
    assert!(
        matches!(err, Error::Rollback { ref role, .. } if role.starts_with("timestamp of")),
        "{err}"
    );
    assert_eq!(
        b.get_file(&b.repo("org/tuf"), "timestamp.json").await,
        newer,
        "the destination keeps the newer timestamp"
    );
    let cache = tempfile::tempdir().unwrap();
    verifier(&b, &root, cache.path(), &[])
        .verify(&b.image("team-a/app:v1"))
        .await
        .unwrap();
}

/// `tuf-oci copy --all-tags` of `team-a/app` between test registries, trusting a root.
struct TrustedCopy {
    /// Holds `root.json`.
    dir: tempfile::TempDir,
    hosts: Vec<String>,
}

impl TrustedCopy {
    fn new(root: &[u8], registries: &[&TestRegistry]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.json"), root).unwrap();
        let hosts = registries.iter().map(|r| r.host.clone()).collect();
        TrustedCopy { dir, hosts }
    }

    fn copy(&self, from: &TestRegistry, to: &TestRegistry) -> Output {
        let hosts: Vec<&str> = self.hosts.iter().map(String::as_str).collect();
        tuf(
            &[
                "--root",
                self.dir.path().join("root.json").to_str().unwrap(),
                "copy",
                &format!("{}/team-a/app", from.host),
                &format!("{}/team-a/app", to.host),
                "--all-tags",
            ],
            &hosts,
        )
    }
}

/// A rule serving `repository:tag` of `registry` as `edit` changes its manifest.
async fn edited(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Rule {
    let stored = registry
        .client
        .manifest(&registry.repo(repository).tagged(tag), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&stored.bytes).unwrap();
    edit(&mut manifest);
    Rule::Replace {
        path_suffix: format!("/{repository}/manifests/{tag}"),
        body: serde_json::to_vec(&manifest).unwrap(),
        content_type: tuf_oci::layout::MANIFEST_MEDIA_TYPE.into(),
    }
}

// Two workers: the proxy answers while the test waits for the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_trusted_root_only_the_files_verified_are_written() {
    // Verified, the source's metadata is written as it was read. A root of the chain, or a
    // version file at the version verified, that is not that file (another file, or one
    // readers refuse: two layers) is refused in the metadata repository, and left out where
    // it is attached to an image (verification reads it from the metadata repository). The
    // trusted root is compared as JSON.
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let c = TestRegistry::start();
    let (_org, root) = source(&a).await;
    let dir = tempfile::tempdir().unwrap();
    let root_file = dir.path().join("root.json");
    // Formatted anew (by hand, say): the same root, and the source's copy of it is written.
    let reformatted: serde_json::Value = serde_json::from_slice(&root).unwrap();
    std::fs::write(&root_file, serde_json::to_vec_pretty(&reformatted).unwrap()).unwrap();
    let copy = |from: &str, to: &TestRegistry| {
        tuf(
            &[
                "--root",
                root_file.to_str().unwrap(),
                "copy",
                &format!("{from}/team-a/app"),
                &format!("{}/team-a/app", to.host),
                "--all-tags",
            ],
            &[from, &to.host],
        )
    };

    // The newest team-a file attached to v1 (the version verified).
    let attached = a
        .client
        .tags(&a.repo("team-a/app"))
        .await
        .unwrap()
        .into_iter()
        .filter(|tag| tag.starts_with("ref-") && tag.ends_with(".team-a.json"))
        .max_by_key(|tag| tag.rsplit('-').next().unwrap().to_string())
        .expect("an attached team-a file");
    let two_layers = |manifest: &mut serde_json::Value| {
        let layer = manifest["layers"][0].clone();
        manifest["layers"].as_array_mut().unwrap().push(layer);
    };
    let rule = edited(&a, "team-a/app", &attached, two_layers).await;
    // The same file stored beside it, and named in v1's referrers index too.
    let Rule::Replace { body: bytes, .. } = &rule else {
        unreachable!()
    };
    let app = a.repo("team-a/app");
    let junk = tuf_oci::layout::Entry::of(tuf_oci::layout::MANIFEST_MEDIA_TYPE, bytes);
    a.client
        .push_manifest(&app.digested(&junk.digest), bytes, &junk.media_type)
        .await
        .unwrap();
    let v1 = a.client.manifest(&app.tagged("v1"), 1 << 20).await.unwrap();
    let referrers = tuf_oci::layout::referrers_tag(&v1.unwrap().digest);
    let index = a.client.manifest(&app.tagged(&referrers), 1 << 20).await;
    let mut index: serde_json::Value =
        serde_json::from_slice(&index.unwrap().unwrap().bytes).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::to_value(&junk).unwrap());
    let index = Rule::Replace {
        path_suffix: format!("/team-a/app/manifests/{referrers}"),
        body: serde_json::to_vec(&index).unwrap(),
        content_type: tuf_oci::layout::INDEX_MEDIA_TYPE.into(),
    };
    let proxy = HostileRegistry::start(&a.host, vec![rule, index]).await;
    let stderr = ok(copy(&proxy.host, &b));
    assert!(
        stderr.contains(&format!(
            "left out team-a/app:{attached}: not the file verified"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "left out team-a/app@{} from {referrers}",
            junk.digest
        )),
        "{stderr}"
    );
    let copied = b.repo("team-a/app").digested(&junk.digest);
    let written = b.client.manifest(&copied, 1 << 20).await.unwrap();
    assert!(written.is_none(), "the file not verified was written");
    let cache = tempfile::tempdir().unwrap();
    verifier(&b, &root, cache.path(), &[])
        .verify(&b.image("team-a/app:v1"))
        .await
        .unwrap();

    let rule = edited(&a, "org/tuf", "1.root.json", |manifest| {
        let other = tuf_oci::layout::Entry::metadata_layer(b"{}");
        let layer = &mut manifest["layers"][0];
        layer["digest"] = other.digest.into();
        layer["size"] = other.size.into();
        layer["data"] = other.data.into();
    })
    .await;
    let proxy = HostileRegistry::start(&a.host, vec![rule]).await;
    let out = copy(&proxy.host, &c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("org/tuf:1.root.json") && stderr.contains("not the file verified"),
        "{stderr}"
    );
}

#[tokio::test]
async fn with_a_trusted_root_forgeries_are_neither_copied_nor_obeyed() {
    // A copy carries metadata it otherwise takes on trust: a forged timestamp of a huge
    // version, copied blindly, would hold every later copy back as older. Given the trusted
    // root, the copy verifies its source before writing, and at the destination counts only
    // what that root signs.
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let c = TestRegistry::start();
    let (org, root) = source(&a).await;
    let trusted = TrustedCopy::new(&root, &[&a, &b, &c]);
    let copy = |from: &TestRegistry, to: &TestRegistry| trusted.copy(from, to);
    ok(copy(&a, &b));
    let forged = {
        let current = a.get_file(&org.metadata, "timestamp.json").await;
        let mut forged: serde_json::Value = serde_json::from_slice(&current).unwrap();
        forged["signed"]["version"] = (1u64 << 40).into();
        serde_json::to_vec(&forged).unwrap()
    };

    // Junk at the destination holds nothing back.
    b.put_file(&b.repo("org/tuf"), "timestamp.json", &forged)
        .await;
    org.publish(&a).await;
    ok(copy(&a, &b));
    let cache = tempfile::tempdir().unwrap();
    verifier(&b, &root, cache.path(), &[])
        .verify(&b.image("team-a/app:v1"))
        .await
        .unwrap();

    // A forged source is refused before anything is written.
    a.put_file(&org.metadata, "timestamp.json", &forged).await;
    let out = copy(&a, &c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("timestamp metadata fails signature verification"),
        "{stderr}"
    );
    let written = c
        .client
        .manifest(&c.repo("team-a/app").tagged("v1"), 1 << 20)
        .await
        .unwrap();
    assert!(written.is_none(), "the copy wrote to the destination");
}

/// Given the trusted root, image tags are copied as the verified metadata signs them, the
/// source's tags never trusted: a tag moved in the source is refused with the destination's
/// left as it was, a tag signed nowhere is refused by name and left out of `--all-tags`, and
/// a copy of a copy made under another name checks its tags under the names `--signed-as`
/// gives.
#[tokio::test]
async fn with_a_trusted_root_image_tags_are_copied_as_signed() {
    let (a, b, c) = (
        TestRegistry::start(),
        TestRegistry::start(),
        TestRegistry::start(),
    );
    let (org, root) = source(&a).await;
    let dir = tempfile::tempdir().unwrap();
    let root_file = dir.path().join("root.json");
    std::fs::write(&root_file, &root).unwrap();
    let hosts = [a.host.as_str(), b.host.as_str(), c.host.as_str()];
    let copy = |args: &[&str]| {
        let mut all = vec!["--root", root_file.to_str().unwrap()];
        all.extend_from_slice(args);
        tuf(&all, &hosts)
    };
    let refused = |out: Output, reason: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
    };
    let at = |registry: &TestRegistry, path: &str| format!("{}/{path}", registry.host);
    // A role delegated dev-* tags and not published yet: a search for dev-1 meets it.
    let dev = org.key("dev").await;
    org.delegate(
        &a,
        "targets",
        &org.targets_key().await,
        &delegation("dev", &["team-a/app:dev-*"], &[&dev], 1),
    )
    .await;
    org.publish(&a).await;
    a.push_image("team-a/app", "dev-1", "dev").await;

    let out = ok(copy(&[
        "copy",
        &at(&a, "team-a/app"),
        &at(&b, "team-a/app"),
        "--all-tags",
    ]));
    assert!(
        out.contains("left out team-a/app:v2: no trusted role signs target team-a/app:v2"),
        "{out}"
    );
    assert!(out.contains("left out team-a/app:dev-1: "), "{out}");
    assert_eq!(b.tagged_digest("team-a/app", "v2").await, None);
    refused(
        copy(&["copy", &at(&a, "team-a/app:v2"), &at(&b, "team-a/app:v2")]),
        "no trusted role signs target team-a/app:v2",
    );

    // A copy of a copy made under another name.
    ok(copy(&[
        "copy",
        &at(&b, "team-a/app:v1"),
        &at(&b, "prod/app:v1"),
    ]));
    for reason in [
        "no trusted role signs target prod/app:v1",
        "--signed-as LOCAL=SIGNED",
    ] {
        refused(
            copy(&["copy", &at(&b, "prod/app:v1"), &at(&c, "prod/app:v1")]),
            reason,
        );
    }
    refused(
        copy(&[
            "copy",
            &at(&b, "prod/app"),
            &at(&c, "prod/app"),
            "--all-tags",
        ]),
        "--signed-as prod/app=",
    );
    assert_eq!(c.tagged_digest("prod/app", "v1").await, None);
    ok(copy(&[
        "--signed-as",
        "prod/app=team-a/app",
        "copy",
        &at(&b, "prod/app:v1"),
        &at(&c, "prod/app:v1"),
    ]));
    let cache = tempfile::tempdir().unwrap();
    verifier(&c, &root, cache.path(), &[("prod/app", "team-a/app")])
        .verify(&c.image("prod/app:v1"))
        .await
        .unwrap();

    // The source's v1 moved to other content: refused, by name and with --all-tags, before
    // anything is written (v0, signed and new, is not either).
    let signed = b.tagged_digest("team-a/app", "v1").await;
    a.push_image("team-a/app", "v0", "zero").await;
    org.sign(
        &a,
        &a.image("team-a/app:v0"),
        "team-a",
        &[org.key("team-a").await],
    )
    .await;
    org.publish(&a).await;
    a.push_image("team-a/app", "v1", "moved").await;
    for args in [
        ["copy", &at(&a, "team-a/app:v1"), &at(&b, "team-a/app:v1")].as_slice(),
        &[
            "copy",
            &at(&a, "team-a/app"),
            &at(&b, "team-a/app"),
            "--all-tags",
        ],
    ] {
        refused(copy(args), "team-a/app:v1 in ");
        refused(copy(args), ", but TUF signed ");
    }
    assert!(signed.is_some());
    assert_eq!(b.tagged_digest("team-a/app", "v1").await, signed);
    assert_eq!(b.tagged_digest("team-a/app", "v0").await, None);
}

/// Anyone who can push to an image repository can tag junk there under the name of the
/// role version kept beside its images; readers read that version from the metadata
/// repository by digest and pass over the junk, and so does a verified copy, which leaves it
/// out instead of failing.
#[tokio::test]
async fn with_a_trusted_root_junk_beside_the_images_is_left_out() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let (org, root) = source(&a).await;
    let version = craft::published(&a, &org).await.snapshot.signed.meta["team-a.json"].version;
    let file = format!("{version}.team-a.json");
    a.put_file(&a.repo("team-a/app"), &file, b"{\"junk\": true}")
        .await;
    let trusted = TrustedCopy::new(&root, &[&a, &b]);
    let out = ok(trusted.copy(&a, &b));
    assert!(
        out.contains(&format!(
            "left out team-a/app:{file}: not the file verified"
        )),
        "{out}"
    );
    let cache = tempfile::tempdir().unwrap();
    verifier(&b, &root, cache.path(), &[])
        .verify(&b.image("team-a/app:v1"))
        .await
        .unwrap();
}

// Two workers: the proxy answers while the test waits for the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_in_a_referrers_index_does_not_stop_a_copy() {
    // Whoever can push to a repository can add entries naming nothing to an image's referrers
    // index (tag schema). It is a discovery aid: the copy keeps what the source holds.
    use tuf_oci_tests::hostile::{HostileRegistry, Rule};
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let (_org, root) = source(&a).await;
    let repo = a.repo("team-a/app");
    let v1 = a
        .client
        .manifest(&repo.tagged("v1"), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let referrers = tuf_oci::layout::referrers_tag(&v1.digest);
    let index = a
        .client
        .manifest(&repo.tagged(&referrers), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let mut poisoned: serde_json::Value = serde_json::from_slice(&index.bytes).unwrap();
    // A manifest the source lacks, and a tag where a digest belongs.
    for junk in [format!("sha256:{}", "0".repeat(64)), "tuf-metadata".into()] {
        poisoned["manifests"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": tuf_oci::layout::MANIFEST_MEDIA_TYPE,
                "digest": junk,
                "size": 1,
            }));
    }
    let proxy = HostileRegistry::start(
        &a.host,
        vec![Rule::Replace {
            path_suffix: format!("/manifests/{referrers}"),
            body: serde_json::to_vec(&poisoned).unwrap(),
            content_type: tuf_oci::layout::INDEX_MEDIA_TYPE.into(),
        }],
    )
    .await;
    ok(tuf(
        &[
            "copy",
            &format!("{}/team-a/app", proxy.host),
            &format!("{}/team-a/app", b.host),
            "--all-tags",
        ],
        &[&proxy.host, &b.host],
    ));
    let copied = b
        .client
        .manifest(&b.repo("team-a/app").tagged(&referrers), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        copied.bytes, index.bytes,
        "the source's own entries, and no junk"
    );
    let cache = tempfile::tempdir().unwrap();
    verifier(&b, &root, cache.path(), &[])
        .verify(&b.image("team-a/app:v1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_referrers_index_copied_again_keeps_what_the_destination_added() {
    // Another tool (a signature made at the destination, say) adds to an image's referrers
    // index there; the source then attaches a new role version to the image, and the copy is
    // run again: both are in the index it leaves.
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let (org, root) = source(&a).await;
    let hosts = [a.host.as_str(), b.host.as_str()];
    let copy = || {
        ok(tuf(
            &[
                "copy",
                &format!("{}/team-a/app", a.host),
                &format!("{}/team-a/app", b.host),
                "--all-tags",
            ],
            &hosts,
        ))
    };
    copy();
    let at_b = b.repo("team-a/app");
    let v1 = b
        .client
        .manifest(&at_b.tagged("v1"), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let referrers = at_b.tagged(&tuf_oci::layout::referrers_tag(&v1.digest));
    async fn index(registry: &TestRegistry, subject: &str) -> tuf_oci::layout::Manifest {
        let tagged = registry
            .repo("team-a/app")
            .tagged(&tuf_oci::layout::referrers_tag(subject));
        let stored = registry
            .client
            .manifest(&tagged, 1 << 20)
            .await
            .unwrap()
            .unwrap();
        tuf_oci::layout::Manifest::parse("referrers", &stored.bytes).unwrap()
    }
    // The other tool's referrer: one of the copy's, annotated anew.
    let mut index_at_b = index(&b, &v1.digest).await;
    let attached = b
        .client
        .manifest(&at_b.digested(&index_at_b.manifests[0].digest), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let mut other: serde_json::Value = serde_json::from_slice(&attached.bytes).unwrap();
    other["annotations"] = serde_json::json!({"org.example.tool": "signature"});
    let other = serde_json::to_vec(&other).unwrap();
    let other_digest = tuf_oci::layout::sha256_digest(&other);
    let mut entry = index_at_b.manifests[0].clone();
    entry.digest = other_digest.clone();
    entry.size = other.len() as u64;
    b.client
        .push_manifest(
            &at_b.digested(&other_digest),
            &other,
            tuf_oci::layout::MANIFEST_MEDIA_TYPE,
        )
        .await
        .unwrap();
    index_at_b.manifests.push(entry);
    b.client
        .push_manifest(
            &referrers,
            &tuf_oci::layout::index(&index_at_b.manifests, &index_at_b.annotations),
            tuf_oci::layout::INDEX_MEDIA_TYPE,
        )
        .await
        .unwrap();

    org.sign(
        &a,
        &a.image("team-a/app:v1"),
        "team-a",
        &[org.key("team-a").await],
    )
    .await;
    org.publish(&a).await;
    copy();
    let digests = |index: tuf_oci::layout::Manifest| {
        index
            .manifests
            .into_iter()
            .map(|m| m.digest)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let mut expected = digests(index(&a, &v1.digest).await);
    assert!(
        expected.len() > index_at_b.manifests.len() - 1,
        "a new role version attached"
    );
    expected.insert(other_digest);
    assert_eq!(digests(index(&b, &v1.digest).await), expected);
    drop(a);
    let cache = tempfile::tempdir().unwrap();
    verifier(&b, &root, cache.path(), &[])
        .verify(&b.image("team-a/app:v1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_layout_or_archive_being_written_is_not_written_by_a_second_copy() {
    // A layout's index.json is read when a copy opens it and written whole when it ends: a
    // second copy in between would lose the first's tags.
    let a = TestRegistry::start();
    let (_org, _root) = source(&a).await;
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let copy = || {
        tuf(
            &[
                "copy",
                &format!("{}/team-a/app:v1", a.host),
                &format!("oci:{}", layout.display()),
            ],
            &[&a.host],
        )
    };
    let writing = tuf_oci::store::LayoutStore::open(&layout, true).unwrap();
    let out = copy();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("locked by another process"), "{stderr}");
    drop(writing);
    ok(copy());

    // An archive is read and written anew whole: a lock file beside it is held meanwhile.
    let archive = format!("oci-archive:{}", dir.path().join("bundle.tar").display());
    let lock = dir.path().join(".bundle.tar.lock");
    let writing = std::fs::File::create(&lock).unwrap();
    tuf_oci::store::lock_file(&writing, &lock).unwrap();
    let out = tuf(
        &["copy", &format!("{}/team-a/app:v1", a.host), &archive],
        &[&a.host],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("locked by another process"), "{stderr}");
    // Another archive in the same directory is not held up.
    let other = format!("oci-archive:{}", dir.path().join("other.tar").display());
    ok(tuf(
        &["copy", &format!("{}/team-a/app:v1", a.host), &other],
        &[&a.host],
    ));
    drop(writing);

    // A lock name planted as a symbolic link (a shared directory) makes nor takes a lock
    // through it, whether the file it names exists or not.
    let victim = dir.path().join("victim");
    let planted = dir.path().join(".third.tar.lock");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let third = format!("oci-archive:{}", dir.path().join("third.tar").display());
    let copy_third = || {
        tuf(
            &["copy", &format!("{}/team-a/app:v1", a.host), &third],
            &[&a.host],
        )
    };
    for _ in 0..2 {
        let out = copy_third();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("no plain file"), "{stderr}");
        // The second time, the file it names exists.
        assert!(!dir.path().join("third.tar").exists());
        std::fs::write(&victim, b"kept").unwrap();
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"kept");
    // Nor does a FIFO planted there hold the copy up.
    std::fs::remove_file(&planted).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&planted)
        .status()
        .unwrap();
    assert!(made.success());
    let out = copy_third();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no plain file"), "{stderr}");
}

#[tokio::test]
async fn with_a_trusted_root_a_destination_past_a_key_rotation_is_not_rolled_back() {
    // The timestamp key rotates (root 2) and its versions start again; a mirror takes the new
    // state. A bundle made before holds root 1, whose keys do not sign the mirror's
    // timestamp: that timestamp is no junk, since the mirror's root chain leads past the
    // bundle's, and the older bundle must not go over it.
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let old = TestRegistry::start();
    let (org, root) = source(&a).await;
    let trusted = TrustedCopy::new(&root, &[&a, &b, &old]);
    let copy = |from: &TestRegistry, to: &TestRegistry| trusted.copy(from, to);
    ok(copy(&a, &old));
    let (fresh, new_root) =
        tuf_oci_tests::craft::rotate_to_new_key(&a, &org, tough::schema::RoleType::Timestamp).await;
    tuf_oci_tests::craft::forge_timestamp(&a, &org, &new_root.signed, &[fresh], |restarted| {
        restarted.version = std::num::NonZeroU64::MIN;
    })
    .await;
    ok(copy(&a, &b));
    let timestamp = || async { b.get_file(&b.repo("org/tuf"), "timestamp.json").await };
    let before = timestamp().await;

    let out = copy(&old, &b);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rollback of root of"), "{stderr}");
    assert_eq!(timestamp().await, before, "the destination keeps its state");
}

#[tokio::test]
async fn with_a_trusted_root_files_past_the_verified_state_are_left_out() {
    // Whoever can push to the source can add a file of a version not published yet. Copied,
    // it would take the real one's place at the destination, where versioned files are
    // written once, and hold back every later copy.
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let (org, root) = source(&a).await;
    a.put_file(&org.metadata, "99.snapshot.json", b"{}").await;
    // Signed but not published yet: a targets version and its head past the verified state.
    a.push_image("other/app", "v1", "other").await;
    org.sign_in_targets(&a, "other/app:v1").await;
    // The same for a delegated role's version, attached to the image it signs.
    let team_a = [org.key("team-a").await];
    org.sign(&a, &a.image("team-a/app:v2"), "team-a", &team_a)
        .await;
    let out = ok(TrustedCopy::new(&root, &[&a, &b]).copy(&a, &b));
    assert!(out.contains("left out org/tuf:99.snapshot.json"), "{out}");
    assert!(out.contains("left out org/tuf:targets.json"), "{out}");
    let image_tags = b.client.tags(&b.repo("team-a/app")).await.unwrap();
    assert!(
        image_tags.iter().any(|t| t.ends_with("-1.team-a.json"))
            && !image_tags.iter().any(|t| t.ends_with("2.team-a.json")),
        "{image_tags:?}"
    );
    // Nor is it written as an entry of v2's referrers index, which names it at the source.
    let manifest = |registry: &TestRegistry, reference: &str| {
        let (repository, reference) = (registry.repo("team-a/app"), reference.to_string());
        let client = registry.client.clone();
        async move {
            let reference = match reference.strip_prefix('@') {
                Some(digest) => repository.digested(digest),
                None => repository.tagged(&reference),
            };
            client.manifest(&reference, 1 << 20).await.unwrap()
        }
    };
    let unpublished = a.client.tags(&a.repo("team-a/app")).await.unwrap();
    let unpublished = unpublished
        .iter()
        .find(|t| t.starts_with("ref-") && t.ends_with("-2.team-a.json"))
        .expect("attached at the source");
    let unpublished = manifest(&a, unpublished).await.unwrap().digest;
    let v2 = manifest(&a, "v2").await.unwrap().digest;
    let referrers = tuf_oci::layout::referrers_tag(&v2);
    let names_it = |index: Option<tuf_oci::registry::FetchedManifest>| {
        let index = index.expect("a referrers index");
        tuf_oci::layout::Manifest::parse("referrers", &index.bytes)
            .unwrap()
            .manifests
            .iter()
            .any(|entry| entry.digest == unpublished)
    };
    assert!(names_it(manifest(&a, &referrers).await));
    assert!(
        out.contains(&format!(
            "left out team-a/app@{unpublished} from {referrers}"
        )),
        "{out}"
    );
    assert!(!names_it(manifest(&b, &referrers).await));
    let written = manifest(&b, &format!("@{unpublished}")).await;
    assert!(written.is_none(), "the unpublished file was written");
    let tags = b.client.tags(&b.repo("org/tuf")).await.unwrap();
    assert!(!tags.iter().any(|t| t == "99.snapshot.json"), "{tags:?}");
    let published = craft::published(&a, &org).await;
    let named = published.snapshot.signed.meta["targets.json"].version.get();
    assert!(
        tags.iter().any(|t| *t == format!("{named}.targets.json"))
            && !tags
                .iter()
                .any(|t| *t == format!("{}.targets.json", named + 1)),
        "{tags:?}"
    );
    let cache = tempfile::tempdir().unwrap();
    verifier(&b, &root, cache.path(), &[])
        .verify(&b.image("team-a/app:v1"))
        .await
        .unwrap();
}

/// A copy writes metadata in the order a publish does, whatever order its source lists it in:
/// version files first, then the heads, and the timestamp last, so a copy cut short never
/// leaves a timestamp naming a snapshot the destination lacks.
#[tokio::test]
async fn metadata_is_copied_version_files_first_and_the_timestamp_last() {
    let a = TestRegistry::start();
    solo(&a, true).await;
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    ok(tuf(
        &[
            "copy",
            &format!("{}/solo/app:v1", a.host),
            &format!("oci:{}", first.display()),
        ],
        &[&a.host],
    ));
    // Another tool rewrote the layout's index, its entries in reverse order.
    let entries = |layout: &Path| -> Vec<String> {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["annotations"][tuf_oci::store::REF_NAME].as_str())
            .map(str::to_string)
            .collect()
    };
    let index_file = first.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_file).unwrap()).unwrap();
    index["manifests"].as_array_mut().unwrap().reverse();
    std::fs::write(&index_file, serde_json::to_vec(&index).unwrap()).unwrap();
    let listed = entries(&first);
    let at = |name: &str| listed.iter().position(|n| n == name).unwrap();
    assert!(at("solo/app:timestamp.json") < at("solo/app:1.root.json"));

    let second = dir.path().join("second");
    ok(tuf(
        &[
            "copy",
            &format!("oci:{}:solo/app:v1", first.display()),
            &format!("oci:{}", second.display()),
        ],
        &[],
    ));
    let written: Vec<String> = entries(&second)
        .into_iter()
        .filter_map(|name| Some(name.strip_prefix("solo/app:")?.to_string()))
        .filter(|tag| tag.ends_with(".json"))
        .collect();
    let versions = written
        .iter()
        .filter(|tag| tuf_oci::layout::parse_versioned_file(tag).is_some())
        .count();
    assert!(versions >= 4, "{written:?}");
    assert!(
        written[..versions]
            .iter()
            .all(|tag| tuf_oci::layout::parse_versioned_file(tag).is_some()),
        "heads before versions: {written:?}"
    );
    assert_eq!(written.last().unwrap(), "timestamp.json", "{written:?}");
}
