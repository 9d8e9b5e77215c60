//! The checks the front makes before containerd sees a call: what image a call would record or
//! pull, and whether TUF verifies it. Decoding uses containerd-client's prost messages; the
//! bytes forwarded are the client's own unless a pull is pinned to its verified digest.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use containerd_client::services::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, GetImageResponse, Image,
    TransferRequest, UpdateImageRequest,
};
use containerd_client::types::transfer::{
    ImageExportStream, ImageImportStream, ImageStore, OciRegistry,
};
use containerd_tuf_verifier::engine::{Engine, Standing};
use http::{HeaderMap, Request, Uri};
use http_body_util::{BodyExt, Full};
use oci_spec::image::Descriptor;
use prost::Message;

use crate::any;
use crate::frame;
use crate::import::{self, HandedOver};
use crate::naming;
use crate::status;
use crate::streams::{self, Flush, Streams, namespace};
use crate::upstream::{self, Upstream};

/// gRPC methods the front checks; other methods of the services [`is_forwarded`] names are
/// forwarded untouched, and the rest refused.
pub const IMAGES_CREATE: &str = "/containerd.services.images.v1.Images/Create";
/// Image updates (containerd 1.6 pulls and imports end with Create, or Update when the name
/// exists).
pub const IMAGES_UPDATE: &str = "/containerd.services.images.v1.Images/Update";
/// containerd ≥ 1.7 server-side transfers (`ctr images pull` in 2.x, nerdctl ≥ 2.3).
pub const TRANSFER: &str = "/containerd.services.transfer.v1.Transfer/Transfer";
const IMAGES_GET: &str = "/containerd.services.images.v1.Images/Get";
const IMAGES_DELETE: &str = "/containerd.services.images.v1.Images/Delete";
/// How long a call the front makes of its own may take.
const FRONT_CALL: std::time::Duration = std::time::Duration::from_secs(10);

const OCI_REGISTRY: &str = "containerd.types.transfer.OCIRegistry";
const IMAGE_IMPORT_STREAM: &str = "containerd.types.transfer.ImageImportStream";
const IMAGE_STORE: &str = "containerd.types.transfer.ImageStore";
const IMAGE_EXPORT_STREAM: &str = "containerd.types.transfer.ImageExportStream";

/// Whether the front checks calls to `path`.
pub fn is_checked(path: &str) -> bool {
    matches!(path, IMAGES_CREATE | IMAGES_UPDATE | TRANSFER)
}

/// Whether calls to `path` that are not checked go to containerd untouched: containerd's own
/// services, whose only calls that record or pull an image are the checked ones, and gRPC's
/// health and reflection. Any other service (CRI's `ImageService`, which pulls and records
/// images itself; a service of a newer containerd) is refused: the front cannot know that it
/// records nothing unchecked.
pub fn is_forwarded(path: &str) -> bool {
    [
        "/containerd.services.",
        "/grpc.health.v1.",
        "/grpc.reflection.",
    ]
    .iter()
    .any(|service| path.starts_with(service))
}

/// What to do with a checked call.
#[derive(Debug)]
pub enum Verdict {
    /// Forward this message (the original, or a pinned rewrite); when the call exports to a
    /// stream, hold its answer until that stream is relayed ([`crate::streams::Flush`]).
    Forward {
        /// The message.
        message: Vec<u8>,
        /// The stream to flush first.
        flush: Option<Flush>,
        /// The checked import this call hands to containerd, kept until it is answered.
        handed_over: Option<HandedOver>,
        /// What to check again once containerd has answered the call.
        recheck: Option<Box<Recheck>>,
    },
    /// Answer the call with this refusal.
    Refuse(Refused),
}

/// Why the front answers a checked call (or an import it carries) itself.
#[derive(Debug)]
pub enum Refused {
    /// Verification or the policy refused it (`PERMISSION_DENIED`), for this reason.
    Deny(String),
    /// The message, or the archive it carries, cannot be read (`INVALID_ARGUMENT`).
    Malformed(String),
    /// The front could not do its part (`UNAVAILABLE`: the call may be tried again), such as
    /// staging an import or handing it to containerd.
    Failed(String),
}

