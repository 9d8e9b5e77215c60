//! Hostile OCI layouts and archives (`oci:DIR`, `oci-archive:FILE`, imports through the front,
//! which runs as root): links are never followed and oversized files are never read whole. No
//! registry needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tuf_oci::Error;
use tuf_oci::layout::{MANIFEST_MEDIA_TYPE, METADATA_TAG};
use tuf_oci::store::{ContentStore, LayoutStore, Unpacked};

const REPOSITORY: &str = "team-a/app";
/// The limit `tuf-metadata` is read with here (a metadata manifest's).
const LIMIT: u64 = 64 * 1024;

/// A layout at `dir` whose `team-a/app:tuf-metadata` entry names a small manifest. Returns the
/// manifest's digest and the path of its blob.
async fn layout(dir: &Path) -> (String, PathBuf) {
    let store = LayoutStore::open(dir, true).unwrap();
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2
        },
        "layers": []
    }))
    .unwrap();
    store
        .put_manifest(REPOSITORY, METADATA_TAG, &bytes, MANIFEST_MEDIA_TYPE)
        .await
        .unwrap();
    store.save(&BTreeMap::new()).unwrap();
    let digest = tuf_oci::layout::sha256_digest(&bytes);
    let hex = digest.strip_prefix("sha256:").unwrap();
    let blob = dir.join("blobs/sha256").join(hex);
    assert!(blob.is_file());
    (digest, blob)
}

/// Peak resident memory of this process (Linux), in bytes.
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// How a hostile archive's blob entry is made.
#[derive(Debug, Clone, Copy)]
enum Bad {
    SymlinkToDevZero,
    SymlinkToHostFile,
    HardLink,
    Device,
    Fifo,
}

/// A tar of the layout at `dir` with the blob at `blob` replaced by a `bad` entry of that name.
fn archive_with(dir: &Path, blob: &Path, bad: Bad, out: &Path) -> String {
    let name = format!(
        "blobs/sha256/{}",
        blob.file_name().unwrap().to_str().unwrap()
    );
    let mut builder = tar::Builder::new(std::fs::File::create(out).unwrap());
    builder.follow_symlinks(false);
    for file in ["oci-layout", "index.json"] {
        builder.append_path_with_name(dir.join(file), file).unwrap();
    }
    builder
        .append_dir("blobs/sha256", dir.join("blobs/sha256"))
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(0);
    header.set_mode(0o644);
    match bad {
        Bad::SymlinkToDevZero => {
            header.set_entry_type(tar::EntryType::Symlink);
            builder
                .append_link(&mut header, &name, "/dev/zero")
                .unwrap();
        }
        Bad::SymlinkToHostFile => {
            header.set_entry_type(tar::EntryType::Symlink);
            builder
                .append_link(&mut header, &name, "/etc/hostname")
                .unwrap();
        }
        Bad::HardLink => {
            header.set_entry_type(tar::EntryType::Link);
            builder
                .append_link(&mut header, &name, "oci-layout")
                .unwrap();
        }
        Bad::Device => {
            header.set_entry_type(tar::EntryType::Char);
            header.set_device_major(1).unwrap();
            header.set_device_minor(5).unwrap();
            builder.append_data(&mut header, &name, &[][..]).unwrap();
        }
        Bad::Fifo => {
            header.set_entry_type(tar::EntryType::Fifo);
            builder.append_data(&mut header, &name, &[][..]).unwrap();
        }
    }
    builder.into_inner().unwrap();
    name
}

