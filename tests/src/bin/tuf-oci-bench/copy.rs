//! `tuf-oci copy` against `skopeo copy`.

use tuf_oci_tests::TestRegistry;

use crate::fixtures::four_layer_image;
use crate::measure::timed_process;

/// `tuf-oci copy` (image plus all its TUF metadata) vs `skopeo copy` (image only) of the same
/// four-layer image, registry to registry, with the peak memory of each process.
pub(crate) async fn copy_vs_skopeo(registry: &TestRegistry, layer_bytes: usize) {
    four_layer_image(registry, "bench/big", layer_bytes).await;
    let ours_dest = TestRegistry::start();
    let theirs_dest = TestRegistry::start();
    let source = format!("{}/bench/big:v1", registry.host);
    let ours = timed_process(
        &tuf_oci_tests::cli_binary(),
        &[
            "--insecure-registry".into(),
            format!("{},{}", registry.host, ours_dest.host),
            "copy".into(),
            source.clone(),
            format!("{}/bench/big:v1", ours_dest.host),
        ],
    );
    let theirs = timed_process(
        std::path::Path::new("skopeo"),
        &[
            "copy".into(),
            "--quiet".into(),
            "--src-tls-verify=false".into(),
            "--dest-tls-verify=false".into(),
            format!("docker://{source}"),
            format!("docker://{}/bench/big:v1", theirs_dest.host),
        ],
    );
    let mb = 4 * (layer_bytes >> 20);
    println!(
        "{:<56} {:>10} {:>9} MiB {:>10.2}s",
        format!("tuf-oci copy ({mb} MiB, with TUF metadata)"),
        "",
        ours.1 >> 10,
        ours.0
    );
    println!(
        "{:<56} {:>10} {:>9} MiB {:>10.2}s",
        format!("skopeo copy ({mb} MiB, image only)"),
        "",
        theirs.1 >> 10,
        theirs.0
    );
    println!(
        "{:<56} {:>10.2}",
        "  ratio time tuf-oci / skopeo",
        ours.0 / theirs.0
    );
}
