//! The README's demo runs end to end (real CLI, registry and skopeo) and shows the refusal.

use std::process::Command;

#[test]
fn demo_signs_verifies_and_refuses_a_tampered_tag() {
    let output = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/demo.sh"))
        .env("TUF_OCI_BIN", tuf_oci_tests::cli_binary())
        .env("DEMO_PORT", tuf_oci_tests::free_port().to_string())
        .output()
        .expect("run demo.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("team-a/app:v1 signed by team-a")
            || stderr.contains("team-a/app:v1 signed by team-a")
    );
    assert!(
        stdout.contains("refused: tuf-oci:") && stdout.contains(": digest is sha256:"),
        "{stdout}"
    );
}
