//! The verify-before-pull decision as a tower layer around forwarding: calls that would record
//! or pull an image are read in full, checked, then forwarded or refused; streams are relayed
//! message by message (imports arrive on them); other calls to containerd's own services go
//! through untouched, and calls to any other service are refused.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};

use crate::forward::{Answer, Relay};
use crate::frame;
use crate::gate::{self, Gate, Recheck, Refused, Verdict};
use crate::import;
use crate::status::{self, Code};
use crate::streams;
use crate::upstream::Body;

/// Largest checked request read into memory (image and transfer requests are small).
const MAX_CHECKED_REQUEST: usize = 4 * 1024 * 1024;

/// Adds verification in front of a service.
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    gate: Arc<Gate>,
}

impl VerifyLayer {
    /// Checks with `gate`.
    pub fn new(gate: Arc<Gate>) -> Self {
        VerifyLayer { gate }
    }
}

impl<S> tower::Layer<S> for VerifyLayer {
    type Service = Verify<S>;

    fn layer(&self, inner: S) -> Verify<S> {
        Verify {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// The service [`VerifyLayer`] makes.
#[derive(Debug, Clone)]
pub struct Verify<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S: Relay> tower::Service<Request<Body>> for Verify<S> {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let path = request.uri().path().to_string();
        let checked = gate::is_checked(&path);
        if !checked && path != streams::STREAM {
            if gate::is_forwarded(&path) {
                return Box::pin(self.inner.call(request));
            }
            tracing::warn!(%path, "refused: not a service the front forwards");
            return Box::pin(std::future::ready(Ok(status::error(
                Code::PermissionDenied,
                &format!(
                    "tuf-oci front: {path} is not forwarded: only containerd's own services pass \
                     the front, which cannot check what other services record"
                ),
            ))));
        }
        // Drive the ready clone, keep a fresh one for the next call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        if !checked {
            // Streams are relayed message by message, so imports on them can be claimed.
            return Box::pin(async move { Ok(gate.streams().splice(request, inner).await) });
        }
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match read_limited(body, MAX_CHECKED_REQUEST).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    return Ok(status::error(
                        Code::InvalidArgument,
                        &format!("tuf-oci front: {path}: {e}"),
                    ));
                }
            };
            let message = match frame::single_message(&bytes) {
                Ok(message) => message,
                Err(e) => {
                    return Ok(status::error(
                        Code::InvalidArgument,
                        &format!("tuf-oci front: {path}: {e}"),
                    ));
                }
            };
            match gate.decide(&path, &parts.headers, message).await {
                Verdict::Forward {
                    message,
                    flush,
                    handed_over,
                    recheck,
                } => {
                    let body = Full::new(frame::encode(&message))
                        .map_err(|never| match never {})
                        .boxed_unsync();
                    if let Some(recheck) = recheck {
                        let pending = PendingRecheck {
                            gate: gate.clone(),
                            uri: parts.uri.clone(),
                            headers: parts.headers.clone(),
                            recheck: Some(recheck),
                        };
                        let Ok(response) = inner.call(Request::from_parts(parts, body)).await;
                        return Ok(rechecked(&path, pending, response).await);
                    }
                    let Ok(response) = inner.call(Request::from_parts(parts, body)).await;
                    let response = match flush {
                        Some(flush) => streams::trailers_after(response, flush),
                        None => response,
                    };
                    Ok(match handed_over {
                        Some(handed_over) => import::held_until_answered(response, handed_over),
                        None => response,
                    })
                }
                Verdict::Refuse(refusal) => Ok(refused(&path, refusal)),
            }
        })
    }
}

/// The front's own answer to a call to `path`: `refusal`.
fn refused(path: &str, refusal: Refused) -> Response<Body> {
    match refusal {
        Refused::Deny(reason) => {
            tracing::warn!(%path, %reason, "refused");
            status::error(Code::PermissionDenied, &reason)
        }
        Refused::Malformed(reason) => {
            status::error(Code::InvalidArgument, &format!("tuf-oci front: {reason}"))
        }
        Refused::Failed(reason) => {
            tracing::warn!(%path, %reason, "failed");
            status::error(Code::Unavailable, &format!("tuf-oci front: {reason}"))
        }
    }
}

/// A Transfer pull's check once containerd has answered ([`Gate::recheck`]). Dropped before
/// it ran to its end (the client went, and the call with it; containerd's answer could not be
/// read), it runs in a task of its own: containerd may have recorded the pull meanwhile.
struct PendingRecheck {
    gate: Arc<Gate>,
    uri: http::Uri,
    headers: http::HeaderMap,
    /// Kept until the check ends: cut short midway, [`Drop`] runs it again.
    recheck: Option<Box<Recheck>>,
}

impl PendingRecheck {
    /// Runs the check; `recorded` says whether containerd answered success.
    async fn run(mut self, recorded: bool) -> Option<Refused> {
        let refusal = match &self.recheck {
            Some(recheck) => {
                (self.gate)
                    .recheck(&self.uri, &self.headers, recheck, recorded)
                    .await
            }
            None => None,
        };
        self.recheck = None;
        refusal
    }
}

impl Drop for PendingRecheck {
    fn drop(&mut self) {
        if let Some(recheck) = self.recheck.take() {
            let (gate, uri, headers) = (self.gate.clone(), self.uri.clone(), self.headers.clone());
            // Not while the front shuts down: no runtime is left to run it.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let refusal = gate.recheck(&uri, &headers, &recheck, false).await;
                    if let Some(refusal) = refusal {
                        tracing::warn!(
                            ?refusal,
                            "checked again: a Transfer pull whose client went"
                        );
                    }
                });
            }
        }
    }
}

/// `response`, containerd's answer to a Transfer pull (a call to `path`), once `pending` has
/// checked the pull's names again, whatever containerd answered (a failed pull may have
/// recorded some): the refusal instead of containerd's success when one no longer stands.
async fn rechecked(
    path: &str,
    pending: PendingRecheck,
    response: Response<Body>,
) -> Response<Body> {
    if status::is_trailers_only(response.headers()) {
        if let Some(refusal) = pending.run(false).await {
            tracing::warn!(%path, ?refusal, "checked again: a Transfer pull containerd failed");
        }
        return response;
    }
    let (head, body) = response.into_parts();
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(e) => {
            return status::error(
                Code::Unavailable,
                &format!("tuf-oci front: containerd's answer to a Transfer: {e}"),
            );
        }
    };
    let succeeded = status::ended(&head.headers, collected.trailers()).0 == Some("0");
    match pending.run(succeeded).await {
        Some(refusal) if succeeded => return refused(path, refusal),
        Some(refusal) => {
            tracing::warn!(%path, ?refusal, "checked again: a Transfer pull containerd failed");
        }
        None => {}
    }
    Response::from_parts(
        head,
        collected.map_err(|never| match never {}).boxed_unsync(),
    )
}

/// Reads a whole request body, refusing more than `limit` bytes.
async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, String> {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
            if buffer.len() > limit {
                return Err(format!("request exceeds {limit} bytes"));
            }
        }
    }
    Ok(buffer.freeze())
}
