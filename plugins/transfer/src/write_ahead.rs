//! containerd's `Content.Write` with each write answered as soon as the front has it.
//!
//! containerd 1.6 clients pull client-side: `ctr` fetches every blob and writes it through
//! `Content.Write` in 1 MiB messages, each answered before the next is read from the
//! registry. Forwarded plainly, every message waits for its relay to containerd and the answer's
//! relay back, one after the other. Here the front answers a `WRITE` itself once it holds the
//! whole message and passes the message on, so the client fetches the next MiB while containerd
//! writes this one.
//!
//! Nothing is promised that containerd has not confirmed by the end: containerd answers every
//! message in order, and each answer to an early-answered write is checked against the offset
//! the front gave. An error from containerd ends the call with that error; a different offset,
//! or a call ended with writes unconfirmed, ends it with one of the front's. `STAT` and
//! `COMMIT` (the commit is what makes content exist) are always containerd's own answers, and
//! no early answer overtakes one still awaited, so the client reads answers in request order.
//! The bytes answered early and not yet confirmed are bounded ([`UNCONFIRMED`]); past the bound
//! a write waits for containerd's answer, as when forwarded plainly. So does a write containerd
//! is sure to refuse (at an offset other than 0 or where the ingest will stand, or after a
//! commit): the client reads containerd's refusal as its answer.
//!
//! Only calls that name the digest they write (pulls do, from the descriptor) are answered
//! early. An early answer is containerd's previous answer on the call (its total and
//! timestamps) with the new offset. It carries no running digest (the digest of the bytes so
//! far, which the front does not compute), and neither do containerd's answers to writes
//! relayed on such a call, so that the Go client's `Digest()` is never that of an earlier part.
//! Calls that do not name their digest read it from those answers (`ctr image convert`,
//! checkpoints): they are relayed as containerd gives them. Status and commit answers always
//! carry containerd's digest.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use containerd_client::services::v1::{WriteAction, WriteContentResponse};
use http::{Request, Response};
use http_body::Frame;
use prost::Message as _;
use tokio::sync::mpsc;

use crate::forward::{Answer, Relay};
use crate::frame::{self, Item, Messages};
use crate::status::{self, Code};
use crate::streams::{FrameSender, channel_body, channel_body_of};
use crate::upstream::Body;

/// The method answered early.
pub const WRITE: &str = "/containerd.services.content.v1.Content/Write";

/// Most bytes of one call answered early and not yet confirmed by containerd: a few of
/// containerd's clients' 1 MiB messages, so that a client never waits on the relay while the
/// front's memory per call stays small.
const UNCONFIRMED: usize = 4 << 20;

/// Largest message of a write, as containerd takes them (its `DefaultMaxRecvMsgSize`): relayed
/// plainly, any message containerd would take passed the front, and still does.
const MAX_WRITE_MESSAGE: usize = 16 << 20;

/// Messages queued for containerd: as many 1 MiB messages as [`UNCONFIRMED`] answers ahead, so
/// a client that sends without waiting for answers is held back as soon.
const QUEUED: usize = 4;

/// Early answers queued for the client at most (a few small writes; large ones are bounded by
/// [`UNCONFIRMED`]).
const EARLY_DEPTH: usize = 16;

/// Answers `Content.Write` messages early in front of a service.
#[derive(Debug, Clone, Default)]
pub struct WriteAheadLayer;

impl<S> tower::Layer<S> for WriteAheadLayer {
    type Service = WriteAhead<S>;

    fn layer(&self, inner: S) -> WriteAhead<S> {
        WriteAhead { inner }
    }
}

/// The service [`WriteAheadLayer`] makes.
#[derive(Debug, Clone)]
pub struct WriteAhead<S> {
    inner: S,
}

impl<S: Relay> tower::Service<Request<Body>> for WriteAhead<S> {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.uri().path() != WRITE {
            return Box::pin(self.inner.call(request));
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { Ok(write_ahead(request, inner).await) })
    }
}

/// The fields of containerd's `WriteContentRequest` the front reads. Decoded from the message's
/// own buffer, `data` is a slice of it rather than a copy of every MiB.
#[derive(Clone, PartialEq, prost::Message)]
struct WriteRequest {
    #[prost(enumeration = "WriteAction", tag = "1")]
    action: i32,
    #[prost(string, tag = "4")]
    expected: String,
    #[prost(int64, tag = "5")]
    offset: i64,
    #[prost(bytes = "bytes", tag = "6")]
    data: Bytes,
}

