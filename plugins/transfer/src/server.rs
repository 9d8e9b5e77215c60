//! Accepting clients on the front's Unix socket and serving each connection over HTTP/2. The
//! caller supplies the listener and the shutdown signal.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use containerd_tuf_verifier::engine::Engine;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixListener;
use tower::{ServiceBuilder, ServiceExt};

use crate::forward::Forward;
use crate::gate::Gate;
use crate::upstream::Upstream;
use crate::verify::VerifyLayer;
use crate::write_ahead::WriteAheadLayer;

/// The pause after a failed accept before the next, so that a lasting failure does not spin.
const ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves the front on `listener`, forwarding to `upstream` and checking with `engine`, until
/// `shutdown` completes; imports are staged under `staging` while checked. The engine's
/// metadata is brought up to date meanwhile ([`Engine::spawn_warm_up`]), so the first pulls
/// through a front just started do not wait for cold updates.
pub async fn serve(
    listener: UnixListener,
    upstream: Upstream,
    engine: Arc<Engine>,
    staging: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    engine.spawn_warm_up();
    // What imports of a front stopped mid-way left behind goes, on the blocking pool, before
    // any call is taken: a sweep beside a new import could catch its directory between its
    // creation and its lock. Clients meanwhile wait on the socket, which is bound already.
    let stale = staging.clone();
    let swept = tokio::task::spawn_blocking(move || crate::import::sweep(&stale)).await;
    if let Ok(swept @ 1..) = swept {
        tracing::info!(swept, staging = %staging.display(), "removed stale imports");
    }
    let service = ServiceBuilder::new()
        .layer(VerifyLayer::new(Arc::new(Gate::new(
            engine,
            upstream.clone(),
            staging,
        ))))
        .layer(WriteAheadLayer)
        .service(Forward::new(upstream));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return Ok(()),
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say, while clients hold many connections: the front
                // keeps serving those, and accepts again once some are gone.
                tracing::warn!(error = %e, "accepting a client connection");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                    () = &mut shutdown => return Ok(()),
                }
            }
        };
        let service = service.clone();
        tokio::spawn(async move {
            let hyper_service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let request = request.map(|body| body.boxed_unsync());
                    service.clone().oneshot(request)
                });
            let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), hyper_service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "client connection ended");
            }
        });
    }
}
