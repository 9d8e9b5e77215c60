//! What containerd hands the image verifier: flags (the input's first line) and the descriptor
//! on stdin (the rest), through the executable's own reading of them. Nothing panics, nothing
//! without a policy is allowed, and the API form of a descriptor converts back to the same
//! descriptor.
#![no_main]

use std::sync::LazyLock;

use containerd_tuf_verifier::api;
use containerd_tuf_verifier::bindir;
use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
});

fuzz_target!(|data: &[u8]| {
    let (flags, stdin) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let args: Vec<String> = String::from_utf8_lossy(flags)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let outcome = RUNTIME.block_on(bindir::run(
        &args,
        stdin,
        Err(anyhow::anyhow!("no policy")),
        false,
    ));
    assert_ne!(
        outcome.code, 0,
        "allowed without a policy: {}",
        outcome.message
    );
    if let Ok(descriptor) = serde_json::from_slice::<oci_spec::image::Descriptor>(stdin) {
        let wire = api::Descriptor::from_oci(&descriptor);
        if let Ok(back) = wire.to_oci() {
            assert_eq!(back.digest(), descriptor.digest());
            assert_eq!(back.size(), descriptor.size());
            assert_eq!(back.media_type(), descriptor.media_type());
            // No annotations and none at all, no artifact type and an empty one, are alike.
            let annotations =
                |d: &oci_spec::image::Descriptor| d.annotations().clone().unwrap_or_default();
            let artifact_type = |d: &oci_spec::image::Descriptor| {
                d.artifact_type()
                    .as_ref()
                    .map(ToString::to_string)
                    .filter(|t| !t.is_empty())
            };
            assert_eq!(annotations(&back), annotations(&descriptor));
            assert_eq!(artifact_type(&back), artifact_type(&descriptor));
        }
    }
});
