//! What containerd hands the image verifier: flags and the descriptor on stdin. Parsing never
//! panics, and the API form of a descriptor converts back to the same descriptor.
#![no_main]

use containerd_tuf_verifier::api;
use containerd_tuf_verifier::bindir::Flags;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let args: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    let _ = Flags::parse(&args);
    if let Ok(descriptor) = serde_json::from_slice::<oci_spec::image::Descriptor>(data) {
        let wire = api::Descriptor::from_oci(&descriptor);
        if let Ok(back) = wire.to_oci() {
            assert_eq!(back.digest(), descriptor.digest());
            assert_eq!(back.size(), descriptor.size());
            assert_eq!(back.media_type(), descriptor.media_type());
        }
    }
});
