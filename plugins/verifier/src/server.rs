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
/// It is bound under a name of its own, given its mode, and only then renamed into place, so
/// no client can connect while the umask's mode holds.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let binding = dir.join(format!(".{name}.{}.binding", std::process::id()));
    remove_stale(&binding)?;
    let listener = UnixListener::bind(&binding)?;
    std::fs::set_permissions(&binding, std::fs::Permissions::from_mode(SOCKET_MODE))?;
    std::fs::rename(&binding, path)?;
    Ok(listener)
}

/// Removes the socket file at `path` a previous run left, if any.
fn remove_stale(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
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
        let listener = super::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660, "{mode:o}");
        // Bound under another name, it answers under its own.
        let connected = tokio::net::UnixStream::connect(&path);
        let (accepted, connected) = tokio::join!(listener.accept(), connected);
        accepted.unwrap();
        connected.unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }
}
