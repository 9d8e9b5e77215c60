//! Target ⇄ descriptor mapping: whatever JSON comes in, no panic, and a descriptor that maps to
//! a target maps back to itself (lossless).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tuf_oci::descriptor::{descriptor_from_target, target_from_descriptor};

fuzz_target!(|data: &[u8]| {
    if let Ok(descriptor) = serde_json::from_slice::<oci_spec::image::Descriptor>(data)
        && let Ok(target) = target_from_descriptor(&descriptor)
    {
        let back =
            descriptor_from_target("fuzz:target", &target).expect("a mapped target maps back");
        assert_eq!(back, descriptor, "the mapping must be lossless");
    }
    if let Ok(target) = serde_json::from_slice::<tuf_oci::schema::Target>(data) {
        let _ = descriptor_from_target("fuzz:target", &target);
    }
});
