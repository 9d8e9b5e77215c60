//! The checks the front makes before containerd sees a call: what image a call would record or
//! pull, and whether TUF verifies it. Decoding uses containerd-client's prost messages; the
//! bytes forwarded are the client's own unless a pull is pinned to its verified digest.

use containerd_client::services::v1::{
    CreateImageRequest, Image, TransferRequest, UpdateImageRequest,
};
use containerd_client::types::transfer::OciRegistry;
use containerd_tuf_verifier::engine::Engine;
use prost::Message;

/// gRPC methods the front checks; every other method is forwarded untouched.
pub const IMAGES_CREATE: &str = "/containerd.services.images.v1.Images/Create";
/// Image updates (containerd 1.6 pulls and imports end with Create, or Update when the name
/// exists).
pub const IMAGES_UPDATE: &str = "/containerd.services.images.v1.Images/Update";
/// containerd ≥ 1.7 server-side transfers (`ctr images pull` in 2.x, nerdctl ≥ 2.3).
pub const TRANSFER: &str = "/containerd.services.transfer.v1.Transfer/Transfer";

const OCI_REGISTRY: &str = "containerd.types.transfer.OCIRegistry";
const IMAGE_IMPORT_STREAM: &str = "containerd.types.transfer.ImageImportStream";

/// Whether the front checks calls to `path`.
pub fn is_checked(path: &str) -> bool {
    matches!(path, IMAGES_CREATE | IMAGES_UPDATE | TRANSFER)
}

/// What to do with a checked call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward this message (the original, or a pinned rewrite).
    Forward(Vec<u8>),
    /// Refuse with this reason (`PERMISSION_DENIED`).
    Deny(String),
    /// The message cannot be read (`INVALID_ARGUMENT`).
    Malformed(String),
}

/// Decides a call to `path` (one of the checked methods) carrying `message`.
pub async fn decide(engine: &Engine, path: &str, message: &[u8]) -> Verdict {
    match path {
        IMAGES_CREATE => match CreateImageRequest::decode(message) {
            Ok(request) => check_image(engine, request.image.as_ref(), message).await,
            Err(e) => Verdict::Malformed(format!("Images.Create: {e}")),
        },
        IMAGES_UPDATE => match UpdateImageRequest::decode(message) {
            Ok(request) => {
                let touches_target = request.update_mask.as_ref().is_none_or(|mask| {
                    mask.paths.is_empty() || mask.paths.iter().any(|p| p == "target")
                });
                if touches_target {
                    check_image(engine, request.image.as_ref(), message).await
                } else {
                    Verdict::Forward(message.to_vec())
                }
            }
            Err(e) => Verdict::Malformed(format!("Images.Update: {e}")),
        },
        TRANSFER => match TransferRequest::decode(message) {
            Ok(request) => check_transfer(engine, request).await,
            Err(e) => Verdict::Malformed(format!("Transfer: {e}")),
        },
        other => Verdict::Malformed(format!("{other} is not a checked method")),
    }
}

/// An image record may only point at the descriptor TUF signs for its name.
async fn check_image(engine: &Engine, image: Option<&Image>, message: &[u8]) -> Verdict {
    let Some(image) = image else {
        return Verdict::Malformed("image request without an image".into());
    };
    let Some(target) = image.target.as_ref() else {
        return Verdict::Malformed(format!("image {} has no target", image.name));
    };
    let descriptor = serde_json::json!({
        "mediaType": target.media_type,
        "digest": target.digest,
        "size": target.size,
    });
    let descriptor: oci_spec::image::Descriptor = match serde_json::from_value(descriptor) {
        Ok(descriptor) => descriptor,
        Err(e) => return Verdict::Malformed(format!("image {} target: {e}", image.name)),
    };
    let answer = engine.check(&image.name, Some(&descriptor)).await;
    if answer.allowed {
        Verdict::Forward(message.to_vec())
    } else {
        Verdict::Deny(answer.reason)
    }
}

/// Registry pulls are resolved through TUF first and pinned to the verified digest, so
/// containerd fetches exactly what TUF signs. Imports carry no TUF metadata containerd could
/// check, so they are refused rather than let through unverified.
async fn check_transfer(engine: &Engine, mut request: TransferRequest) -> Verdict {
    let Some(source) = request.source.as_mut() else {
        return Verdict::Forward(request.encode_to_vec());
    };
    let kind = source.type_url.rsplit('/').next().unwrap_or_default();
    match kind {
        OCI_REGISTRY => {
            let mut registry = match OciRegistry::decode(source.value.as_slice()) {
                Ok(registry) => registry,
                Err(e) => return Verdict::Malformed(format!("Transfer source OCIRegistry: {e}")),
            };
            let answer = engine.check(&registry.reference, None).await;
            if !answer.allowed {
                return Verdict::Deny(answer.reason);
            }
            if let Some(target) = answer.target {
                registry.reference = pinned(&registry.reference, &target.digest());
                source.value = registry.encode_to_vec();
            }
            Verdict::Forward(request.encode_to_vec())
        }
        IMAGE_IMPORT_STREAM => Verdict::Deny(
            "tuf-oci: image imports through the Transfer service are not verified; refused \
             (import through the Images API, which the front checks, or pull from a registry)"
                .into(),
        ),
        _ => Verdict::Forward(request.encode_to_vec()),
    }
}

/// `reference` with its digest set to `digest` (`host/repo:tag@sha256:...`).
fn pinned(reference: &str, digest: &str) -> String {
    let base = reference
        .split_once('@')
        .map_or(reference, |(base, _)| base);
    format!("{base}@{digest}")
}

#[cfg(test)]
mod tests {
    use super::pinned;

    #[test]
    fn pins_keep_the_tag() {
        assert_eq!(
            pinned("r:5000/a/b:v1", "sha256:aa"),
            "r:5000/a/b:v1@sha256:aa"
        );
        assert_eq!(
            pinned("r:5000/a/b:v1@sha256:bb", "sha256:aa"),
            "r:5000/a/b:v1@sha256:aa"
        );
    }
}
