//! The commented policy shipped in packaging/ parses and means what its comments say.

use containerd_tuf_verifier::policy::{Decision, Default, Policy};
use tuf_oci::ImageRef;

#[test]
fn packaged_policy_example_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/policy.toml");
    let policy = Policy::load(std::path::Path::new(path)).unwrap();
    assert_eq!(policy.default, Default::Deny);
    let decide = |r: &str| policy.decide(&ImageRef::parse(r).unwrap());
    assert!(matches!(
        decide("mirror.example.internal:5000/team-a/app:v1"),
        Decision::Verify(0, _)
    ));
    assert_eq!(
        decide("registry.example.com/public/x:v1"),
        Decision::Unprotected
    );
    assert_eq!(
        decide("registry.example.com/team-c/x:v1"),
        Decision::Uncovered(Default::Deny)
    );
}