/// What one call has passed on to containerd and not yet seen answered.
#[derive(Debug, Default)]
struct Ledger {
    /// Messages passed on, oldest first.
    awaited: VecDeque<Awaited>,
    /// Bytes of the early-answered writes among them.
    unconfirmed: usize,
    /// containerd's latest answer; none before its first, and no early answer before then
    /// (the first message opens the write, and may fail to).
    last: Option<WriteContentResponse>,
    /// Where the ingest stands once containerd has taken the messages passed on, when the
    /// front knows: a write elsewhere (but at 0, which starts over) is containerd's to refuse.
    next_offset: Option<i64>,
    /// A commit was passed on: containerd reads nothing after it.
    committed: bool,
    /// The client named the digest it writes (as pulls do, from the descriptor). Only such
    /// calls are answered early: a client that does not know the digest reads it from the
    /// answers to its writes (containerd's running digest, which the front does not compute).
    expects_digest: bool,
}

/// A message passed on to containerd, by who answers the client.
#[derive(Debug)]
enum Awaited {
    /// containerd's answer goes to the client.
    Relayed,
    /// The front answered a write of `len` bytes ending at `offset`; containerd's answer must
    /// agree.
    Early { offset: i64, len: usize },
}

impl Ledger {
    /// The early answer to `request` (recording it as awaited either way), or `None` when
    /// containerd's answer is relayed instead.
    fn answer(&mut self, request: Option<WriteRequest>) -> Option<WriteContentResponse> {
        if let Some(request) = &request {
            self.committed |= request.action == WriteAction::Commit as i32;
            self.expects_digest |= !request.expected.is_empty();
        }
        let early = request.zip(self.last.as_ref()).and_then(|(request, last)| {
            let len = request.data.len();
            let end = request.offset.checked_add(i64::try_from(len).ok()?)?;
            let writes = request.action == WriteAction::Write as i32
                && len > 0
                && (request.offset == 0 || Some(request.offset) == self.next_offset)
                // containerd checks an expected digest first, and may refuse the write.
                && request.expected.is_empty()
                && self.expects_digest
                && !self.committed;
            let in_order = !self
                .awaited
                .iter()
                .any(|awaited| matches!(awaited, Awaited::Relayed));
            (writes && in_order && self.unconfirmed + len <= UNCONFIRMED).then(|| {
                let mut answer = last.clone();
                answer.action = WriteAction::Write as i32;
                answer.offset = end;
                answer.digest.clear();
                (answer, len)
            })
        });
        match early {
            Some((answer, len)) => {
                self.awaited.push_back(Awaited::Early {
                    offset: answer.offset,
                    len,
                });
                self.unconfirmed += len;
                self.next_offset = Some(answer.offset);
                Some(answer)
            }
            None => {
                self.awaited.push_back(Awaited::Relayed);
                self.next_offset = None;
                None
            }
        }
    }

    /// Matches containerd's next answer with what it answers: the message to relay, `None`
    /// when the front answered already, and the error ending the call when the two disagree.
    /// On calls answered early, relayed answers to writes lose the running digest, as early
    /// ones have none: containerd's Go client keeps the last digest it was given, which would
    /// otherwise be that of an earlier part.
    fn confirm(&mut self, answer: &frame::Message) -> Result<Option<Bytes>, String> {
        let decoded = answer
            .payload()
            .ok()
            .and_then(|payload| WriteContentResponse::decode(payload).ok());
        match self.awaited.pop_front() {
            Some(Awaited::Early { offset, len }) => {
                self.unconfirmed -= len;
                match decoded {
                    Some(answer)
                        if answer.action == WriteAction::Write as i32
                            && answer.offset == offset =>
                    {
                        self.last = Some(answer);
                        Ok(None)
                    }
                    Some(answer) => Err(format!(
                        "containerd answered {} at offset {} where the front had answered a \
                         write up to {offset}",
                        action_name(answer.action),
                        answer.offset
                    )),
                    None => Err("containerd answered a write with an unreadable message".into()),
                }
            }
            // Answers beyond the messages passed on (containerd repeats its last answer when
            // the client ends its side) are relayed too.
            Some(Awaited::Relayed) | None => {
                let Some(mut decoded) = decoded else {
                    self.next_offset = None;
                    return Ok(Some(answer.raw()));
                };
                // Early answers are given only while nothing relayed is awaited, so the offset
                // counts once the last of those is answered.
                self.next_offset = Some(decoded.offset);
                self.last = Some(decoded.clone());
                if !self.expects_digest
                    || decoded.action != WriteAction::Write as i32
                    || decoded.digest.is_empty()
                {
                    return Ok(Some(answer.raw()));
                }
                decoded.digest.clear();
                Ok(Some(frame::encode(&decoded.encode_to_vec())))
            }
        }
    }

