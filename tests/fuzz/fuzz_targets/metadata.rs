//! Bytes from a registry at the metadata boundary: manifests (and the small files embedded in
//! them), pointers and signed metadata never panic the parsers or the signature checks,
//! targets metadata included as the delegation search reads it before its signatures.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tuf_oci::layout::Manifest;
use tuf_oci::schema::{Root, Signed, Snapshot, Targets, Timestamp};
use tuf_oci::targets_metadata::TargetsMetadata;

/// Signers holding no key: every signature check fails, after the parsing before it.
static SIGNERS: LazyLock<Root> = LazyLock::new(|| {
    serde_json::from_str(
        r#"{"_type":"root","spec_version":"1.0.0","consistent_snapshot":true,"version":1,
        "expires":"2100-01-01T00:00:00Z","keys":{},"roles":{
        "root":{"keyids":[],"threshold":1},"targets":{"keyids":[],"threshold":1},
        "snapshot":{"keyids":[],"threshold":1},"timestamp":{"keyids":[],"threshold":1}}}"#,
    )
    .expect("a root")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::parse("fuzz", data) {
        let _ = manifest.metadata_layer("1.root.json");
        let _ = manifest.pointer();
        for layer in &manifest.layers {
            let _ = layer.embedded("fuzz");
        }
    }
    let _ = tuf_oci::updater::trusted_root(data);
    let _ = TargetsMetadata::verified("targets", data, &SIGNERS);
    let _ = serde_json::from_slice::<Signed<Timestamp>>(data);
    let _ = serde_json::from_slice::<Signed<Snapshot>>(data);
    let _ = serde_json::from_slice::<Signed<Targets>>(data);
});