impl Refused {
    /// The refusal of an import, said as such where it does not name an image already.
    fn in_import(self) -> Self {
        match self {
            Refused::Deny(reason) => Refused::Deny(reason),
            Refused::Malformed(reason) => Refused::Malformed(format!("import: {reason}")),
            Refused::Failed(reason) => Refused::Failed(format!("import: {reason}")),
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Deny(reason) | Refused::Malformed(reason) | Refused::Failed(reason) => {
                f.write_str(reason)
            }
        }
    }
}

/// What the checks need: the verifier engine, the streams clients opened through the front
/// (imports arrive on them), containerd (checked imports are handed to it), and where imports
/// are staged while checked.
#[derive(Debug)]
pub struct Gate {
    engine: Arc<Engine>,
    streams: Streams,
    upstream: Upstream,
    staging: PathBuf,
    /// Turns for imports ([`import::MAX_CONCURRENT`]).
    import_turns: Arc<tokio::sync::Semaphore>,
}

impl Verdict {
    fn deny(reason: String) -> Self {
        Verdict::Refuse(Refused::Deny(reason))
    }

    fn malformed(reason: String) -> Self {
        Verdict::Refuse(Refused::Malformed(reason))
    }

    fn forward(message: Vec<u8>) -> Self {
        Verdict::Forward {
            message,
            flush: None,
            handed_over: None,
            recheck: None,
        }
    }
}

/// A Transfer pull into the image store, verified when the call arrived: containerd records
/// it when its work ends, which nothing bounds (a slow registry; a client holding the ingest
/// of one of its blobs open), so its names are checked again once containerd answers.
#[derive(Debug)]
pub struct Recheck {
    store: ImageStore,
    target: Descriptor,
}

impl Gate {
    /// Checks with `engine`; stages imports in `staging` while they are checked, and hands
    /// checked ones to `upstream`.
    pub fn new(engine: Arc<Engine>, upstream: Upstream, staging: PathBuf) -> Self {
        Gate {
            engine,
            streams: Streams::default(),
            upstream,
            staging,
            import_turns: Arc::new(tokio::sync::Semaphore::new(import::MAX_CONCURRENT)),
        }
    }

    /// The streams opened through the front.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Decides a call to `path` (one of the checked methods) carrying `message`, sent with
    /// `headers`.
    pub async fn decide(&self, path: &str, headers: &HeaderMap, message: &[u8]) -> Verdict {
        let engine = &self.engine;
        match path {
            // Forwarded as decoded and encoded again, as Transfers are ([`Self::check_transfer`]).
            IMAGES_CREATE => match CreateImageRequest::decode(message) {
                Ok(request) => {
                    let checked = check_image(engine, request.image.as_ref()).await;
                    checked.unwrap_or_else(|| Verdict::forward(request.encode_to_vec()))
                }
                Err(e) => Verdict::malformed(format!("Images.Create: {e}")),
            },
            IMAGES_UPDATE => match UpdateImageRequest::decode(message) {
                Ok(request) => {
                    let touches_target = request.update_mask.as_ref().is_none_or(|mask| {
                        mask.paths.is_empty() || mask.paths.iter().any(|p| p == "target")
                    });
                    let checked = if touches_target {
                        check_image(engine, request.image.as_ref()).await
                    } else {
                        None
                    };
                    checked.unwrap_or_else(|| Verdict::forward(request.encode_to_vec()))
                }
                Err(e) => Verdict::malformed(format!("Images.Update: {e}")),
            },
            TRANSFER => match TransferRequest::decode(message) {
                Ok(request) => self.check_transfer(headers, request).await,
                Err(e) => Verdict::malformed(format!("Transfer: {e}")),
            },
            other => Verdict::malformed(format!("{other} is not a checked method")),
        }
    }