    /// Bytes answered early that containerd never confirmed.
    fn unanswered(&self) -> usize {
        self.unconfirmed
    }
}

/// containerd's name for `action`, for messages.
fn action_name(action: i32) -> &'static str {
    WriteAction::try_from(action).map_or("an unknown action", |action| action.as_str_name())
}

/// Relays one `Content.Write` call through `inner` (containerd), answering writes early.
async fn write_ahead<S>(request: Request<Body>, mut inner: S) -> Response<Body>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible>,
{
    let (parts, body) = request.into_parts();
    let (to_containerd, containerd_body) = channel_body_of(QUEUED);
    let (early, mut early_answers) = mpsc::channel(EARLY_DEPTH);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let client_side = tokio::spawn(client_to_containerd(
        Messages::with_limit(body, MAX_WRITE_MESSAGE),
        to_containerd,
        early,
        ledger.clone(),
    ));
    let Ok(response) = inner
        .call(Request::from_parts(parts, containerd_body))
        .await;
    if status::is_trailers_only(response.headers()) {
        client_side.abort();
        // Nothing is answered early before containerd's first answer, so a queued frame is the
        // front's refusal of what the client sent, which ended containerd's side: it says why
        // (containerd only saw its input end).
        return match early_answers.try_recv().map(Frame::into_trailers) {
            Ok(Ok(refusal)) => status::trailers_only(refusal),
            _ => response,
        };
    }
    let (parts, body) = response.into_parts();
    let (to_client, client_body) = channel_body();
    let relay = containerd_to_client(Messages::new(body), early_answers, to_client, ledger);
    tokio::spawn(async move {
        relay.await;
        // The call is over: what the client still sends goes nowhere, and containerd's side
        // ends now rather than when the client ends its own.
        client_side.abort();
    });
    Response::from_parts(parts, client_body)
}

