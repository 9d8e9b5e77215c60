//! References, repositories and `tuf-metadata` pointers: parsing and resolving never panic,
//! resolution never climbs above the registry root, and every reference the hand-written grammar
//! accepts is one the OCI grammar (oci-spec's regex) accepts, with the same parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tuf_oci::{ImageRef, Repository};

fuzz_target!(|data: &[u8]| {
    let Ok(data) = std::str::from_utf8(data) else {
        return;
    };
    // oci-spec has no IPv6 hosts (`[::1]:5000`); distribution's grammar has.
    if let Ok(ours) = ImageRef::parse(data)
        && !data.starts_with('[')
    {
        let theirs = oci_spec::distribution::Reference::try_from(data)
            .unwrap_or_else(|e| panic!("{data:?} accepted here, refused by oci-spec: {e}"));
        // oci-spec rewrites Docker Hub names (`index.docker.io` to `docker.io`, `library/`
        // before one-component paths); nothing else.
        if theirs.registry() != "docker.io" {
            assert_eq!(theirs.registry(), ours.repository.registry);
            assert_eq!(theirs.repository(), ours.repository.path);
        }
        assert_eq!(theirs.digest(), ours.digest.as_deref());
        if let Some(tag) = theirs.tag() {
            assert_eq!(Some(tag), ours.tag.as_deref());
        }
    }
    let _ = Repository::parse(data);
    let (base, pointer) = data.split_once('\n').unwrap_or((data, "../x"));
    if let Ok(repository) = Repository::parse(base)
        && let Ok(resolved) = repository.resolve(pointer)
    {
        assert!(!resolved.path.is_empty());
        assert!(!resolved.path.split('/').any(|c| c == ".." || c == "."));
    }
});
