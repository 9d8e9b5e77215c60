//! containerd's Streaming service (`Streaming/Stream`) spliced through the front.
//!
//! A Transfer call names its data streams (import archive, progress, registry credentials) by
//! ids the client registered earlier with a `Stream` call that starts with `StreamInit{id}`.
//! The front relays every stream message by message, both ways, and remembers each open stream,
//! so that an import's archive can be *claimed*: from then on the client's messages come to the
//! front instead of containerd, and the front answers the client's flow control itself. A
//! claimed stream's containerd side is left idle: containerd only reads streams a Transfer names,
//! and the forwarded Transfer names a stream of the front's.
//!
//! Exports run the other way: containerd writes the archive on the client's stream and then
//! answers the Transfer, and `ctr` stops reading the stream once the Transfer returns. The
//! front therefore holds a Transfer's answer until the stream it exports to has been relayed
//! up to that point ([`Flush`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use containerd_client::services::v1::StreamInit;
use http::{HeaderMap, Request, Response, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::{mpsc, oneshot};
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
pub const NAMESPACE: &str = "containerd-namespace";

/// Longest a Transfer's answer waits for its export stream to reach the client.
const FLUSH_BOUND: Duration = Duration::from_secs(30);

/// A sender of body frames (the half of a relayed body the front writes).
pub type FrameSender = mpsc::Sender<Result<Frame<Bytes>, hyper::Error>>;

/// A body fed through a channel, and the sender feeding it.
pub fn channel_body() -> (FrameSender, Body) {
    channel_body_of(DEPTH)
}

/// [`channel_body`] holding at most `depth` frames.
pub fn channel_body_of(depth: usize) -> (FrameSender, Body) {
    let (tx, rx) = mpsc::channel(depth);
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
    divert: Mutex<Option<mpsc::Sender<Result<Bytes, String>>>>,
    /// Messages the front sends the client.
    replies: FrameSender,
    /// Barriers on the relay of containerd's messages ([`Flush`]).
    flushes: mpsc::Sender<oneshot::Sender<()>>,
}

/// A barrier on one stream's containerd-to-client relay.
#[derive(Debug)]
pub struct Flush {
    requests: mpsc::Sender<oneshot::Sender<()>>,
}

impl Flush {
    /// Waits until every message containerd had sent on the stream when this is called (as
    /// far as the front has received it) has been taken by the client's connection.
    async fn wait(self) {
        let (done, flushed) = oneshot::channel();
        if self.requests.send(done).await.is_ok() {
            // A relay that ended drops the request: nothing is left to wait for.
            let _ = flushed.await;
        }
    }
}

/// A stream the front took over: the client's messages, and a way to answer them.
#[derive(Debug)]
pub struct Claimed {
    /// The stream call's URI and headers (namespace, lease), for opening a sibling stream.
    pub uri: Uri,
    /// See [`Claimed::uri`].
    pub headers: HeaderMap,
    /// The client's messages (payloads); closed when the client ends its side, and an error
    /// when its side broke off instead (reset, a message past the limit or compressed): what
    /// came before is then not all the client meant to send.
    pub messages: mpsc::Receiver<Result<Bytes, String>>,
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

#[cfg(test)]
impl Claimed {
    /// A claimed stream whose client's messages come from a channel of `depth`: its sender,
    /// and the body the front's answers go to.
    fn of_channel(depth: usize) -> (Self, mpsc::Sender<Result<Bytes, String>>, Body) {
        let (tx, rx) = mpsc::channel(depth);
        let (replies, body) = channel_body();
        let claimed = Claimed {
            uri: Uri::default(),
            headers: HeaderMap::new(),
            messages: rx,
            replies,
        };
        (claimed, tx, body)
    }

    /// A claimed stream whose client sent `messages` and ended its side, and whose way back to
    /// the client is already closed.
    pub(crate) fn answered(messages: Vec<Bytes>) -> Self {
        let (claimed, tx, body) = Self::of_channel(messages.len().max(1));
        for message in messages {
            tx.try_send(Ok(message)).expect("room for every message");
        }
        drop(body);
        claimed
    }

    /// A claimed stream whose client keeps its side open and sends nothing (the sender of its
    /// messages, to keep), and reads what the front answers (kept in the returned body).
    pub(crate) fn silent() -> (Self, mpsc::Sender<Result<Bytes, String>>, Body) {
        Self::of_channel(1)
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

    /// A barrier on stream `id` of `namespace`, while its client has it open.
    pub fn flush(&self, namespace: &str, id: &str) -> Option<Flush> {
        let open = self.open.lock().expect("not poisoned");
        let tap = open.get(&(namespace.to_string(), id.to_string()))?;
        Some(Flush {
            requests: tap.flushes.clone(),
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
        let key = stream_id(&init).map(|id| (namespace(&parts.headers).to_string(), id));
        let (flushes, flush_requests) = mpsc::channel(DEPTH);
        let tap = Arc::new(Tap {
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            divert: Mutex::new(None),
            replies: to_client.clone(),
            flushes,
        });
        // An id already open stays the first stream's: containerd refuses the second stream
        // registering it, and a Transfer naming the id means the first.
        let key =
            key.filter(
                |key| match self.open.lock().expect("not poisoned").entry(key.clone()) {
                    Entry::Occupied(_) => false,
                    Entry::Vacant(vacant) => {
                        vacant.insert(tap.clone());
                        true
                    }
                },
            );
        tokio::spawn(client_to_upstream(
            from_client,
            to_upstream,
            tap,
            self.clone(),
            key,
        ));
        let Ok(response) = inner.call(Request::from_parts(parts, upstream_body)).await;
        if status::is_trailers_only(response.headers()) {
            return response;
        }
        let (parts, body) = response.into_parts();
        tokio::spawn(upstream_to_client(
            Messages::new(body),
            to_client,
            flush_requests,
        ));
        Response::from_parts(parts, client_body)
    }

    /// Forgets stream `key` when it is still `tap`'s (claimed, it is gone already, and the id
    /// may be another stream's since).
    fn forget(&self, key: &Key, tap: &Arc<Tap>) {
        let mut open = self.open.lock().expect("not poisoned");
        if open.get(key).is_some_and(|open| Arc::ptr_eq(open, tap)) {
            open.remove(key);
        }
    }
}

/// The containerd namespace a call names.
pub fn namespace(headers: &HeaderMap) -> &str {
    headers
        .get(NAMESPACE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
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
    while let Some(item) = from_client.next().await {
        let divert = tap.divert.lock().expect("not poisoned").clone();
        let message = match item {
            Ok(Item::Message(message)) => message,
            // Broken off: a claimant is told so, rather than take it for the end.
            broken => {
                if let Some(divert) = divert {
                    let reason = match broken {
                        Err(reason) => reason,
                        Ok(_) => "the client sent trailers".into(),
                    };
                    let _ = divert.send(Err(reason)).await;
                }
                break;
            }
        };
        match divert {
            Some(divert) => {
                let payload = message.payload();
                let broken = payload.is_err();
                if divert.send(payload).await.is_err() || broken {
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
        streams.forget(&key, &tap);
    }
    tap.divert.lock().expect("not poisoned").take();
}

/// containerd to the client, until either side goes away; answers flush requests on the way.
async fn upstream_to_client(
    mut from_upstream: Messages,
    to_client: FrameSender,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
) {
    loop {
        let item = tokio::select! {
            item = from_upstream.next() => item,
            Some(done) = flushes.recv() => {
                if drain(&mut from_upstream, &to_client).await.is_none() {
                    return;
                }
                let _ = done.send(());
                continue;
            }
            () = to_client.closed() => return,
        };
        if relay(item, &to_client).await.is_none() {
            return;
        }
    }
}

/// Relays what containerd's side already holds, then waits until the client's connection has
/// taken all of it; `None` when the relay is over.
async fn drain(from_upstream: &mut Messages, to_client: &FrameSender) -> Option<()> {
    loop {
        // `next` is cancel-safe: a message it had begun stays buffered.
        let ready = tokio::select! {
            biased;
            item = from_upstream.next() => Some(item),
            () = std::future::ready(()) => None,
        };
        match ready {
            Some(item) => relay(item, to_client).await?,
            None => break,
        }
    }
    // The channel is empty once hyper has taken every frame for the client.
    drop(to_client.reserve_many(DEPTH).await.ok()?);
    Some(())
}

/// Passes one item of containerd's side to the client; `None` when the relay is over.
async fn relay(item: Option<Result<Item, String>>, to_client: &FrameSender) -> Option<()> {
    let frame = match item {
        Some(Ok(Item::Message(message))) => Frame::data(message.raw()),
        Some(Ok(Item::Trailers(trailers))) => Frame::trailers(trailers),
        _ => return None,
    };
    to_client.send(Ok(frame)).await.ok()
}

/// `response` with its trailers (which complete a unary call) held back until `flush` is
/// through, or `FLUSH_BOUND` has passed. A refusal at once ("trailers-only") is passed on as
/// it is ([`status::is_trailers_only`]): containerd wrote nothing to wait for.
pub fn trailers_after(response: Response<Body>, flush: Flush) -> Response<Body> {
    if status::is_trailers_only(response.headers()) {
        return response;
    }
    let (parts, mut body) = response.into_parts();
    let (to_client, client_body) = channel_body();
    tokio::spawn(async move {
        let mut flush = Some(flush);
        // A client gone ends the relay, and with it containerd's call (its body dropped): the
        // export it asked for stops.
        let relay = async {
            while let Some(frame) = body.frame().await {
                if frame.as_ref().is_ok_and(Frame::is_trailers)
                    && let Some(flush) = flush.take()
                    && tokio::time::timeout(FLUSH_BOUND, flush.wait())
                        .await
                        .is_err()
                {
                    tracing::warn!("export stream not relayed within {FLUSH_BOUND:?}; answering");
                }
                if to_client.send(frame).await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = relay => {}
            () = to_client.closed() => {}
        }
    });
    Response::from_parts(parts, client_body)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use prost::Message as _;

    use super::*;

    /// containerd refusing a stream before any message ("trailers-only") is answered as it
    /// is: hyper then ends the call with the status headers, as grpc-go clients expect.
    #[tokio::test]
    async fn a_stream_containerd_refuses_at_once_keeps_its_status_headers() {
        let containerd = tower::service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(status::error(Code::Unavailable, "refused"))
        });
        let init = any::pack(
            any::STREAM_INIT,
            &StreamInit { id: "s-1".into() }.encode_to_vec(),
        );
        let body = http_body_util::Full::new(frame::encode(&init))
            .map_err(|never| match never {})
            .boxed_unsync();
        let response = Streams::default()
            .splice(Request::new(body), containerd)
            .await;
        assert_eq!(response.headers()["grpc-status"], "14");
        assert!(http_body::Body::is_end_stream(response.body()));
    }

    /// Stream `export-1` of namespace `default`, opened by a client through `streams` to a
    /// containerd that writes what is sent on the returned sender; the client's side.
    async fn export_stream(streams: &Streams) -> (FrameSender, Response<Body>) {
        let (_client_writes, containerd_writes, client_side) =
            open_stream(streams, "export-1").await;
        (containerd_writes, client_side)
    }

    /// Stream `id` of namespace `default`, opened by a client through `streams` to a
    /// containerd that writes what is sent on the second sender: what the client writes on
    /// the first, and the client's side.
    async fn open_stream(
        streams: &Streams,
        id: &str,
    ) -> (FrameSender, FrameSender, Response<Body>) {
        let (containerd_writes, containerd_side) = channel_body();
        let mut containerd_side = Some(containerd_side);
        let containerd = tower::service_fn(move |_: Request<Body>| {
            let body = containerd_side.take().expect("one stream");
            async move { Ok::<_, Infallible>(Response::new(body)) }
        });
        let (client_writes, client_side) = channel_body();
        let init = StreamInit { id: id.into() };
        let init = any::pack(any::STREAM_INIT, &init.encode_to_vec());
        client_writes
            .send(Ok(Frame::data(frame::encode(&init))))
            .await
            .unwrap();
        let request = Request::builder()
            .header(NAMESPACE, "default")
            .body(client_side)
            .unwrap();
        let response = streams.splice(request, containerd).await;
        (client_writes, containerd_writes, response)
    }

    /// An answer held back for an export stream ends containerd's call once its client is
    /// gone, rather than keep the export running until containerd answers.
    #[tokio::test]
    async fn a_held_answer_ends_when_its_client_goes() {
        let streams = Streams::default();
        let (_client, _, _reads) = open_stream(&streams, "export-1").await;
        let flush = streams.flush("default", "export-1").expect("open");
        let (containerd_writes, containerd_body) = channel_body();
        let held = trailers_after(Response::new(containerd_body), flush);
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), containerd_writes.closed())
            .await
            .expect("containerd's call still open after the client went");
    }

    /// A claimed stream that breaks off (here: a compressed message, which the front does
    /// not read) is said to have, not taken for one its client ended.
    #[tokio::test]
    async fn a_claimed_stream_breaking_off_says_so() {
        let streams = Streams::default();
        let (client, _, _reads) = open_stream(&streams, "import-1").await;
        let mut claimed = streams.claim("default", "import-1").expect("open");
        client
            .send(Ok(Frame::data(frame::encode(b"whole"))))
            .await
            .unwrap();
        let mut compressed = frame::encode(b"squeezed").to_vec();
        compressed[0] = 1;
        client
            .send(Ok(Frame::data(compressed.into())))
            .await
            .unwrap();
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(5), claimed.messages.recv())
                .await
                .expect("a message or the end")
        };
        assert_eq!(next().await.unwrap().unwrap(), &b"whole"[..]);
        let broken = next().await.expect("not the end").unwrap_err();
        assert!(broken.contains("compressed"), "{broken}");
    }

    /// A second stream registering an open id (containerd refuses it) neither takes the
    /// first's place nor, once it ends, removes it.
    #[tokio::test]
    async fn a_stream_id_open_twice_stays_the_first_streams() {
        let streams = Streams::default();
        let (first, _, _first_reads) = open_stream(&streams, "import-1").await;
        let (second, _, _second_reads) = open_stream(&streams, "import-1").await;
        drop(second);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut claimed = streams.claim("default", "import-1").expect("still open");
        first
            .send(Ok(Frame::data(frame::encode(b"the first's"))))
            .await
            .unwrap();
        let message = tokio::time::timeout(Duration::from_secs(5), claimed.messages.recv())
            .await
            .expect("the first stream's message");
        assert_eq!(
            message.map(|message| message.unwrap()).as_deref(),
            Some(&b"the first's"[..])
        );

        // Claimed, the id is free: the first stream's end leaves a stream registering it since.
        let (_third, _, _third_reads) = open_stream(&streams, "import-1").await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(streams.claim("default", "import-1").is_some());
    }

    /// A Transfer containerd refuses at once (an export of an image it lacks) keeps its
    /// status headers, which grpc-go clients (ctr) read as the call's status.
    #[tokio::test]
    async fn an_export_containerd_refuses_at_once_keeps_its_status_headers() {
        let streams = Streams::default();
        let (_containerd_writes, _client_reads) = export_stream(&streams).await;
        let flush = streams.flush("default", "export-1").unwrap();
        let refused = trailers_after(status::error(Code::Unavailable, "refused"), flush);
        assert_eq!(refused.headers()["grpc-status"], "14");
        assert!(http_body::Body::is_end_stream(refused.body()));
    }

    /// A Transfer that exported to a stream answers only once the client has taken what
    /// containerd wrote on that stream before answering.
    #[tokio::test]
    async fn a_transfer_answers_after_its_export_stream_is_relayed() {
        let streams = Streams::default();
        let (containerd_writes, client_side) = export_stream(&streams).await;
        let mut client_reads = Messages::new(client_side.into_body());

        // containerd writes the archive, then answers the Transfer.
        containerd_writes
            .send(Ok(Frame::data(frame::encode(b"archive"))))
            .await
            .unwrap();
        let flush = streams.flush("default", "export-1").unwrap();
        let (answers, answer) = channel_body();
        answers
            .send(Ok(Frame::trailers(HeaderMap::new())))
            .await
            .unwrap();
        let mut answer = trailers_after(Response::new(answer), flush).into_body();

        // The answer is held while the archive waits for the client...
        let early = tokio::time::timeout(Duration::from_millis(200), answer.frame()).await;
        assert!(early.is_err(), "answered before the export was relayed");
        // ...and comes once the client has taken it.
        let Some(Ok(Item::Message(archive))) = client_reads.next().await else {
            panic!("the archive was not relayed");
        };
        assert_eq!(archive.payload().unwrap(), &b"archive"[..]);
        let trailers = answer.frame().await.unwrap().unwrap();
        assert!(trailers.is_trailers());
    }
}
