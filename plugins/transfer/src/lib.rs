//! A gRPC front for containerd that lets images into containerd only when TUF verifies them.
//!
//! Clients (ctr, nerdctl, anything speaking containerd's API) talk to the front's socket
//! instead of containerd's. Every call is forwarded unchanged, except the few that would record
//! or pull an image, which are checked first:
//!
//! - [`write_ahead`]: containerd 1.6 clients' blob writes answered as soon as the front has
//!   them, containerd's answers checked as they follow.
//! - [`forward`]: plain forwarding to [`upstream`] (containerd), streams and metadata intact;
//!   [`coalesce`] gathers the frames written to containerd in one poll into one write.
//! - [`verify`]: the tower layer that reads checked calls and asks [`gate`] for a verdict.
//! - [`gate`]: decoding `Images.Create/Update` and `Transfer.Transfer`, verifying with the
//!   verifier plugin's engine (same policy file), pinning pulls to verified digests.
//! - [`streams`]: containerd's Streaming service relayed message by message, so an import's
//!   archive can be claimed by [`import`], which checks it (image names per [`naming`]) before
//!   containerd gets it.
//! - [`frame`], [`status`], [`any`]: gRPC framing, front-made errors, containerd's `Any`s.
//! - [`server`]: the accept loop.
//! - [`pull`]: TUF-first pull through containerd's API (`tuf-oci pull`); [`platform`] picks an
//!   index's manifest for this machine as containerd would.

#![forbid(unsafe_code)]

pub mod any;
pub mod coalesce;
pub mod forward;
pub mod frame;
pub mod gate;
pub mod import;
pub mod naming;
pub mod platform;
pub mod pull;
pub mod server;
pub mod status;
pub mod streams;
pub mod upstream;
pub mod verify;
pub mod write_ahead;
