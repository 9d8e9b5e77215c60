//! Bytes from a registry at the metadata boundary: manifests, pointers and signed metadata
//! never panic the parsers or the signature checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tuf_oci::layout::Manifest;
use tuf_oci::schema::{Signed, Snapshot, Targets, Timestamp};

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::parse("fuzz", data) {
        let _ = manifest.metadata_layer("1.root.json");
        let _ = manifest.pointer();
    }
    let _ = tuf_oci::updater::trusted_root(data);
    let _ = serde_json::from_slice::<Signed<Timestamp>>(data);
    let _ = serde_json::from_slice::<Signed<Snapshot>>(data);
    let _ = serde_json::from_slice::<Signed<Targets>>(data);
});