    /// Registry pulls are resolved through TUF first and pinned to the verified digest, so
    /// containerd fetches exactly what TUF signs. Imports are received by the front, checked,
    /// and handed to containerd on a stream of the front's own ([`import`]). Requests go on
    /// as decoded and encoded again, the source and destination in them too: fields the front
    /// does not know (a newer client's, naming images some new way, say) are dropped, never
    /// passed on unchecked.
    async fn check_transfer(&self, headers: &HeaderMap, mut request: TransferRequest) -> Verdict {
        let Some(source) = request.source.as_mut() else {
            return Verdict::forward(request.encode_to_vec());
        };
        // Transfers into the image store record images: under the store's names. Pushes and
        // exports record none; a destination the front does not know might (a newer
        // containerd's), so it is refused rather than passed on unchecked.
        let into_store = match request.destination.as_mut() {
            Some(d) if any::type_name(&d.type_url) == IMAGE_STORE => {
                match ImageStore::decode(d.value.as_slice()) {
                    Ok(store) => {
                        d.value = store.encode_to_vec();
                        Some(store)
                    }
                    Err(e) => {
                        return Verdict::malformed(format!("Transfer destination ImageStore: {e}"));
                    }
                }
            }
            Some(d)
                if ![OCI_REGISTRY, IMAGE_EXPORT_STREAM].contains(&any::type_name(&d.type_url)) =>
            {
                return Verdict::deny(format!(
                    "tuf-oci: transfers into {:?} are not checked; refused",
                    d.type_url
                ));
            }
            _ => None,
        };
        match (any::type_name(&source.type_url), into_store.as_ref()) {
            (OCI_REGISTRY, into_store) => {
                let mut registry = match OciRegistry::decode(source.value.as_slice()) {
                    Ok(registry) => registry,
                    Err(e) => {
                        return Verdict::malformed(format!("Transfer source OCIRegistry: {e}"));
                    }
                };
                let answer = self.engine.check(&registry.reference, None).await;
                if !answer.allowed {
                    return Verdict::deny(answer.reason);
                }
                if let Some(store) = into_store {
                    let refused = match &answer.target {
                        Some(target) => self.check_names(store, target.descriptor()).await,
                        None => self.check_unverified_names(
                            store,
                            &format!("pulled from {}, which is not verified", registry.reference),
                        ),
                    };
                    if let Some(reason) = refused {
                        return Verdict::deny(reason);
                    }
                }
                if let Some(target) = &answer.target {
                    registry.reference = pinned(&registry.reference, &target.digest());
                }
                let recheck = answer.target.zip(into_store).map(|(target, store)| {
                    Box::new(Recheck {
                        store: store.clone(),
                        target: target.descriptor().clone(),
                    })
                });
                source.value = registry.encode_to_vec();
                Verdict::Forward {
                    message: request.encode_to_vec(),
                    flush: None,
                    handed_over: None,
                    recheck,
                }
            }
            (IMAGE_IMPORT_STREAM, into_store) => {
                let mut stream = match ImageImportStream::decode(source.value.as_slice()) {
                    Ok(stream) => stream,
                    Err(e) => {
                        return Verdict::malformed(format!(
                            "Transfer source ImageImportStream: {e}"
                        ));
                    }
                };
                let Some(store) = into_store else {
                    return Verdict::deny(format!(
                        "tuf-oci: imports into {:?} are not checked; refused",
                        request.destination.as_ref().map(|d| d.type_url.as_str())
                    ));
                };
                match self.import(headers, &stream.stream, store).await {
                    Ok((id, handed_over)) => {
                        stream.stream = id;
                        source.value = stream.encode_to_vec();
                        Verdict::Forward {
                            message: request.encode_to_vec(),
                            flush: None,
                            handed_over: Some(handed_over),
                            recheck: None,
                        }
                    }
                    Err(refused) => Verdict::Refuse(refused.in_import()),
                }
            }
            // A tag: the store's names are given whatever image record the source names when
            // containerd reads it, which the front cannot pin (the record may change after any
            // look the front takes, and a target carrying import annotations is named through
            // prefixes instead). So tags may not name protected images, nor use prefixes.
            (IMAGE_STORE, Some(store)) => {
                if let Some(prefix) = store.extra_references.iter().find(|r| r.is_prefix) {
                    return Verdict::deny(format!(
                        "tuf-oci: tags through the prefix reference {:?} are not checked; refused",
                        prefix.name
                    ));
                }
                match self.check_unverified_names(
                    store,
                    "a tag cannot be verified (pull the name instead, which verifies it)",
                ) {
                    Some(reason) => Verdict::deny(reason),
                    None => Verdict::forward(request.encode_to_vec()),
                }
            }
            (other, Some(_)) => Verdict::deny(format!(
                "tuf-oci: transfers from {other} into the image store are not checked; refused"
            )),
            // Pushes and exports record no image here.
            _ => Verdict::Forward {
                flush: self.export_flush(headers, &request),
                message: request.encode_to_vec(),
                handed_over: None,
                recheck: None,
            },
        }
    }

