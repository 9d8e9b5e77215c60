//! The connection to containerd: one HTTP/2 connection over its Unix socket, shared by all
//! forwarded calls and re-established when containerd restarts.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::coalesce::Coalesced;

/// Bodies crossing the proxy, streamed as they come. The error type is hyper's own (bodies the
/// front makes cannot fail), a concrete type so the futures stay `Send` for every lifetime.
pub type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// The largest HTTP/2 flow-control window (RFC 9113, 6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// containerd's socket and the live connection to it.
#[derive(Debug, Clone)]
pub struct Upstream {
    socket: PathBuf,
    sender: Arc<tokio::sync::Mutex<Option<SendRequest<Body>>>>,
}

/// A client's call URI made the front's own call to method `path` (the authority kept).
pub fn at_path(client: &Uri, path: &'static str) -> Result<Uri, http::uri::InvalidUriParts> {
    let mut parts = client.clone().into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static(path));
    Uri::from_parts(parts)
}

impl Upstream {
    /// Dials `socket` on first use.
    pub fn new(socket: PathBuf) -> Self {
        Upstream {
            socket,
            sender: Arc::default(),
        }
    }

    /// Sends one request; reconnects first when the previous connection is gone.
    pub async fn send(&self, request: Request<Body>) -> anyhow::Result<Response<Incoming>> {
        let mut sender = self.sender().await?;
        sender.ready().await?;
        Ok(sender.send_request(request).await?)
    }

    async fn sender(&self) -> anyhow::Result<SendRequest<Body>> {
        let mut current = self.sender.lock().await;
        if let Some(sender) = current.as_ref()
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .and_then(|stream| {
                containerd_tuf_verifier::client::trusted_server(&stream, &self.socket)?;
                Ok(stream)
            })
            .map_err(|e| {
                anyhow::anyhow!("connecting to containerd at {}: {e}", self.socket.display())
            })?;
        // Blobs cross this connection 16 KiB frame by frame: write them in batches. Every
        // client's calls share it, and data a client does not take holds flow-control credit
        // until it does: with a window of a few streams', clients that stop reading (a pager)
        // would stop every call. The largest window leaves each its own stream's.
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_connection_window_size(MAX_WINDOW)
            .handshake(TokioIo::new(Coalesced::new(stream)))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "containerd connection ended");
            }
        });
        *current = Some(sender.clone());
        Ok(sender)
    }
}
