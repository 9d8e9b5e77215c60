//! References, repositories and `tuf-metadata` pointers: parsing and resolving never panic, and
//! resolution never climbs above the registry root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tuf_oci::{ImageRef, Repository};

fuzz_target!(|data: &[u8]| {
    let Ok(data) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ImageRef::parse(data);
    let _ = Repository::parse(data);
    let (base, pointer) = data.split_once('\n').unwrap_or((data, "../x"));
    if let Ok(repository) = Repository::parse(base)
        && let Ok(resolved) = repository.resolve(pointer)
    {
        assert!(!resolved.path.is_empty());
        assert!(!resolved.path.split('/').any(|c| c == ".." || c == "."));
    }
});
