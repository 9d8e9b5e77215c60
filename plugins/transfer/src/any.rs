//! `google.protobuf.Any` as containerd writes it: type URLs are bare full message names
//! (`containerd.types.transfer.Data`), matched here by their last path segment so a prefixed
//! URL reads the same.

use prost::Message as _;

/// The first message of every stream.
pub const STREAM_INIT: &str = "containerd.services.streaming.v1.StreamInit";

/// The message name a type URL carries.
pub fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or_default()
}

/// `value` (an encoded `type_name` message) wrapped in an `Any`, encoded.
pub fn pack(type_name: &str, value: &[u8]) -> Vec<u8> {
    prost_types::Any {
        type_url: type_name.to_string(),
        value: value.to_vec(),
    }
    .encode_to_vec()
}

/// The `M` inside an encoded `Any`, when it is one of type `type_name`.
pub fn unpack<M: prost::Message + Default>(any: &[u8], type_name: &str) -> Option<M> {
    let any = prost_types::Any::decode(any).ok()?;
    (self::type_name(&any.type_url) == type_name)
        .then(|| M::decode(any.value.as_slice()).ok())
        .flatten()
}
