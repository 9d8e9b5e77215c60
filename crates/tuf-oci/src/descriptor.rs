//! A TUF target is an OCI descriptor: `length` is the size, `hashes.sha256` the digest, and
//! `custom` carries every other descriptor field (mediaType, artifactType, annotations, platform,
//! urls) exactly as the OCI image spec spells them. The mapping is lossless both ways.

use std::collections::HashMap;

use oci_spec::image::Descriptor;
use serde_json::{Map, Value};
use tough::schema::decoded::Decoded;
use tough::schema::{Hashes, Target};

use crate::error::{Error, Result};

/// Descriptor fields allowed in `custom`; anything else is refused so two clients can never read
/// one target differently.
const CUSTOM_FIELDS: &[&str] = &[
    "mediaType",
    "artifactType",
    "annotations",
    "platform",
    "urls",
];

/// Builds the TUF target for `descriptor`. Only sha256 digests are accepted: TUF targets name
/// their hash by algorithm and the registry layout is sha256-only.
pub fn target_from_descriptor(descriptor: &Descriptor) -> Result<Target> {
    let digest = descriptor.digest().to_string();
    let invalid = |reason: String| Error::InvalidDescriptor {
        target: digest.clone(),
        reason,
    };
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| invalid("only sha256 digests can be signed".into()))?;
    let sha256 = hex::decode(hex).map_err(|e| invalid(format!("digest is not hex: {e}")))?;

    let Value::Object(mut fields) =
        serde_json::to_value(descriptor).map_err(|e| invalid(e.to_string()))?
    else {
        return Err(invalid("descriptor is not a JSON object".into()));
    };
    fields.remove("digest");
    fields.remove("size");
    if let Some(field) = fields.keys().find(|k| !CUSTOM_FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "field {field} cannot be carried in a target"
        )));
    }
    Ok(Target {
        length: descriptor.size(),
        hashes: Hashes {
            sha256: Decoded::from(sha256),
            _extra: HashMap::new(),
        },
        custom: fields.into_iter().collect(),
        _extra: HashMap::new(),
    })
}

/// Rebuilds the OCI descriptor a target signs. Fails when `custom` has no `mediaType`, carries a
/// field that is not a descriptor field, or the sha256 hash has the wrong length.
pub fn descriptor_from_target(name: &str, target: &Target) -> Result<Descriptor> {
    let invalid = |reason: String| Error::InvalidDescriptor {
        target: name.to_string(),
        reason,
    };
    if target.hashes.sha256.len() != 32 {
        return Err(invalid("hashes.sha256 is not 32 bytes".into()));
    }
    if !target.custom.contains_key("mediaType") {
        return Err(invalid("custom.mediaType is missing".into()));
    }
    if let Some(field) = target
        .custom
        .keys()
        .find(|k| !CUSTOM_FIELDS.contains(&k.as_str()))
    {
        return Err(invalid(format!("custom.{field} is not a descriptor field")));
    }
    let mut fields: Map<String, Value> = target
        .custom
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    fields.insert(
        "digest".into(),
        Value::String(format!("sha256:{}", hex::encode(&target.hashes.sha256))),
    );
    fields.insert("size".into(), Value::from(target.length));
    serde_json::from_value(Value::Object(fields)).map_err(|e| invalid(e.to_string()))
}

/// `sha256:<hex>` of the object a target signs.
pub fn target_digest(target: &Target) -> String {
    format!("sha256:{}", hex::encode(&target.hashes.sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(json: &str) -> Descriptor {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let original = descriptor(
            r#"{"mediaType":"application/vnd.oci.image.index.v1+json",
                "digest":"sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
                "size":1234,"artifactType":"application/vnd.example",
                "annotations":{"org.opencontainers.image.ref.name":"v1"},
                "platform":{"architecture":"arm64","os":"linux","variant":"v8"},
                "urls":["https://example.com/blob"]}"#,
        );
        let target = target_from_descriptor(&original).unwrap();
        assert_eq!(target.length, 1234);
        assert_eq!(
            hex::encode(&target.hashes.sha256),
            "6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b"
        );
        assert_eq!(
            target.custom["artifactType"],
            Value::from("application/vnd.example")
        );
        let back = descriptor_from_target("team-a/app:v1", &target).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn refuses_non_sha256_digest() {
        let d = descriptor(
            r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json",
                "digest":"sha512:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
                "size":1}"#,
        );
        assert!(matches!(
            target_from_descriptor(&d),
            Err(Error::InvalidDescriptor { .. })
        ));
    }

    #[test]
    fn refuses_target_without_media_type_or_with_foreign_fields() {
        let d = descriptor(
            r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json",
                "digest":"sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
                "size":1}"#,
        );
        let mut target = target_from_descriptor(&d).unwrap();
        target
            .custom
            .insert("digest".into(), Value::from("sha256:00"));
        let err = descriptor_from_target("a:b", &target).unwrap_err();
        assert!(
            matches!(err, Error::InvalidDescriptor { ref reason, .. } if reason.contains("digest"))
        );
        target.custom.clear();
        let err = descriptor_from_target("a:b", &target).unwrap_err();
        assert!(
            matches!(err, Error::InvalidDescriptor { ref reason, .. } if reason.contains("mediaType"))
        );
    }
}
