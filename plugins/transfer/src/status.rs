//! gRPC errors answered by the front itself ("Trailers-Only" responses), in one place.

use http::{HeaderMap, HeaderValue, Response};
use http_body_util::{BodyExt, Empty};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::upstream::Body;

/// gRPC status codes the front answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A request the front cannot read.
    InvalidArgument = 3,
    /// Verification refused the image.
    PermissionDenied = 7,
    /// containerd's answer broke what the front had answered for it.
    Internal = 13,
    /// containerd cannot be reached.
    Unavailable = 14,
}

/// A response carrying only a gRPC status and message.
pub fn error(code: Code, message: &str) -> Response<Body> {
    trailers_only(trailers(code, message))
}

/// A response ending the call at once with `trailers` (gRPC's "Trailers-Only").
pub fn trailers_only(trailers: HeaderMap) -> Response<Body> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.extend(trailers);
    response
}

/// The trailers ending a call with a gRPC status and message.
pub fn trailers(code: Code, message: &str) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(code as u16));
    set_message(&mut trailers, message);
    trailers
}

/// Whether `headers` end a call on their own (gRPC's "Trailers-Only" answer, the status in the
/// headers). Such an answer must be passed on as it is: rebuilt around a relayed body, it
/// would end with an empty frame after the headers, which grpc-go clients (ctr) read as a
/// call ended without trailers, whatever the status.
pub fn is_trailers_only(headers: &HeaderMap) -> bool {
    headers.contains_key("grpc-status")
}

/// The gRPC status code and message ending a call: in `headers` for a "Trailers-Only" answer,
/// otherwise in its `trailers`.
pub fn ended<'a>(
    headers: &'a HeaderMap,
    trailers: Option<&'a HeaderMap>,
) -> (Option<&'a str>, &'a str) {
    let field = |name| {
        headers
            .get(name)
            .or_else(|| trailers.and_then(|t| t.get(name)))
            .and_then(|value| value.to_str().ok())
    };
    (
        field("grpc-status"),
        field("grpc-message").unwrap_or_default(),
    )
}

/// Sets the message of `ended` (trailers, or a "Trailers-Only" answer's headers).
pub fn set_message(ended: &mut HeaderMap, message: &str) {
    if let Ok(value) = HeaderValue::from_str(&percent_encode(message)) {
        ended.insert("grpc-message", value);
    }
}

/// A grpc-message as sent (percent-encoded), decoded.
pub fn decoded(message: &str) -> String {
    percent_encoding::percent_decode_str(message)
        .decode_utf8_lossy()
        .into_owned()
}

/// gRPC's grpc-message encoding: printable ASCII except `%` as is, everything else `%XX`.
fn percent_encode(message: &str) -> String {
    const ENCODED: &AsciiSet = &CONTROLS.add(b'%');
    utf8_percent_encode(message, ENCODED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_only_error() {
        let response = error(Code::PermissionDenied, "no 100%\nsure é");
        assert_eq!(response.headers()["grpc-status"], "7");
        assert_eq!(
            response.headers()["grpc-message"],
            "no 100%25%0Asure %C3%A9"
        );
    }
}