#[tokio::test]
async fn links_and_special_files_in_archives_are_left_out() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let (digest, blob) = layout(&source).await;

    // The same archive with the blob as a regular file unpacks and reads.
    let good = work.path().join("good.tar");
    tuf_oci::store::pack(&source, &good, &[]).unwrap();
    let unpacked = work.path().join("good");
    tuf_oci::store::unpack(&good, &unpacked, Unpacked::Layout).unwrap();
    let store = LayoutStore::open(&unpacked, false).unwrap();
    let stored = store
        .manifest(REPOSITORY, METADATA_TAG, LIMIT)
        .await
        .unwrap()
        .expect("the unpacked layout has tuf-metadata");
    assert_eq!(stored.digest, digest);

    for bad in [
        Bad::SymlinkToDevZero,
        Bad::SymlinkToHostFile,
        Bad::HardLink,
        Bad::Device,
        Bad::Fifo,
    ] {
        let archive = work.path().join(format!("{bad:?}.tar"));
        let name = archive_with(&source, &blob, bad, &archive);
        let dir = work.path().join(format!("{bad:?}"));
        let started = std::time::Instant::now();
        // The rest unpacks (docker save writes symlinks beside its layout)...
        tuf_oci::store::unpack(&archive, &dir, Unpacked::Layout)
            .unwrap_or_else(|e| panic!("{bad:?}: {e}"));
        assert!(
            std::fs::symlink_metadata(dir.join(&name)).is_err(),
            "{bad:?}: the entry was created"
        );
        // ...and the blob that was a link is missing, not read through it.
        let store = LayoutStore::open(&dir, false).unwrap();
        let read = store.manifest(REPOSITORY, METADATA_TAG, LIMIT).await;
        assert!(matches!(read, Ok(None)), "{bad:?}: {read:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}

#[tokio::test]
async fn archives_read_give_their_layout_only() {
    // An import's archive comes from anywhere, and the front unpacking it runs as root beside
    // containerd: a file nested thousands of directories deep, or a million directory
    // entries (kept in memory to be made last), would cost inodes and memory far beyond the
    // archive's size. Only the layout's files are taken; an archive a copy adds to keeps
    // its other files.
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let (digest, _) = layout(&source).await;
    let archive = work.path().join("archive.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    builder.append_dir_all(".", &source).unwrap();
    let mut file = |name: &str, entry_type: tar::EntryType| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_size(0);
        header.set_mode(0o755);
        builder.append_data(&mut header, name, &[][..]).unwrap();
    };
    let deep = format!("{}x", "d/".repeat(200));
    file(&deep, tar::EntryType::Regular);
    file("manifest.json", tar::EntryType::Regular);
    file("blobs/sha256/not-a-digest", tar::EntryType::Regular);
    for i in 0..1000 {
        file(&format!("dir{i}"), tar::EntryType::Directory);
    }
    // `docker save`'s legacy layer links beside the layout, and links under the layout's
    // names however spelt, or leading out.
    // Names written into the header as they are (the tar crate refuses `/` and `..`).
    let mut link = |name: &str, target: &str| {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_cksum();
        builder.append(&header, &[][..]).unwrap();
    };
    link("legacy/layer.tar", "../blobs/sha256/00");
    link("blobs/sha256/linked", "/etc/passwd");
    link("/oci-layout", "/etc/passwd");
    link("././index.json", "/etc/shadow");
    link("../outside", "/etc/shadow");
    link("manifest.json", "/etc/shadow");
    link("no-target", "");
    // Named with a leading `./`, as `tar -C layout -cf - .` writes (the tar crate would
    // drop it: the name goes into the header as it is).
    let extra = b"extra blob";
    let extra_hex = tuf_oci::layout::sha256_digest(extra)["sha256:".len()..].to_string();
    let mut header = tar::Header::new_gnu();
    let name = format!("./blobs/sha256/{extra_hex}");
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_size(extra.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder.append(&header, &extra[..]).unwrap();
    builder.into_inner().unwrap();

    let read = work.path().join("read");
    tuf_oci::store::unpack(&archive, &read, Unpacked::Layout).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&read)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["blobs", "index.json", "oci-layout"]);
    let blobs = std::fs::read_dir(read.join("blobs/sha256")).unwrap();
    let extra_read = std::fs::read(read.join("blobs/sha256").join(&extra_hex)).unwrap();
    assert_eq!(extra_read, extra);
    assert!(
        blobs
            .map(|b| b.unwrap().file_name())
            .all(|name| name.len() == 64)
    );
    let store = LayoutStore::open(&read, false).unwrap();
    let stored = store
        .manifest(REPOSITORY, METADATA_TAG, LIMIT)
        .await
        .unwrap();
    assert_eq!(stored.expect("tuf-metadata").digest, digest);

    let added_to = work.path().join("added-to");
    tuf_oci::store::unpack(&archive, &added_to, Unpacked::Files).unwrap();
    // Links are never made on disk; the one beside the layout is kept aside, and packed again.
    let links = tuf_oci::store::kept_links(&archive, &added_to).unwrap();
    assert_eq!(
        links,
        [tuf_oci::store::Link {
            path: "legacy/layer.tar".into(),
            target: "../blobs/sha256/00".into(),
        }]
    );
    assert!(std::fs::symlink_metadata(added_to.join("legacy/layer.tar")).is_err());
    let repacked = work.path().join("repacked.tar");
    tuf_oci::store::pack(&added_to, &repacked, &links).unwrap();
    let mut entries = tar::Archive::new(std::fs::File::open(&repacked).unwrap());
    let packed: Vec<(String, String)> = entries
        .entries()
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.header().entry_type() == tar::EntryType::Symlink)
        .map(|entry| {
            let target = entry.link_name().unwrap().unwrap().display().to_string();
            (entry.path().unwrap().display().to_string(), target)
        })
        .collect();
    assert_eq!(
        packed,
        [(
            "legacy/layer.tar".to_string(),
            "../blobs/sha256/00".to_string()
        )]
    );
    assert!(added_to.join("manifest.json").is_file());
    assert!(added_to.join(&deep).is_file());
    assert!(
        !added_to.join("dir0").exists(),
        "directory entries are not made"
    );
}

