//! containerd image verification against TUF metadata in OCI registries.
//!
//! Module map:
//! - [`policy`]: the policy file (protected scopes, trusted roots, defaults).
//! - [`engine`]: policy plus TUF verification, the one decision every entry point makes.
//! - [`bindir`]: containerd 2.x's image-verifier executable contract, for both executables:
//!   `containerd-tuf-verifier` (service and in-process verification) and
//!   `containerd-tuf-verifier-client` (asks the service; runs the first when it does not answer).
//! - [`logs`]: stderr diagnostics, set up alike by both.
//! - [`service`], [`server`], [`client`]: the `tufoci.verifier.v1` gRPC service on a Unix
//!   socket, which keeps metadata warm; the executable uses it when it runs.
//! - [`api`]: the generated API (from `proto/`).

#![forbid(unsafe_code)]

pub mod api;
pub mod bindir;
pub mod client;
pub mod engine;
pub mod logs;
pub mod policy;
pub mod server;
pub mod service;