    /// Checks a Transfer pull's names again once containerd has answered it (the call made
    /// with `uri` and `headers`), as a pull starting now would check them: if one no longer
    /// verifies (its tag signed anew or revoked meanwhile, its metadata expired), or cannot be
    /// checked (the registry unreachable), the pull's records that still point at its target
    /// are removed, and the refusal is the answer. A pull lasts as long as it likes: what
    /// verified when it began may not stand when it ends. When containerd did not answer
    /// success (`recorded` false), a record of the name may be an older pull's, which only
    /// what no longer verifies removes, not a failure to check.
    pub async fn recheck(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        recheck: &Recheck,
        recorded: bool,
    ) -> Option<Refused> {
        let digest = recheck.target.digest().to_string();
        // Too many names were refused before the pull was forwarded.
        let names = naming::named(&recheck.store, &digest).ok()?;
        let (mut withdrawn, mut unknown) = (None, None);
        for name in &names {
            match self.engine.standing(name, &recheck.target).await {
                Standing::Holds => {}
                Standing::Withdrawn(reason) => {
                    withdrawn = Some(reason);
                    break;
                }
                Standing::Unknown(reason) => {
                    unknown.get_or_insert(reason);
                }
            }
        }
        let (reason, could_not_check) = match (withdrawn, unknown) {
            (Some(reason), _) => (reason, false),
            (None, Some(reason)) if recorded => (reason, true),
            _ => return None,
        };
        let (mut removed, mut elsewhere, mut left) = (Vec::new(), Vec::new(), Vec::new());
        for name in names {
            match self.remove_record(uri, headers, &name, &digest).await {
                Ok(true) => removed.push(name),
                Ok(false) => elsewhere.push(name),
                Err(e) => left.push(format!("{name} ({e:#})")),
            }
        }
        let checked = if could_not_check {
            "could not be checked again"
        } else {
            "checked again"
        };
        let answered = if recorded { "recorded" } else { "answered" };
        let mut detail = format!(
            "{checked} once containerd {answered} the pull of {digest}; removed: [{}]; no longer \
             pointing at it: [{}]",
            removed.join(", "),
            elsewhere.join(", ")
        );
        if !left.is_empty() {
            detail.push_str(&format!("; could not remove: [{}]", left.join(", ")));
        }
        let said = format!("{reason} ({detail})");
        Some(if could_not_check || !left.is_empty() {
            Refused::Failed(said)
        } else {
            Refused::Deny(said)
        })
    }

    /// Has containerd delete image record `name` if it points at `digest`, in the namespace
    /// of the call made with `uri` and `headers`: whether it did. Read first, then deleted only
    /// while it still points there (containerd 2.x checks; 1.7 deletes what it finds).
    async fn remove_record(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        name: &str,
        digest: &str,
    ) -> anyhow::Result<bool> {
        let get = GetImageRequest {
            name: name.to_string(),
        };
        let Some(answer) = self
            .unary(uri, headers, IMAGES_GET, &get.encode_to_vec())
            .await?
        else {
            return Ok(false);
        };
        let answer = frame::single_message(&answer).map_err(anyhow::Error::msg)?;
        let target = GetImageResponse::decode(answer)?
            .image
            .and_then(|image| image.target);
        let Some(target) = target.filter(|target| target.digest == digest) else {
            return Ok(false);
        };
        let delete = DeleteImageRequest {
            name: name.to_string(),
            sync: false,
            target: Some(target),
        };
        let deleted = self
            .unary(uri, headers, IMAGES_DELETE, &delete.encode_to_vec())
            .await?;
        Ok(deleted.is_some())
    }

