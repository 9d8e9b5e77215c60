//! gRPC message framing (gRPC over HTTP/2, "Length-Prefixed-Message"): one byte compression
//! flag, four bytes big-endian length, the message.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;

use crate::upstream::Body;

/// Largest message read from a stream (containerd's stream messages carry 32 KiB).
const MAX_STREAM_MESSAGE: usize = 4 * 1024 * 1024;

/// Splits a unary request body into its one message. Compressed messages are refused: the
/// front does not negotiate compression, so a client sending one is not a containerd client.
pub fn single_message(body: &[u8]) -> Result<&[u8], String> {
    let [flag, a, b, c, d, rest @ ..] = body else {
        return Err("request body shorter than a gRPC frame header".into());
    };
    if *flag != 0 {
        return Err("compressed gRPC messages are not accepted".into());
    }
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if rest.len() != len {
        return Err(format!(
            "gRPC frame says {len} bytes, body has {}",
            rest.len()
        ));
    }
    Ok(rest)
}

/// Frames one message.
pub fn encode(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// One gRPC message as framed on the wire.
#[derive(Debug, Clone)]
pub struct Message {
    raw: Bytes,
}

impl Message {
    /// The framed bytes, to pass on unchanged.
    pub fn raw(&self) -> Bytes {
        self.raw.clone()
    }

    /// The message itself; compressed messages are refused (the front negotiates none).
    pub fn payload(&self) -> Result<Bytes, String> {
        if self.raw[0] != 0 {
            return Err("compressed gRPC messages are not accepted".into());
        }
        Ok(self.raw.slice(5..))
    }
}

/// What a streaming body yields.
#[derive(Debug)]
pub enum Item {
    /// A whole message.
    Message(Message),
    /// The trailers ending a response (`grpc-status`).
    Trailers(HeaderMap),
}

/// Splits a streaming body into whole messages, however its HTTP/2 frames cut them.
pub struct Messages {
    body: Body,
    buffer: BytesMut,
    limit: usize,
}

/// The least room made for the rest of a message, whatever has arrived of it: blob writes
/// come in messages of about 1 MiB (containerd's copy buffer), each then made room for once.
const RESERVE_FLOOR: usize = 1024 * 1024;

impl Messages {
    /// Reads `body`, refusing messages larger than containerd's stream messages may be.
    pub fn new(body: Body) -> Self {
        Messages::with_limit(body, MAX_STREAM_MESSAGE)
    }

    /// Reads `body`, refusing messages larger than `limit` bytes.
    pub fn with_limit(body: Body, limit: usize) -> Self {
        Messages {
            body,
            buffer: BytesMut::new(),
            limit,
        }
    }

    /// The next message or the trailers; `None` at the end of the body.
    pub async fn next(&mut self) -> Option<Result<Item, String>> {
        loop {
            if let [_, a, b, c, d, ..] = self.buffer[..] {
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                if len > self.limit {
                    return Some(Err(format!(
                        "gRPC message of {len} bytes exceeds {}",
                        self.limit
                    )));
                }
                if self.buffer.len() >= 5 + len {
                    let raw = self.buffer.split_to(5 + len).freeze();
                    return Some(Ok(Item::Message(Message { raw })));
                }
                // Room for more than the next frame (grown frame by frame, a 1 MiB message
                // would be copied again and again), but no more than has arrived (or 1 MiB): a header
                // claiming 16 MiB costs what its sender sends, not what it claims.
                let missing = 5 + len - self.buffer.len();
                self.buffer
                    .reserve(missing.min(self.buffer.len().max(RESERVE_FLOOR)));
            }
            match self.body.frame().await {
                None if self.buffer.has_remaining() => {
                    return Some(Err("stream ended inside a gRPC message".into()));
                }
                None => return None,
                Some(Err(e)) => return Some(Err(e.to_string())),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            return Some(Ok(Item::Trailers(trailers)));
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let framed = encode(b"hello");
        assert_eq!(single_message(&framed).unwrap(), b"hello");
        assert!(single_message(&framed[..4]).is_err());
        assert!(single_message(&[1, 0, 0, 0, 0]).is_err());
        assert!(single_message(&[0, 0, 0, 0, 9, 1]).is_err());
    }

    #[tokio::test]
    async fn messages_are_whole_whatever_the_frames() {
        use http_body_util::StreamBody;
        let mut wire = encode(b"first").to_vec();
        wire.extend_from_slice(&encode(b"second"));
        // Cut the wire at awkward places: inside a header and inside a message.
        let chunks: Vec<Result<http_body::Frame<Bytes>, hyper::Error>> = vec![
            Ok(http_body::Frame::data(Bytes::copy_from_slice(&wire[..3]))),
            Ok(http_body::Frame::data(Bytes::copy_from_slice(&wire[3..12]))),
            Ok(http_body::Frame::data(Bytes::copy_from_slice(&wire[12..]))),
        ];
        let body = StreamBody::new(tokio_stream::iter(chunks)).boxed_unsync();
        let mut messages = Messages::new(body);
        for expected in [&b"first"[..], b"second"] {
            let Some(Ok(Item::Message(message))) = messages.next().await else {
                panic!("expected a message");
            };
            assert_eq!(message.payload().unwrap(), expected);
        }
        assert!(messages.next().await.is_none());

        let cut: Vec<Result<http_body::Frame<Bytes>, hyper::Error>> = vec![Ok(
            http_body::Frame::data(Bytes::copy_from_slice(&wire[..8])),
        )];
        let mut messages = Messages::new(StreamBody::new(tokio_stream::iter(cut)).boxed_unsync());
        assert!(matches!(messages.next().await, Some(Err(_))));
    }

    #[tokio::test]
    async fn room_follows_what_arrives_not_what_a_header_claims() {
        use http_body_util::StreamBody;
        use tokio_stream::StreamExt as _;
        // A header claiming the largest message, then nothing more for as long as it likes.
        let limit = 16 * 1024 * 1024;
        let claim = u32::try_from(limit).unwrap().to_be_bytes();
        let header = Bytes::copy_from_slice(&[&[0][..], &claim, b"x"].concat());
        let frames = tokio_stream::iter([Ok::<_, hyper::Error>(http_body::Frame::data(header))])
            .chain(tokio_stream::pending());
        let mut messages = Messages::with_limit(StreamBody::new(frames).boxed_unsync(), limit);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), messages.next());
        assert!(waited.await.is_err(), "no message yet");
        assert!(
            messages.buffer.capacity() <= 2 * RESERVE_FLOOR,
            "{} bytes reserved",
            messages.buffer.capacity()
        );
    }
}