#[tokio::test]
async fn layout_blobs_are_not_read_through_links() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    let (digest, blob) = layout(&dir).await;
    // The link leads to the right bytes, and still is not followed.
    let elsewhere = work.path().join("elsewhere");
    std::fs::rename(&blob, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &blob).unwrap();

    let store = LayoutStore::open(&dir, false).unwrap();
    let manifest = store.manifest(REPOSITORY, METADATA_TAG, LIMIT).await;
    refused(manifest, &blob, "manifest");
    refused(store.blob(REPOSITORY, &digest, LIMIT).await, &blob, "blob");
    let stream = store.open_blob(REPOSITORY, &digest, LIMIT).await;
    refused(stream, &blob, "open_blob");
}

/// `result` is the refusal to read `blob` through a link.
fn refused<T>(result: tuf_oci::Result<T>, blob: &Path, what: &str) {
    match result {
        Err(Error::Io { path, cause }) => {
            assert_eq!(path, blob, "{what}");
            assert_eq!(cause.kind(), std::io::ErrorKind::InvalidData, "{what}");
        }
        Err(other) => panic!("{what}: {other:?}"),
        Ok(_) => panic!("{what}: read through the link"),
    }
}

#[tokio::test]
async fn oversized_layout_files_are_refused_unread() {
    const HUGE: u64 = 2 << 30;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    let (_, blob) = layout(&dir).await;
    // Sparse: costs no disk, but reads as 2 GiB of zeros.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(HUGE)
        .unwrap();
    let before = peak_memory();
    let store = LayoutStore::open(&dir, false).unwrap();
    match store.manifest(REPOSITORY, METADATA_TAG, LIMIT).await {
        Err(Error::TooLarge { what, limit }) => {
            assert_eq!(limit, LIMIT);
            assert!(what.contains("sha256:"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    let grown = peak_memory().saturating_sub(before);
    assert!(
        grown < 256 << 20,
        "reading the blob: peak memory grew by {grown} bytes"
    );

    // index.json too.
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("index.json"))
        .unwrap()
        .set_len(HUGE)
        .unwrap();
    match LayoutStore::open(&dir, false) {
        Err(Error::TooLarge { what, limit }) => {
            assert!(what.contains("index.json"), "{what}");
            assert!(limit < HUGE);
        }
        other => panic!("{other:?}"),
    }
    let grown = peak_memory().saturating_sub(before);
    assert!(
        grown < 256 << 20,
        "opening the layout: peak memory grew by {grown} bytes"
    );
}

/// `mediaType` is optional in OCI manifests and indexes (older tools leave it out): a
/// layout's manifest without one is an OCI manifest or index by its fields, whether
/// `index.json` lists it or not (an index's children are not listed); a document with the
/// fields of both is refused, naming why.
#[tokio::test]
async fn a_manifest_declaring_no_media_type_is_typed_by_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::open(dir.path(), true).unwrap();
    let empty = serde_json::json!({
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2
    });
    let manifest =
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "config": empty, "layers": []}))
            .unwrap();
    let child = serde_json::json!({
        "mediaType": MANIFEST_MEDIA_TYPE,
        "digest": tuf_oci::layout::sha256_digest(&manifest),
        "size": manifest.len(),
    });
    let index =
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [child]})).unwrap();
    let both = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "config": empty, "layers": [], "manifests": [child],
    }))
    .unwrap();
    // Declaring a type does not make it less ambiguous; Docker's schema 1 is no manifest here.
    let declared_both = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "config": empty, "layers": [],
        "manifests": [child],
    }))
    .unwrap();
    let schema_1 = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 1,
        "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "fsLayers": [],
    }))
    .unwrap();
    let digest = |bytes: &[u8]| tuf_oci::layout::sha256_digest(bytes);
    for bytes in [&manifest, &both, &declared_both, &schema_1] {
        store
            .put_manifest(REPOSITORY, &digest(bytes), bytes, MANIFEST_MEDIA_TYPE)
            .await
            .unwrap();
    }
    store
        .put_manifest(REPOSITORY, "v1", &index, tuf_oci::layout::INDEX_MEDIA_TYPE)
        .await
        .unwrap();
    store.save(&BTreeMap::new()).unwrap();
    drop(store);

    let store = LayoutStore::open(dir.path(), false).unwrap();
    for (reference, expected) in [
        ("v1".to_string(), tuf_oci::layout::INDEX_MEDIA_TYPE),
        (digest(&manifest), MANIFEST_MEDIA_TYPE),
    ] {
        let stored = store.manifest(REPOSITORY, &reference, LIMIT).await.unwrap();
        assert_eq!(stored.unwrap().media_type, expected, "{reference}");
    }
    for refused in [&both, &declared_both, &schema_1] {
        let err = store
            .manifest(REPOSITORY, &digest(refused), LIMIT)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(tuf_oci::layout::NO_MEDIA_TYPE),
            "{err}"
        );
    }
}
