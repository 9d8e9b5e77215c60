//! Plain forwarding: every call goes to containerd unchanged (method, metadata such as
//! `containerd-namespace` and `containerd-lease`, deadlines, streams in both directions,
//! status and trailers), and its answer comes back unchanged.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::BodyExt;

use crate::status::{self, Code};
use crate::upstream::{Body, Upstream};

/// The innermost service of the front.
#[derive(Debug, Clone)]
pub struct Forward {
    upstream: Upstream,
}

impl Forward {
    /// Forwards to `upstream`.
    pub fn new(upstream: Upstream) -> Self {
        Forward { upstream }
    }
}

impl tower::Service<Request<Body>> for Forward {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let upstream = self.upstream.clone();
        Box::pin(async move {
            let path = request.uri().path().to_string();
            Ok(match upstream.send(request).await {
                Ok(response) => response.map(|body| body.boxed_unsync()),
                Err(e) => {
                    tracing::warn!(%path, error = %e, "containerd unavailable");
                    status::error(Code::Unavailable, &format!("tuf-oci front: {e}"))
                }
            })
        })
    }
}
