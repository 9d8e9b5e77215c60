//! The connection to containerd: one HTTP/2 connection over its Unix socket, shared by all
//! forwarded calls and re-established when containerd restarts.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::coalesce::Coalesced;
use crate::frame::{self, Item, Messages};

/// Bodies crossing the proxy, streamed as they come. The error type is hyper's own (bodies the
/// front makes cannot fail), a concrete type so the futures stay `Send` for every lifetime.
pub type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// containerd's socket and the live connection to it.
#[derive(Debug, Clone)]
pub struct Upstream {
    socket: PathBuf,
    sender: Arc<tokio::sync::Mutex<Option<SendRequest<Body>>>>,
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

    /// One unary call of the front's own, with a client's `headers` (its namespace): the
    /// answer's message, or the error containerd gave.
    pub async fn unary(
        &self,
        path: &str,
        headers: &HeaderMap,
        message: &[u8],
    ) -> anyhow::Result<Bytes> {
        let body = Full::new(frame::encode(message))
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut request = Request::new(body);
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = format!("http://containerd{path}").parse()?;
        *request.headers_mut() = headers.clone();
        request.headers_mut().remove(http::header::CONTENT_LENGTH);
        let response = self.send(request).await?;
        // A refusal may come as headers alone ("Trailers-Only").
        grpc_ok(path, response.headers())?;
        let mut messages = Messages::new(response.into_body().boxed_unsync());
        let mut answer = None;
        while let Some(item) = messages.next().await {
            match item.map_err(anyhow::Error::msg)? {
                Item::Message(message) => {
                    answer = Some(message.payload().map_err(anyhow::Error::msg)?)
                }
                Item::Trailers(trailers) => grpc_ok(path, &trailers)?,
            }
        }
        answer.ok_or_else(|| anyhow::anyhow!("containerd answered {path} with no message"))
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
            .map_err(|e| {
                anyhow::anyhow!("connecting to containerd at {}: {e}", self.socket.display())
            })?;
        // Blobs cross this connection 16 KiB frame by frame: write them in batches.
        let (sender, connection) = hyper::client::conn::http2::handshake(
            TokioExecutor::new(),
            TokioIo::new(Coalesced::new(stream)),
        )
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

/// Fails when `headers` carry a gRPC status other than OK.
fn grpc_ok(path: &str, headers: &HeaderMap) -> anyhow::Result<()> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match text("grpc-status") {
        None | Some("0") => Ok(()),
        Some(code) => anyhow::bail!(
            "containerd refused {path}: code {code}: {}",
            text("grpc-message").unwrap_or_default()
        ),
    }
}
