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

/// What the front's layers wrap: a service that answers every call, failures included, with a
/// response (a gRPC status), so its error never occurs.
pub trait Relay:
    tower::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Relay for S where
    S: tower::Service<
            Request<Body>,
            Response = Response<Body>,
            Error = std::convert::Infallible,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

/// The future of the front's services.
pub type Answer =
    Pin<Box<dyn Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send>>;

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
    type Future = Answer;

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
