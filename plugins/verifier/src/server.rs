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

/// Binds `path`, replacing a stale socket file left by a previous run.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    Ok(UnixListener::bind(path)?)
}

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