    /// Calls containerd's unary method `path` with `message`, in the namespace (and lease) of
    /// the call made with `uri` and `headers`, within [`FRONT_CALL`]: the answer's body, or
    /// `None` when containerd answers not found.
    async fn unary(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        path: &'static str,
        message: &[u8],
    ) -> anyhow::Result<Option<Bytes>> {
        let body = Full::new(frame::encode(message))
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut request = Request::new(body);
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = upstream::at_path(uri, path)?;
        // Only what places the call: the client's deadline and encodings were for its own.
        let own = request.headers_mut();
        own.insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc"),
        );
        own.insert("te", http::HeaderValue::from_static("trailers"));
        for carried in [streams::NAMESPACE, "containerd-lease"] {
            if let Some(value) = headers.get(carried) {
                own.insert(carried, value.clone());
            }
        }
        let call = async {
            let (head, body) = self.upstream.send(request).await?.into_parts();
            let collected = body.collect().await?;
            match status::ended(&head.headers, collected.trailers()) {
                (Some("0"), _) => Ok(Some(collected.to_bytes())),
                (Some("5"), _) => Ok(None),
                (code, message) => {
                    let message = status::decoded(message);
                    anyhow::bail!("containerd answered {path} with grpc-status {code:?}: {message}")
                }
            }
        };
        tokio::time::timeout(FRONT_CALL, call).await.map_err(|_| {
            anyhow::anyhow!("containerd did not answer {path} within {FRONT_CALL:?}")
        })?
    }

    /// The first refusal among the names `store` would give `target`, each checked as a
    /// record pointing at it.
    async fn check_names(&self, store: &ImageStore, target: &Descriptor) -> Option<String> {
        let names = match naming::named(store, target.digest().as_ref()) {
            Ok(names) => names,
            Err(too_many) => return Some(too_many.to_string()),
        };
        for name in names {
            let answer = self.engine.check(&name, Some(target)).await;
            if !answer.allowed {
                return Some(answer.reason);
            }
        }
        None
    }

    /// The first refusal among the names `store` would give content the front cannot know
    /// (`why`): protected names are refused, others are what the policy says of them.
    fn check_unverified_names(&self, store: &ImageStore, why: &str) -> Option<String> {
        let names = match naming::named(store, naming::UNKNOWN_DIGEST) {
            Ok(names) => names,
            Err(too_many) => return Some(too_many.to_string()),
        };
        names.iter().find_map(|name| {
            let answer = self
                .engine
                .check_unverifiable(naming::unpinned(name, naming::UNKNOWN_DIGEST), why);
            (!answer.allowed).then_some(answer.reason)
        })
    }

    /// The barrier on the stream a Transfer exports to, if it exports to one opened through
    /// the front.
    fn export_flush(&self, headers: &HeaderMap, request: &TransferRequest) -> Option<Flush> {
        let destination = request.destination.as_ref()?;
        if any::type_name(&destination.type_url) != IMAGE_EXPORT_STREAM {
            return None;
        }
        let export = ImageExportStream::decode(destination.value.as_slice()).ok()?;
        self.streams.flush(namespace(headers), &export.stream)
    }

    /// Checks the archive on the client's stream `id`; returns the id of the front's stream
    /// carrying the checked archive to containerd, and that stream.
    async fn import(
        &self,
        headers: &HeaderMap,
        id: &str,
        store: &ImageStore,
    ) -> Result<(String, HandedOver), Refused> {
        static HANDED_OVER: AtomicU64 = AtomicU64::new(0);
        let namespace = namespace(headers);
        let claimed = self.streams.claim(namespace, id).ok_or_else(|| {
            Refused::Deny(format!(
                "tuf-oci: import stream {id:?} is not open through the front in namespace \
                 {namespace:?} (opened on containerd's socket or in another namespace, its \
                 StreamInit unreadable, or already taken by another Transfer); refused"
            ))
        })?;
        let turn = match Arc::clone(&self.import_turns).try_acquire_owned() {
            Ok(turn) => turn,
            Err(_) => {
                tracing::info!(
                    stream = id,
                    limit = import::MAX_CONCURRENT,
                    "import waits for one of those running to end"
                );
                Arc::clone(&self.import_turns)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        let (checked, claimed) =
            import::check(&self.engine, claimed, store, &self.staging, turn).await?;
        let own = format!(
            "{id}-tuf-oci-{}-{}",
            std::process::id(),
            HANDED_OVER.fetch_add(1, Ordering::Relaxed)
        );
        let handed_over = import::hand_over(&self.upstream, &claimed, &own, checked).await?;
        Ok((own, handed_over))
    }
}

/// An image record may only point at the descriptor TUF signs for its name: the refusal, or
/// `None` when it may.
async fn check_image(engine: &Engine, image: Option<&Image>) -> Option<Verdict> {
    let Some(image) = image else {
        return Some(Verdict::malformed("image request without an image".into()));
    };
    let descriptor = match target_descriptor(image) {
        Ok(descriptor) => descriptor,
        Err(e) => return Some(Verdict::malformed(e)),
    };
    let answer = engine.check(&image.name, Some(&descriptor)).await;
    (!answer.allowed).then(|| Verdict::deny(answer.reason))
}

/// The OCI descriptor of an image record's target.
fn target_descriptor(image: &Image) -> Result<Descriptor, String> {
    let target = image
        .target
        .as_ref()
        .ok_or_else(|| format!("image {} has no target", image.name))?;
    let descriptor = serde_json::json!({
        "mediaType": target.media_type,
        "digest": target.digest,
        "size": target.size,
    });
    serde_json::from_value(descriptor).map_err(|e| format!("image {} target: {e}", image.name))
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
    use super::*;

    /// A gate whose policy allows every name, in `dir`.
    fn allowing_gate(dir: &std::path::Path) -> Gate {
        let policy = dir.join("policy.toml");
        let cache = dir.join("cache");
        let text = format!("default = \"allow\"\ncache_dir = {:?}\n", cache.display());
        std::fs::write(&policy, text).unwrap();
        let policy = containerd_tuf_verifier::policy::Policy::load(&policy).unwrap();
        let upstream = Upstream::new(dir.join("containerd.sock"));
        Gate::new(Arc::new(Engine::new(policy).unwrap()), upstream, dir.into())
    }

    /// A varint field (number 99, value 1) no version of containerd's messages has.
    const UNKNOWN_FIELD: [u8; 3] = [0x98, 0x06, 0x01];

    #[tokio::test]
    async fn fields_the_front_does_not_know_are_not_passed_on() {
        let dir = tempfile::tempdir().unwrap();
        let gate = allowing_gate(dir.path());
        let image = Image {
            name: "local/app:v1".into(),
            target: Some(containerd_client::types::Descriptor {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                size: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let known = CreateImageRequest {
            image: Some(image.clone()),
            ..Default::default()
        };
        // The unknown field inside the image (field 1 of the request), and beside it.
        let mut inner = image.encode_to_vec();
        inner.extend(UNKNOWN_FIELD);
        let mut message = vec![0x0a];
        prost::encoding::encode_varint(inner.len() as u64, &mut message);
        message.extend(inner);
        message.extend(UNKNOWN_FIELD);
        for path in [IMAGES_CREATE, IMAGES_UPDATE] {
            let verdict = gate.decide(path, &HeaderMap::new(), &message).await;
            let Verdict::Forward { message, .. } = verdict else {
                panic!("{path}: {verdict:?}");
            };
            // Update's request has the image as field 1 too.
            assert_eq!(message, known.encode_to_vec(), "{path}");
        }
    }

    #[tokio::test]
    async fn fields_the_front_does_not_know_are_not_passed_on_in_transfers() {
        let dir = tempfile::tempdir().unwrap();
        let gate = allowing_gate(dir.path());
        let any = |type_url: &str, value: Vec<u8>| prost_types::Any {
            type_url: type_url.into(),
            value,
        };
        let source = OciRegistry {
            reference: "local/app:v1".into(),
            ..Default::default()
        };
        let destination = ImageStore {
            name: "local/app:v1".into(),
            ..Default::default()
        };
        let with_unknown = |message: Vec<u8>| [message, UNKNOWN_FIELD.to_vec()].concat();
        let request = |source: Vec<u8>, destination: Vec<u8>| TransferRequest {
            source: Some(any(OCI_REGISTRY, source)),
            destination: Some(any(IMAGE_STORE, destination)),
            ..Default::default()
        };
        let sent = request(
            with_unknown(source.encode_to_vec()),
            with_unknown(destination.encode_to_vec()),
        );
        let verdict = gate
            .decide(TRANSFER, &HeaderMap::new(), &sent.encode_to_vec())
            .await;
        let Verdict::Forward { message, .. } = verdict else {
            panic!("{verdict:?}");
        };
        let known = request(source.encode_to_vec(), destination.encode_to_vec());
        assert_eq!(message, known.encode_to_vec());
    }

    /// A Transfer naming an import stream the front does not hold is refused, saying which
    /// stream, in which namespace, and what may have happened to it.
    #[tokio::test]
    async fn an_import_from_a_stream_the_front_does_not_hold_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let gate = allowing_gate(dir.path());
        let mut headers = HeaderMap::new();
        headers.insert("containerd-namespace", "team-a".parse().unwrap());
        let refused = gate
            .import(&headers, "import-7", &ImageStore::default())
            .await;
        let Err(Refused::Deny(reason)) = refused else {
            panic!("{refused:?}");
        };
        for said in ["\"import-7\"", "namespace \"team-a\"", "another Transfer"] {
            assert!(reason.contains(said), "{said}: {reason}");
        }
    }

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