/// The client's messages to containerd, each write answered early where [`Ledger::answer`]
/// allows. A client that ends its side ends containerd's side; one that sends what the front
/// cannot read, or breaks off, ends the call.
async fn client_to_containerd(
    mut from_client: Messages,
    to_containerd: FrameSender,
    early: mpsc::Sender<Frame<Bytes>>,
    ledger: Arc<Mutex<Ledger>>,
) {
    loop {
        let message = match from_client.next().await {
            Some(Ok(Item::Message(message))) => message,
            // A client that broke off no longer reads it.
            Some(Err(e)) => {
                let error = status::trailers(Code::InvalidArgument, &format!("tuf-oci front: {e}"));
                let _ = early.send(Frame::trailers(error)).await;
                return;
            }
            _ => return,
        };
        let request = message
            .payload()
            .ok()
            .and_then(|payload| WriteRequest::decode(payload).ok());
        let answer = lock(&ledger).answer(request);
        if let Some(answer) = answer
            && early
                .send(Frame::data(frame::encode(&answer.encode_to_vec())))
                .await
                .is_err()
        {
            return;
        }
        if to_containerd
            .send(Ok(Frame::data(message.raw())))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The answers to the client: the front's early ones, and containerd's less those it answered
/// early, until either side goes away. The only sender of the client's side, so that the call
/// ends when containerd's does.
async fn containerd_to_client(
    mut from_containerd: Messages,
    mut early: mpsc::Receiver<Frame<Bytes>>,
    to_client: FrameSender,
    ledger: Arc<Mutex<Ledger>>,
) {
    loop {
        let item = tokio::select! {
            biased;
            Some(answer) = early.recv() => {
                if !send(&to_client, answer).await {
                    return;
                }
                continue;
            }
            item = from_containerd.next() => item,
            () = to_client.closed() => return,
        };
        // An early answer is queued before its write is passed on, so before any later answer
        // of containerd's can arrive: those queued go first, to keep answers in order.
        while let Ok(answer) = early.try_recv() {
            if !send(&to_client, answer).await {
                return;
            }
        }
        let frame = match item {
            Some(Ok(Item::Message(answer))) => match lock(&ledger).confirm(&answer) {
                Ok(Some(relayed)) => Frame::data(relayed),
                Ok(None) => continue,
                Err(reason) => {
                    tracing::warn!(%reason, "content write ended");
                    Frame::trailers(status::trailers(
                        Code::Internal,
                        &format!("tuf-oci front: {reason}"),
                    ))
                }
            },
            Some(Ok(Item::Trailers(trailers))) => {
                let unanswered = lock(&ledger).unanswered();
                if unanswered > 0 && trailers.get("grpc-status").is_none_or(|s| s == "0") {
                    Frame::trailers(status::trailers(
                        Code::Internal,
                        &format!(
                            "tuf-oci front: containerd ended the write without confirming \
                             {unanswered} bytes the front had answered for"
                        ),
                    ))
                } else {
                    Frame::trailers(trailers)
                }
            }
            // Reset, or ended without a status (containerd restarting, say).
            ended => {
                let unanswered = lock(&ledger).unanswered();
                let reason = match ended {
                    Some(Err(e)) => e,
                    _ => "ended without a status".into(),
                };
                Frame::trailers(status::trailers(
                    Code::Unavailable,
                    &format!(
                        "tuf-oci front: containerd's side of the write: {reason} \
                         ({unanswered} bytes answered early unconfirmed)"
                    ),
                ))
            }
        };
        if !send(&to_client, frame).await {
            return;
        }
    }
}

/// Sends the client `frame`; whether the call goes on (the client is there and the frame did
/// not end the call).
async fn send(to_client: &FrameSender, frame: Frame<Bytes>) -> bool {
    let ends = frame.is_trailers();
    to_client.send(Ok(frame)).await.is_ok() && !ends
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use containerd_client::services::v1::WriteContentRequest;
    use http::HeaderMap;
    use http_body_util::BodyExt as _;

    use super::*;

    fn write(offset: i64, len: usize) -> Option<WriteRequest> {
        Some(WriteRequest {
            action: WriteAction::Write as i32,
            offset,
            data: Bytes::from(vec![0; len]),
            ..Default::default()
        })
    }

    /// A status request naming the digest written, as pulls send it.
    fn stat() -> Option<WriteRequest> {
        Some(WriteRequest {
            expected: "sha256:whole".into(),
            ..Default::default()
        })
    }

    fn commit() -> Option<WriteRequest> {
        Some(WriteRequest {
            action: WriteAction::Commit as i32,
            ..Default::default()
        })
    }

    fn framed(answer: &WriteContentResponse) -> Bytes {
        frame::encode(&answer.encode_to_vec())
    }

    /// containerd's answer (with a running digest), framed as it arrives.
    fn answer(action: WriteAction, offset: i64) -> frame::Message {
        let answer = WriteContentResponse {
            action: action as i32,
            offset,
            total: 9,
            digest: "sha256:running".into(),
            ..Default::default()
        };
        let mut messages = Messages::new(
            http_body_util::Full::new(framed(&answer))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        let Some(Ok(Item::Message(message))) =
            futures_util::FutureExt::now_or_never(messages.next()).flatten()
        else {
            panic!("one message");
        };
        message
    }

    /// The answer `confirm` relays, decoded; `None` when the front answered already.
    fn relayed(confirmed: Result<Option<Bytes>, String>) -> Option<WriteContentResponse> {
        let framed = confirmed.expect("no disagreement")?;
        Some(WriteContentResponse::decode(frame::single_message(&framed).unwrap()).unwrap())
    }

    /// A ledger whose write containerd opened at `offset`.
    fn opened(offset: i64) -> Ledger {
        let mut ledger = Ledger::default();
        assert!(ledger.answer(stat()).is_none());
        relayed(ledger.confirm(&answer(WriteAction::Stat, offset))).unwrap();
        ledger
    }

    #[test]
    fn writes_are_answered_early_once_the_write_is_open_and_in_order() {
        let mut ledger = Ledger::default();
        assert!(ledger.answer(stat()).is_none());
        // Nothing before containerd's first answer: the write may not open.
        assert!(ledger.answer(write(0, 4)).is_none());
        relayed(ledger.confirm(&answer(WriteAction::Stat, 0))).unwrap();
        let first = relayed(ledger.confirm(&answer(WriteAction::Write, 4))).unwrap();
        assert!(
            first.digest.is_empty(),
            "a relayed write loses its running digest"
        );

        let early = ledger.answer(write(4, 5)).expect("answered early");
        assert_eq!((early.action, early.offset), (WriteAction::Write as i32, 9));
        assert_eq!(early.total, 9, "containerd's other fields carried over");
        assert!(early.digest.is_empty());

        // A commit is containerd's to answer, and no early answer overtakes it or follows it.
        assert!(ledger.answer(commit()).is_none());
        assert!(ledger.answer(write(9, 1)).is_none());
        assert!(relayed(ledger.confirm(&answer(WriteAction::Write, 9))).is_none());
        let committed = relayed(ledger.confirm(&answer(WriteAction::Commit, 9))).unwrap();
        assert_eq!(
            committed.digest, "sha256:running",
            "a commit keeps its digest"
        );
        relayed(ledger.confirm(&answer(WriteAction::Write, 10))).unwrap();
        assert!(
            ledger.answer(write(10, 1)).is_none(),
            "a write after the commit"
        );

        // An expected digest lets containerd refuse the write (the content exists).
        let mut ledger = opened(0);
        let expecting = WriteRequest {
            expected: "sha256:x".into(),
            ..write(0, 1).unwrap()
        };
        assert!(ledger.answer(Some(expecting)).is_none());
        let mut ledger = opened(0);
        assert!(
            ledger.answer(None).is_none(),
            "unreadable requests are relayed"
        );
    }

    #[test]
    fn calls_not_naming_their_digest_are_answered_by_containerd() {
        let mut ledger = Ledger::default();
        assert!(ledger.answer(Some(WriteRequest::default())).is_none());
        relayed(ledger.confirm(&answer(WriteAction::Stat, 0))).unwrap();
        assert!(ledger.answer(write(0, 4)).is_none());
        let written = relayed(ledger.confirm(&answer(WriteAction::Write, 4))).unwrap();
        assert_eq!(
            written.digest, "sha256:running",
            "the running digest is kept"
        );
    }

    #[test]
    fn writes_containerd_will_refuse_are_its_to_answer() {
        // Neither where the ingest stands nor at 0 (which starts over).
        let mut ledger = opened(10);
        assert!(ledger.answer(write(4, 1)).is_none());
        let mut ledger = opened(10);
        assert!(ledger.answer(write(0, 1)).is_some());
        assert!(ledger.answer(write(1, 1)).is_some());
        assert!(ledger.answer(write(3, 1)).is_none());
        // Ending past the largest offset.
        let mut ledger = opened(i64::MAX);
        assert!(ledger.answer(write(i64::MAX, 1)).is_none());
    }

    #[test]
    fn unconfirmed_bytes_are_bounded() {
        let mut ledger = opened(0);
        let mib = 1 << 20;
        for i in 0..UNCONFIRMED / mib {
            assert!(ledger.answer(write((i * mib) as i64, mib)).is_some());
        }
        assert!(ledger.answer(write(UNCONFIRMED as i64, 1)).is_none());
        assert_eq!(ledger.unanswered(), UNCONFIRMED);
        assert!(relayed(ledger.confirm(&answer(WriteAction::Write, mib as i64))).is_none());
        assert_eq!(ledger.unanswered(), UNCONFIRMED - mib);
    }

    #[test]
    fn containerd_disagreeing_with_an_early_answer_ends_the_call() {
        let mut ledger = opened(0);
        ledger.answer(write(0, 4)).unwrap();
        let error = ledger.confirm(&answer(WriteAction::Write, 3)).unwrap_err();
        assert!(
            error.contains("WRITE at offset 3") && error.contains("write up to 4"),
            "{error}"
        );

        let mut ledger = opened(0);
        ledger.answer(write(0, 8)).unwrap();
        let error = ledger.confirm(&answer(WriteAction::Stat, 8)).unwrap_err();
        assert!(error.contains("answered STAT at offset 8"), "{error}");
    }

    /// The front's reading of a write agrees with containerd's own message type.
    #[test]
    fn write_requests_read_as_containerd_writes_them() {
        let sent = WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: "ingest".into(),
            total: 7,
            expected: "sha256:e".into(),
            offset: 3,
            data: b"four".to_vec(),
            labels: [("k".to_string(), "v".to_string())].into(),
        };
        let read = WriteRequest::decode(Bytes::from(sent.encode_to_vec())).unwrap();
        assert_eq!(read.action, sent.action);
        assert_eq!(read.expected, sent.expected);
        assert_eq!(read.offset, sent.offset);
        assert_eq!(read.data, sent.data);
    }

    /// containerd refusing a write before any message ("trailers-only") is answered as it is:
    /// hyper then ends the call with the status headers, as grpc-go clients (ctr) expect.
    #[tokio::test]
    async fn a_write_containerd_refuses_at_once_keeps_its_status_headers() {
        let containerd = tower::service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(status::error(Code::Unavailable, "ref locked"))
        });
        let body = http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let response = write_ahead(Request::new(body), containerd).await;
        assert_eq!(response.headers()["grpc-status"], "14");
        assert!(http_body::Body::is_end_stream(response.body()));
    }

    /// A message the front cannot take, sent before containerd's first answer, ends
    /// containerd's side: the client reads the front's reason, not containerd's refusal of an
    /// input that ended.
    #[tokio::test]
    async fn a_message_too_large_before_containerd_answers_is_refused_by_the_front() {
        let containerd = tower::service_fn(|request: Request<Body>| async move {
            let mut sent = request.into_body();
            while sent.frame().await.is_some() {}
            Ok::<_, Infallible>(status::error(Code::Unavailable, "EOF"))
        });
        let (client, client_side) = channel_body();
        let mut header = vec![0];
        header.extend_from_slice(&u32::try_from(MAX_WRITE_MESSAGE + 1).unwrap().to_be_bytes());
        client
            .send(Ok(Frame::data(Bytes::from(header))))
            .await
            .unwrap();
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            write_ahead(Request::new(client_side), containerd),
        )
        .await
        .expect("answered while the client still holds its side");
        assert_eq!(response.headers()["grpc-status"], "3");
        let message = response.headers()["grpc-message"].to_str().unwrap();
        assert!(message.contains("exceeds 16777216"), "{message}");
        assert!(http_body::Body::is_end_stream(response.body()));
        drop(client);
    }

    /// One call through [`write_ahead`] to a containerd played by the test: what the client
    /// sends, what containerd sends, and what the client reads.
    struct Call {
        client: FrameSender,
        containerd: FrameSender,
        reads: Messages,
        /// The messages containerd received, once its side of the call has ended.
        containerd_received: tokio::sync::oneshot::Receiver<Vec<WriteContentRequest>>,
    }

    impl Call {
        /// Opens the call and answers its status at `offset`, as containerd does.
        async fn open(offset: i64) -> Self {
            let (containerd, containerd_side) = channel_body();
            let mut containerd_side = Some(containerd_side);
            let (ended, containerd_received) = tokio::sync::oneshot::channel();
            let mut ended = Some(ended);
            let service = tower::service_fn(move |request: Request<Body>| {
                // containerd reads what the client sends.
                let ended = ended.take().expect("one call");
                tokio::spawn(async move {
                    let mut sent = Messages::with_limit(request.into_body(), MAX_WRITE_MESSAGE);
                    let mut received = Vec::new();
                    while let Some(Ok(Item::Message(message))) = sent.next().await {
                        let payload = message.payload().unwrap();
                        received.push(WriteContentRequest::decode(payload).unwrap());
                    }
                    let _ = ended.send(received);
                });
                let body = containerd_side.take().expect("one call");
                async move { Ok::<_, Infallible>(Response::new(body)) }
            });
            let (client, client_side) = channel_body();
            let stat = WriteContentRequest {
                expected: "sha256:whole".into(),
                ..Default::default()
            };
            client
                .send(Ok(Frame::data(frame::encode(&stat.encode_to_vec()))))
                .await
                .unwrap();
            let status = WriteContentResponse {
                offset,
                ..Default::default()
            };
            containerd
                .send(Ok(Frame::data(framed(&status))))
                .await
                .unwrap();
            let response = write_ahead(Request::new(client_side), service).await;
            let mut call = Call {
                client,
                containerd,
                reads: Messages::new(response.into_body()),
                containerd_received,
            };
            assert_eq!(call.read().await.unwrap().offset, offset);
            call
        }

        async fn write(&self, offset: i64, data: &[u8]) {
            let request = WriteContentRequest {
                action: WriteAction::Write as i32,
                offset,
                data: data.to_vec(),
                ..Default::default()
            };
            self.client
                .send(Ok(Frame::data(frame::encode(&request.encode_to_vec()))))
                .await
                .unwrap();
        }

        /// The client's next answer, or the status ending the call.
        async fn read(&mut self) -> Result<WriteContentResponse, String> {
            let item = tokio::time::timeout(Duration::from_secs(5), self.reads.next())
                .await
                .expect("an answer within 5 s");
            match item {
                Some(Ok(Item::Message(answer))) => {
                    Ok(WriteContentResponse::decode(answer.payload().unwrap()).unwrap())
                }
                Some(Ok(Item::Trailers(trailers))) => Err(format!(
                    "{} {}",
                    trailers["grpc-status"].to_str().unwrap(),
                    trailers["grpc-message"].to_str().unwrap()
                )),
                other => panic!("the call ended without a status: {other:?}"),
            }
        }
    }

    /// containerd's trailers with `code`.
    fn trailers(code: &str) -> Frame<Bytes> {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", code.parse().unwrap());
        trailers.insert("grpc-message", "containerd's reason".parse().unwrap());
        Frame::trailers(trailers)
    }

    #[tokio::test]
    async fn containerd_refusing_an_early_answered_write_ends_the_call_with_its_error() {
        let mut call = Call::open(0).await;
        call.write(0, b"abcd").await;
        assert_eq!(
            call.read().await.unwrap().offset,
            4,
            "answered by the front"
        );
        // containerd fails the write (its disk is full, say).
        call.containerd.send(Ok(trailers("15"))).await.unwrap();
        assert_eq!(call.read().await.unwrap_err(), "15 containerd's reason");
    }

    #[tokio::test]
    async fn containerd_ending_with_writes_unconfirmed_is_an_error() {
        let mut call = Call::open(0).await;
        call.write(0, b"abcd").await;
        call.read().await.unwrap();
        call.containerd.send(Ok(trailers("0"))).await.unwrap();
        let error = call.read().await.unwrap_err();
        assert!(
            error.starts_with("13 ") && error.contains("without confirming 4 bytes"),
            "{error}"
        );

        let Call {
            client,
            containerd,
            reads,
            containerd_received,
        } = Call::open(0).await;
        let mut call = Call {
            client,
            containerd: channel_body().0,
            reads,
            containerd_received,
        };
        call.write(0, b"abcd").await;
        call.read().await.unwrap();
        drop(containerd);
        let error = call.read().await.unwrap_err();
        assert!(
            error.starts_with("14 ") && error.contains("4 bytes answered early unconfirmed"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_call_containerd_ended_ends_containerd_side_though_the_client_sends_on() {
        let mut call = Call::open(0).await;
        call.containerd.send(Ok(trailers("0"))).await.unwrap();
        assert_eq!(call.read().await.unwrap_err(), "0 containerd's reason");
        // The client has not ended its side (it still holds its sender).
        let ended = tokio::time::timeout(Duration::from_secs(5), call.containerd_received).await;
        assert!(ended.is_ok(), "containerd's side still open");
        drop(call.client);
    }

    #[tokio::test]
    async fn containerd_answers_follow_the_early_ones_in_order() {
        let mut call = Call::open(0).await;
        call.write(0, b"ab").await;
        call.write(2, b"cd").await;
        // A write elsewhere waits for containerd's answer, which confirms the earlier ones.
        call.write(9, b"ef").await;
        for (action, offset) in [(WriteAction::Write, 2), (WriteAction::Write, 4)] {
            let answer = WriteContentResponse {
                action: action as i32,
                offset,
                digest: "sha256:running".into(),
                ..Default::default()
            };
            call.containerd
                .send(Ok(Frame::data(framed(&answer))))
                .await
                .unwrap();
        }
        call.containerd.send(Ok(trailers("11"))).await.unwrap();
        let offsets: Vec<i64> = [call.read().await, call.read().await]
            .map(|answer| answer.unwrap().offset)
            .to_vec();
        assert_eq!(offsets, [2, 4]);
        assert_eq!(call.read().await.unwrap_err(), "11 containerd's reason");

        // Every message reached containerd as the client sent it, in order.
        let received = tokio::time::timeout(Duration::from_secs(5), call.containerd_received)
            .await
            .expect("containerd's side ended with the call")
            .unwrap();
        assert_eq!(received[0].expected, "sha256:whole");
        let writes: Vec<(i64, &[u8])> = received[1..]
            .iter()
            .map(|request| (request.offset, &request.data[..]))
            .collect();
        assert_eq!(writes, [(0, &b"ab"[..]), (2, b"cd"), (9, b"ef")]);
    }
}
