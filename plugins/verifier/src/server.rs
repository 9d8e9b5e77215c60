//! Serving the verification service on a Unix socket. The caller supplies the listener and the
//! shutdown signal, so tests run it on temp sockets and `main` stays thin.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::api::verifier_server::VerifierServer;
use crate::engine::Engine;
use crate::service::VerifierService;

/// Binds `path`, replacing a stale socket file left by a previous run. The socket is its
/// owner's and group's only (as containerd's own): through the transfer front it is
/// containerd's API, and a process umask of 0 would otherwise open it to every local user.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
    Ok(listener)
}

/// Read and write (connect) for the owner and the group.
const SOCKET_MODE: u32 = 0o660;

/// Serves `engine` on `listener` until `shutdown` completes, then finishes in-flight calls.
/// The engine's metadata is brought up to date meanwhile ([`Engine::spawn_warm_up`]).
pub async fn serve(
    engine: Arc<Engine>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    engine.spawn_warm_up();
    tonic::transport::Server::builder()
        .add_service(VerifierServer::new(VerifierService::new(engine)))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[tokio::test]
    async fn the_socket_is_for_its_owner_and_group_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service.sock");
        // A stale socket file of a previous run is replaced.
        std::fs::write(&path, b"").unwrap();
        let _listener = super::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660, "{mode:o}");
    }
}
