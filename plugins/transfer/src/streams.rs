//! containerd's Streaming service (`Streaming/Stream`) spliced through the front.
//!
//! A Transfer call names its data streams (import archive, progress, registry credentials) by
//! ids the client registered earlier with a `Stream` call that starts with `StreamInit{id}`.
//! The front relays every stream message by message, both ways, and remembers each open stream,
//! so that an import's archive can be *claimed*: from then on the client's messages come to the
//! front instead of containerd, and the front answers the client's flow control itself. A
//! claimed stream's containerd side is left idle: containerd only reads streams a Transfer names,
//! and the forwarded Transfer names a stream of the front's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use containerd_client::services::v1::StreamInit;
use http::{HeaderMap, Request, Response, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::any;
use crate::frame::{self, Item, Messages};
use crate::status::{self, Code};
use crate::upstream::Body;

/// The streaming method.
pub const STREAM: &str = "/containerd.services.streaming.v1.Streaming/Stream";

/// Messages buffered per direction.
const DEPTH: usize = 16;

/// gRPC metadata naming the containerd namespace; stream ids are per namespace.
const NAMESPACE: &str = "containerd-namespace";

/// A sender of body frames (the half of a relayed body the front writes).
pub type FrameSender = mpsc::Sender<Result<Frame<Bytes>, hyper::Error>>;

/// A body fed through a channel, and the sender feeding it.
pub fn channel_body() -> (FrameSender, Body) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (tx, StreamBody::new(ReceiverStream::new(rx)).boxed_unsync())
}

/// A stream's key: containerd namespace and stream id.
type Key = (String, String);

/// The open streams, by namespace and id.
#[derive(Debug, Clone, Default)]
pub struct Streams {
    open: Arc<Mutex<HashMap<Key, Arc<Tap>>>>,
}

/// One open stream's switch.
#[derive(Debug)]
struct Tap {
    uri: Uri,
    headers: HeaderMap,
    /// Where the client's messages go once claimed (containerd's side until then).
    divert: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// Messages the front sends the client.
    replies: FrameSender,
}

/// A stream the front took over: the client's messages, and a way to answer them.
#[derive(Debug)]
pub struct Claimed {
    /// The stream call's URI and headers (namespace, lease), for opening a sibling stream.
    pub uri: Uri,
    /// See [`Claimed::uri`].
    pub headers: HeaderMap,
    /// The client's messages (payloads); closed when the client ends its side.
    pub messages: mpsc::Receiver<Bytes>,
    replies: FrameSender,
}

impl Claimed {
    /// Sends the client one message.
    pub async fn reply(&self, message: &[u8]) -> Result<(), String> {
        self.replies
            .send(Ok(Frame::data(frame::encode(message))))
            .await
            .map_err(|_| "the client closed the stream".to_string())
    }
}

impl Streams {
    /// Takes over stream `id` of `namespace`, once.
    pub fn claim(&self, namespace: &str, id: &str) -> Option<Claimed> {
        let tap = self
            .open
            .lock()
            .expect("not poisoned")
            .remove(&(namespace.to_string(), id.to_string()))?;
        let (tx, messages) = mpsc::channel(DEPTH);
        *tap.divert.lock().expect("not poisoned") = Some(tx);
        Some(Claimed {
            uri: tap.uri.clone(),
            headers: tap.headers.clone(),
            messages,
            replies: tap.replies.clone(),
        })
    }

    /// Relays a `Stream` call through `inner` (containerd), remembering it by id.
    pub async fn splice<S>(&self, request: Request<Body>, mut inner: S) -> Response<Body>
    where
        S: tower::Service<
                Request<Body>,
                Response = Response<Body>,
                Error = std::convert::Infallible,
            >,
    {
        let (parts, body) = request.into_parts();
        let mut from_client = Messages::new(body);
        let init = match from_client.next().await {
            Some(Ok(Item::Message(init))) => init,
            Some(Err(e)) => {
                return status::error(Code::InvalidArgument, &format!("tuf-oci front: {e}"));
            }
            _ => {
                return status::error(
                    Code::InvalidArgument,
                    "tuf-oci front: stream ended before its StreamInit",
                );
            }
        };
        let (to_upstream, upstream_body) = channel_body();
        let (to_client, client_body) = channel_body();
        // A full channel of DEPTH cannot refuse its first message.
        let _ = to_upstream.send(Ok(Frame::data(init.raw()))).await;
        let key = stream_id(&init).map(|id| {
            let namespace = parts
                .headers
                .get(NAMESPACE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            (namespace.to_string(), id)
        });
        let tap = Arc::new(Tap {
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            divert: Mutex::new(None),
            replies: to_client.clone(),
        });
        if let Some(key) = &key {
            self.open
                .lock()
                .expect("not poisoned")
                .insert(key.clone(), tap.clone());
        }
        tokio::spawn(client_to_upstream(
            from_client,
            to_upstream,
            tap,
            self.clone(),
            key,
        ));
        let Ok(response) = inner.call(Request::from_parts(parts, upstream_body)).await;
        let (parts, body) = response.into_parts();
        tokio::spawn(upstream_to_client(Messages::new(body), to_client));
        Response::from_parts(parts, client_body)
    }

    fn forget(&self, key: &Key) {
        self.open.lock().expect("not poisoned").remove(key);
    }
}

/// The id a stream registers, from its first message (`Any` holding `StreamInit`).
fn stream_id(init: &frame::Message) -> Option<String> {
    let init: StreamInit = any::unpack(&init.payload().ok()?, any::STREAM_INIT)?;
    Some(init.id)
}

/// Client to containerd, or to the front once the stream is claimed.
async fn client_to_upstream(
    mut from_client: Messages,
    to_upstream: FrameSender,
    tap: Arc<Tap>,
    streams: Streams,
    key: Option<Key>,
) {
    while let Some(Ok(Item::Message(message))) = from_client.next().await {
        let divert = tap.divert.lock().expect("not poisoned").clone();
        match divert {
            Some(divert) => {
                let Ok(payload) = message.payload() else {
                    break;
                };
                if divert.send(payload).await.is_err() {
                    break;
                }
            }
            None => {
                if to_upstream
                    .send(Ok(Frame::data(message.raw())))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    // The client ended its side: end containerd's, and the claimant's.
    if let Some(key) = key {
        streams.forget(&key);
    }
    tap.divert.lock().expect("not poisoned").take();
}

/// containerd to the client, until either side goes away.
async fn upstream_to_client(mut from_upstream: Messages, to_client: FrameSender) {
    loop {
        let item = tokio::select! {
            item = from_upstream.next() => item,
            () = to_client.closed() => return,
        };
        let frame = match item {
            Some(Ok(Item::Message(message))) => Frame::data(message.raw()),
            Some(Ok(Item::Trailers(trailers))) => Frame::trailers(trailers),
            _ => return,
        };
        if to_client.send(Ok(frame)).await.is_err() {
            return;
        }
    }
}
