//! gRPC message framing (gRPC over HTTP/2, "Length-Prefixed-Message"): one byte compression
//! flag, four bytes big-endian length, the message.

use bytes::{BufMut, Bytes, BytesMut};

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
}
