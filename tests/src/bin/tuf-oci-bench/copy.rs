//! `tuf-oci copy` against `skopeo copy`.

use tuf_oci_tests::{Org, TestRegistry};

/// `tuf-oci copy` (image plus all its TUF metadata) vs `skopeo copy` (image only) of the same
/// four-layer image, registry to registry, with the peak memory of each process.
pub(crate) async fn copy_vs_skopeo(registry: &TestRegistry, layer_bytes: usize) {
    use std::process::Command;

    let org = Org::init(registry, "bench/big").await;
    let fills: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|f| f.repeat(layer_bytes))
        .collect();
    let contents: Vec<&str> = fills.iter().map(String::as_str).collect();
    registry
        .push_image_layers("bench/big", "v1", &contents)
        .await;
    org.sign_in_targets(registry, "bench/big:v1").await;
    org.publish(registry).await;
    let measure = |program: &std::path::Path, args: &[String]| {
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%e %M"])
            .arg(program)
            .args(args)
            .output()
            .expect("/usr/bin/time (Debian package time)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default().to_string();
        let mut fields = last.split_whitespace();
        let seconds: f64 = fields
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        let kib: u64 = fields
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        (seconds, kib)
    };
    let ours_dest = TestRegistry::start();
    let theirs_dest = TestRegistry::start();
    let source = format!("{}/bench/big:v1", registry.host);
    let ours = measure(
        &tuf_oci_tests::cli_binary(),
        &[
            "--insecure-registry".into(),
            format!("{},{}", registry.host, ours_dest.host),
            "copy".into(),
            source.clone(),
            format!("{}/bench/big:v1", ours_dest.host),
        ],
    );
    let theirs = measure(
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
