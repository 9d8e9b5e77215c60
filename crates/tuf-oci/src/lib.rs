//! TUF metadata stored in OCI registries, and images verified against it.
//!
//! Module map:
//! - [`descriptor`]: a TUF target is an OCI descriptor (lossless both ways).
//! - [`location`]: repositories, image references, target names, `tuf-metadata` pointers.
//! - [`layout`]: how metadata files become OCI manifests and indexes (spec: `docs/layout.md`).
//! - [`registry`]: registry access (auth, insecure hosts, limits, deadlines): reads of its own,
//!   and token exchanges, cut at their limits as they arrive; writes through oci-client.
//! - [`source`]: where the verification engine reads metadata files from.
//! - [`trusted`]: trusted metadata persisted between runs (rollback protection).
//! - [`atomic`]: files replaced whole (trusted metadata, layouts, archives, roots).
//! - [`updater`]: the TUF client workflow with lazy delegation search.
//! - [`targets_metadata`]: targets metadata as the search reads it, decoded only where it looks.
//! - [`verify`]: end-to-end verification of an image reference.
//! - [`keys`] and [`editor`]: signing keys and the writing side (init, delegate, sign, publish).
//! - [`store`] and [`copy`]: registries and OCI layouts as content stores, and TUF-aware copies
//!   between them (images travel with their metadata).
//!
//! Verifying is split from writing: the updater returns [`VerifiedTarget`]s, which nothing else
//! can build, and the editor only edits metadata it has verified from the trusted root down.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod atomic;
pub mod claim;
pub mod copy;
pub mod descriptor;
pub mod editor;
mod error;
mod grammar;
pub mod keys;
pub mod layout;
pub mod location;
pub mod registry;
pub mod source;
pub mod store;
pub mod targets_metadata;
pub mod trusted;
pub mod updater;
pub mod verify;

#[doc(inline)]
pub use error::{Error, Result, causes};
#[doc(inline)]
pub use location::{ImageRef, Repository};
#[doc(inline)]
pub use registry::{Registry, RegistryConfig};
#[doc(inline)]
pub use updater::{Expiration, Limits, Updater, VerifiedTarget};
#[doc(inline)]
pub use verify::{
    TrustConfig, Verifier, check_descriptor, check_pin, resolve_in_store, verify_in_store,
};

/// tough's schema types, re-exported so callers build and read metadata with the same version.
pub use tough::schema;
