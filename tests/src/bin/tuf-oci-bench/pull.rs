//! `tuf-oci pull` (TUF first, through containerd 1.6's API) against `ctr images pull`.

use tuf_oci_tests::TestRegistry;
use tuf_oci_tests::containerd::{Containerd, Version};

use crate::fixtures::four_layer_image;
use crate::measure::timed_process;

/// `tuf-oci pull` (the tag resolved through TUF, every object fetched by digest, written,
/// recorded and unpacked through containerd's API) vs `ctr images pull` (the registry's tag,
/// ctr's own client-side pull) of the same four-layer image into two fresh containerd 1.6,
/// with the peak memory of each client: layers stream into containerd, so `tuf-oci`'s memory
/// does not grow with their size.
pub(crate) async fn pull_vs_ctr(registry: &TestRegistry, layer_bytes: usize) {
    let org = four_layer_image(registry, "bench/pull", layer_bytes).await;
    let name = format!("{}/bench/pull:v1", registry.host);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    std::fs::write(&root, &org.root).unwrap();
    let ours_containerd = Containerd::start(Version::V1_6, None, &[]);
    let theirs_containerd = Containerd::start(Version::V1_6, None, &[]);
    let ours = timed_process(
        &tuf_oci_tests::cli_binary(),
        &[
            "--insecure-registry".into(),
            registry.host.clone(),
            "--root".into(),
            root.display().to_string(),
            "--cache-dir".into(),
            dir.path().join("cache").display().to_string(),
            "pull".into(),
            name.clone(),
            "--address".into(),
            ours_containerd.socket.display().to_string(),
        ],
    );
    let theirs = timed_process(
        &theirs_containerd.ctr,
        &[
            "--address".into(),
            theirs_containerd.socket.display().to_string(),
            // As `tuf-oci pull` ends a pull: ctr's progress display ends one only on its next
            // 100 ms tick, and would pad ctr's time.
            "--debug".into(),
            "images".into(),
            "pull".into(),
            "--plain-http".into(),
            name,
        ],
    );
    let mb = 4 * (layer_bytes >> 20);
    println!(
        "{:<56} {:>10} {:>9} MiB {:>10.2}s",
        format!("tuf-oci pull ({mb} MiB, containerd 1.6, verified)"),
        "",
        ours.1 >> 10,
        ours.0
    );
    println!(
        "{:<56} {:>10} {:>9} MiB {:>10.2}s",
        format!("ctr images pull ({mb} MiB, containerd 1.6)"),
        "",
        theirs.1 >> 10,
        theirs.0
    );
    println!(
        "{:<56} {:>10.2}",
        "  ratio time tuf-oci / ctr",
        ours.0 / theirs.0
    );
}
