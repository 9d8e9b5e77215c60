//! TUF-first pull into containerd through its API (works on containerd 1.6): the tag is
//! resolved through TUF, every object is fetched by digest from the registry, written with
//! `Content.Write` under a lease, recorded with `Images.Create`, and unpacked for the
//! snapshotter with `Snapshots` and `Diff`, as `ctr images pull` does client-side.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, CreateRequest, DeleteRequest, Image, Info, InfoRequest,
    UpdateImageRequest, UpdateRequest, WriteAction, WriteContentRequest, WriteContentResponse,
};
use containerd_client::types::Descriptor;
use futures_util::StreamExt;
use serde::Deserialize;
use tonic::transport::Channel;
use tuf_oci::layout::{DOCKER_LIST_MEDIA_TYPE, Entry, INDEX_MEDIA_TYPE, Manifest};
use tuf_oci::registry::BlobStream;
use tuf_oci::{ImageRef, Verifier};

/// Chunk size of `Content.Write` messages.
const CHUNK: usize = 1 << 20;
/// Layers fetched and written at once (ctr's default `--max-concurrent-downloads`).
const LAYER_CONCURRENCY: usize = 3;
/// Largest manifest or index read from the registry.
const MANIFEST_LIMIT: u64 = 4 << 20;
/// Pauses between attempts to take a lock another client holds, doubling from the first to
/// the last (ctr's `content.OpenWriter` waits a random part of such a bound).
const FIRST_LOCK_PAUSE: Duration = Duration::from_millis(16);
const LAST_LOCK_PAUSE: Duration = Duration::from_secs(2);
/// How long the pull's lease lasts: past it containerd may collect what the pull wrote.
const LEASE: Duration = Duration::from_secs(3600);
/// The longest [`PullOptions::lock_wait`]: half the pull's lease. Waits also end by the
/// lease's half-way point, leaving the other half for the writes.
pub const MAX_LOCK_WAIT: Duration = Duration::from_secs(LEASE.as_secs() / 2);

/// Where and how to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// containerd's socket (or a front's).
    pub address: std::path::PathBuf,
    /// containerd namespace.
    pub namespace: String,
    /// Snapshotter to unpack for; `None` skips unpacking.
    pub snapshotter: Option<String>,
    /// How long to wait for other clients' writes of blobs the pull needs (containerd's locks
    /// on them) before failing, counted from the first wait; at most [`MAX_LOCK_WAIT`].
    pub lock_wait: Duration,
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The image name recorded.
    pub name: String,
    /// The verified digest it points at.
    pub digest: String,
    /// Bytes fetched from the registry (content containerd did not have).
    pub fetched_bytes: u64,
    /// The unpacked snapshot (chain id), when unpacked.
    pub snapshot: Option<String>,
}

/// Pulls `image` into containerd, resolving it through TUF; `progress` receives one line per
/// object. When `interrupted` completes (Ctrl-C), the pull stops and fails as a failed pull
/// does, its lease dropped, unless it is recording the image already: that is given
/// [`GRACE`] to finish.
pub async fn pull(
    verifier: &Verifier,
    image: &ImageRef,
    options: &PullOptions,
    progress: &(dyn Fn(&str) + Sync),
    interrupted: impl Future<Output = ()>,
) -> anyhow::Result<Pulled> {
    check_lock_wait(options.lock_wait)?;
    let verified = verifier.resolve(image).await?;
    let digest = verified.digest();
    progress(&format!(
        "{image}: verified {} = {digest} signed by {}",
        verified.name(),
        verified.role()
    ));
    let channel = containerd_client_channel(&options.address).await?;
    let session = Session::open(channel, &options.namespace, options.lock_wait).await?;
    // The pull is dropped at the end of this block, before the lease: its open writes and
    // unpacking end first, rather than meet the garbage collector the lease's end lets in.
    let result = {
        let mut pulled =
            std::pin::pin!(session.pull(verifier, image, verified.descriptor(), options, progress));
        tokio::select! {
            result = &mut pulled => result,
            () = interrupted => {
                if session.recording.load(std::sync::atomic::Ordering::SeqCst) {
                    // Not for long: a second Ctrl-C no longer reaches the process.
                    tokio::time::timeout(GRACE, pulled).await.unwrap_or_else(|_| {
                        Err(anyhow::anyhow!(
                            "{image}: interrupted while recording it; containerd did not answer \
                             within {} s, and may have recorded it",
                            GRACE.as_secs()
                        ))
                    })
                } else {
                    Err(anyhow::anyhow!("{image}: interrupted; nothing recorded"))
                }
            }
        }
    };
    // Whatever happened, drop the lease: content an image does not reference is collected.
    session.close().await;
    result
}

/// A `Content.Write` call containerd accepted: it holds the lock on the ingest's reference
/// until the call ends.
struct OpenWrite {
    requests: tokio::sync::mpsc::Sender<WriteContentRequest>,
    responses: tonic::Streaming<WriteContentResponse>,
    /// The ingest already holds all of the content, hashing to its digest: content shared
    /// from another namespace, or a write that ended before its commit. Only the commit is
    /// left to send.
    complete: bool,
}

/// The reference a pull writes `digest` under: one per digest, so that two pulls of one layer
/// into a namespace share containerd's lock on it rather than both writing it.
fn ingest_reference(digest: &str) -> String {
    format!("tuf-oci-{digest}")
}

/// Whether containerd refused a write because another client holds its reference's lock
/// (`ErrUnavailable` with "ref ... locked"), not because it is unreachable.
fn is_locked(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message().contains("locked")
}

/// A size as containerd's API carries it (signed).
fn containerd_size(digest: &str, size: u64) -> anyhow::Result<i64> {
    i64::try_from(size)
        .with_context(|| format!("{digest}: size {size} is more than containerd takes"))
}

async fn containerd_client_channel(address: &Path) -> anyhow::Result<Channel> {
    containerd_tuf_verifier::client::unix_channel(address, Duration::from_secs(600))
        .await
        .with_context(|| format!("connecting to containerd at {}", address.display()))
}

/// containerd clients bound to a namespace and a lease for the duration of one pull.
struct Session {
    channel: Channel,
    namespace: String,
    lease: String,
    /// See [`PullOptions::lock_wait`].
    lock_wait: Duration,
    /// When the session began (its lease with it).
    opened: Instant,
    /// When the pull stops waiting for other clients' locks: set at its first wait, one bound
    /// for all its writes.
    waits_until: OnceLock<Instant>,
    /// Set once the image is being recorded: an interruption then waits for the record.
    recording: std::sync::atomic::AtomicBool,
}

impl Session {
    async fn open(channel: Channel, namespace: &str, lock_wait: Duration) -> anyhow::Result<Self> {
        let mut session = Session {
            channel: channel.clone(),
            namespace: namespace.to_string(),
            lease: String::new(),
            lock_wait,
            opened: Instant::now(),
            waits_until: OnceLock::new(),
            recording: std::sync::atomic::AtomicBool::new(false),
        };
        let expire = lease_expiry();
        let created = LeasesClient::new(channel)
            .create(session.request(CreateRequest {
                id: String::new(),
                labels: HashMap::from([("containerd.io/gc.expire".to_string(), expire)]),
            }))
            .await
            .with_context(|| format!("creating a lease in namespace {namespace}"))?
            .into_inner();
        session.lease = created.lease.context("containerd returned no lease")?.id;
        Ok(session)
    }

    /// Drops the lease, waiting [`GRACE`] at most: a containerd that does not answer
    /// leaves it to its expiry.
    async fn close(&self) {
        let mut leases = LeasesClient::new(self.channel.clone());
        let delete = leases.delete(self.request(DeleteRequest {
            id: self.lease.clone(),
            sync: false,
        }));
        let _ = tokio::time::timeout(GRACE, delete).await;
    }

    /// A request carrying the namespace and (once created) the lease.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        if let Ok(value) = self.namespace.parse() {
            metadata.insert(crate::streams::NAMESPACE, value);
        }
        if !self.lease.is_empty()
            && let Ok(value) = self.lease.parse()
        {
            metadata.insert("containerd-lease", value);
        }
        request
    }

    async fn pull(
        &self,
        verifier: &Verifier,
        image: &ImageRef,
        root: &oci_spec::image::Descriptor,
        options: &PullOptions,
        progress: &(dyn Fn(&str) + Sync),
    ) -> anyhow::Result<Pulled> {
        let registry = verifier.registry();
        let repository = &image.repository;
        let mut fetched_bytes = 0;
        let root_digest = root.digest().to_string();
        let fetched = registry
            .manifest(&repository.digested(&root_digest), MANIFEST_LIMIT)
            .await?
            .with_context(|| format!("{root_digest} not found in {repository}"))?;
        if fetched.bytes.len() as u64 != root.size()
            || fetched.media_type != root.media_type().to_string()
        {
            bail!(
                "{image}: registry object {root_digest} is {} bytes of {}; signed: {} bytes of {}",
                fetched.bytes.len(),
                fetched.media_type,
                root.size(),
                root.media_type()
            );
        }
        // Select the manifest for this platform when the root is an index.
        let (manifest_bytes, manifest_digest) = if fetched.media_type == INDEX_MEDIA_TYPE
            || fetched.media_type == DOCKER_LIST_MEDIA_TYPE
        {
            let index = Manifest::parse(&root_digest, &fetched.bytes)?;
            let chosen = crate::platform::choose(&fetched.bytes)
                .with_context(|| format!("{image}: no manifest for this platform in the index"))?;
            let entry = index
                .manifests
                .iter()
                .find(|m| m.digest == chosen)
                .context("platform manifest vanished")?;
            let child = registry
                .manifest(&repository.digested(&entry.digest), MANIFEST_LIMIT)
                .await?
                .with_context(|| format!("{} not found in {repository}", entry.digest))?;
            let labels = HashMap::from([(
                "containerd.io/gc.ref.content.m.0".to_string(),
                entry.digest.clone(),
            )]);
            fetched_bytes += self
                .write(&root_digest, &fetched.bytes, labels, progress)
                .await?;
            (child.bytes, entry.digest.clone())
        } else {
            (fetched.bytes.clone(), root_digest.clone())
        };
        let manifest = Manifest::parse(&manifest_digest, &manifest_bytes)?;
        let config: ConfigRef = serde_json::from_slice(&manifest_bytes)
            .with_context(|| format!("{manifest_digest}: not an image manifest"))?;
        let mut labels = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_string(),
            config.config.digest.clone(),
        )]);
        for (i, layer) in manifest.layers.iter().enumerate() {
            labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                layer.digest.clone(),
            );
        }
        let config_bytes = registry
            .blob(repository, &config.config.digest, config.config.size)
            .await?;
        fetched_bytes += self
            .write(
                &config.config.digest,
                &config_bytes,
                HashMap::new(),
                progress,
            )
            .await?;
        // Several layers at once, as ctr does: one layer's round trips and hashing overlap
        // another's transfer. Unpacking below keeps their order.
        // A layer listed twice is written once: two writes of one digest would contend for
        // the same ingest.
        let mut distinct = std::collections::HashSet::new();
        let mut layers = futures_util::stream::iter(&manifest.layers)
            .filter(|layer| std::future::ready(distinct.insert(&layer.digest)))
            .map(|layer| async move {
                let content = registry.blob_stream(repository, &layer.digest, layer.size);
                let written = self
                    .ingest(&layer.digest, layer.size, content, HashMap::new(), progress)
                    .await?;
                Ok::<_, anyhow::Error>((layer, written))
            })
            .buffer_unordered(LAYER_CONCURRENCY);
        while let Some(layer) = layers.next().await {
            match layer? {
                (layer, Some(written)) => {
                    fetched_bytes += written;
                    progress(&format!("{}: done ({written} bytes)", layer.digest));
                }
                (layer, None) => progress(&format!("{}: exists", layer.digest)),
            }
        }
        fetched_bytes += self
            .write(&manifest_digest, &manifest_bytes, labels, progress)
            .await?;

        let snapshot = match &options.snapshotter {
            Some(snapshotter) => Some(
                self.unpack(
                    snapshotter,
                    &config.config.digest,
                    &config_bytes,
                    &manifest,
                    progress,
                )
                .await?,
            ),
            None => None,
        };
        let name = image.to_string();
        let pulled = [&root_digest, &manifest_digest, &config.config.digest]
            .into_iter()
            .chain(manifest.layers.iter().map(|layer| &layer.digest));
        // The name may have been signed for other content while this pull ran: a slower pull
        // of the older target must not record it over a newer pull's.
        let now = verifier.resolve(image).await?;
        if now.digest() != root_digest {
            bail!(
                "{image} was signed for {} while this pull of {root_digest} ran; not recorded, \
                 pull again",
                now.digest()
            );
        }
        // Last before the record: nothing removed during the round trip above goes unseen.
        self.check_held(pulled).await?;
        self.record(&name, root).await?;
        progress(&format!("{name}: recorded as {root_digest}"));
        Ok(Pulled {
            name,
            digest: root_digest,
            fetched_bytes,
            snapshot,
        })
    }

    /// Writes an object held in memory; returns the bytes written. When containerd has it
    /// already, only `labels` are added to it.
    async fn write(
        &self,
        digest: &str,
        bytes: &[u8],
        labels: HashMap<String, String>,
        progress: &(dyn Fn(&str) + Sync),
    ) -> anyhow::Result<u64> {
        let content = tokio_stream::once(Ok::<_, tuf_oci::Error>(Bytes::copy_from_slice(bytes)));
        let content = std::future::ready(Ok::<BlobStream, tuf_oci::Error>(Box::pin(content)));
        let written = self
            .ingest(
                digest,
                bytes.len() as u64,
                content,
                labels.clone(),
                progress,
            )
            .await?;
        match written {
            Some(written) => {
                progress(&format!("{digest}: done ({written} bytes)"));
                Ok(written)
            }
            None => {
                self.label(digest, labels).await?;
                progress(&format!("{digest}: exists"));
                Ok(0)
            }
        }
    }

    /// Fails unless containerd has every one of `digests`: content removed since it was
    /// written (another client's `ctr content rm`, or collected once the lease ran out) is
    /// never recorded as an image, which would name content containerd lacks.
    async fn check_held(&self, digests: impl Iterator<Item = &String>) -> anyhow::Result<()> {
        let mut content = ContentClient::new(self.channel.clone());
        for digest in digests {
            match content
                .info(self.request(InfoRequest {
                    digest: digest.clone(),
                }))
                .await
            {
                Ok(_) => {}
                Err(status) if status.code() == tonic::Code::NotFound => bail!(
                    "{digest} is no longer in containerd (removed, or collected) after it was \
                     written; the image is not recorded"
                ),
                Err(status) => Err(status).with_context(|| format!("looking up {digest}"))?,
            }
        }
        Ok(())
    }

    /// Adds `labels` to content containerd has.
    async fn label(&self, digest: &str, labels: HashMap<String, String>) -> anyhow::Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        ContentClient::new(self.channel.clone())
            .update(self.request(UpdateRequest {
                info: Some(Info {
                    digest: digest.to_string(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            }))
            .await
            .with_context(|| format!("labelling {digest}"))?;
        Ok(())
    }

    /// Opens a `Content.Write` of `digest`, which takes containerd's lock on its
    /// [`ingest_reference`]. While another client holds that lock (another `tuf-oci pull` of the
    /// same content), waits for it until the session's waits end, then finds the content there
    /// or writes it. `None` when containerd has the content (it then added it to the pull's
    /// lease).
    async fn open_write(
        &self,
        digest: &str,
        total: i64,
        progress: &(dyn Fn(&str) + Sync),
    ) -> anyhow::Result<Option<OpenWrite>> {
        let reference = ingest_reference(digest);
        let mut pause = FIRST_LOCK_PAUSE;
        let mut waiting = false;
        let waits_until = || {
            *self
                .waits_until
                .get_or_init(|| (Instant::now() + self.lock_wait).min(self.opened + LEASE / 2))
        };
        loop {
            let (requests, queue) = tokio::sync::mpsc::channel(2);
            // The status of the ingest. With `expected`, containerd answers AlreadyExists
            // when it has the content, having added it to the lease of the request.
            let stat = WriteContentRequest {
                action: WriteAction::Stat as i32,
                r#ref: reference.clone(),
                total,
                expected: digest.to_string(),
                ..Default::default()
            };
            requests
                .send(stat)
                .await
                .expect("the receiver is held below");
            let opened = async {
                let mut responses = ContentClient::new(self.channel.clone())
                    .write(self.request(tokio_stream::wrappers::ReceiverStream::new(queue)))
                    .await?
                    .into_inner();
                let status = responses.message().await?;
                Ok::<_, tonic::Status>(status.map(|status| (status, responses)))
            }
            .await;
            match opened {
                Ok(Some((status, responses))) => {
                    return Ok(Some(OpenWrite {
                        requests,
                        responses,
                        complete: total > 0 && status.offset == total && status.digest == digest,
                    }));
                }
                Ok(None) => bail!("containerd ended the write of {digest} before answering"),
                Err(status) if status.code() == tonic::Code::AlreadyExists => return Ok(None),
                Err(status) if is_locked(&status) && Instant::now() < waits_until() => {
                    if !waiting {
                        progress(&format!("{digest}: another client is writing it; waiting"));
                        waiting = true;
                    }
                    let left = waits_until().saturating_duration_since(Instant::now());
                    tokio::time::sleep(pause.min(left)).await;
                    pause = (pause * 2).min(LAST_LOCK_PAUSE);
                }
                Err(status) if is_locked(&status) => bail!(
                    "writing {digest}: another client held containerd's lock on it past the \
                     time the pull waits for other clients ({} s from its first wait, within \
                     half its lease)",
                    self.lock_wait.as_secs()
                ),
                Err(status) => {
                    return Err(status).with_context(|| format!("writing {digest}"));
                }
            }
        }
    }

    /// Streams `size` bytes of `content` into containerd with `Content.Write`, in chunks of
    /// [`CHUNK`], so memory stays bounded whatever the blob's size. `content` is opened only
    /// once the write is (containerd may have the blob, or another client may be writing it).
    /// The commit is sent only once `content` ended without error (it is checked against its
    /// digest as it arrives); a write cut short is left uncommitted for containerd to collect
    /// with the lease. Returns the bytes written; `None` when containerd has the content.
    async fn ingest(
        &self,
        digest: &str,
        size: u64,
        content: impl Future<Output = Result<BlobStream, tuf_oci::Error>>,
        labels: HashMap<String, String>,
        progress: &(dyn Fn(&str) + Sync),
    ) -> anyhow::Result<Option<u64>> {
        let total = containerd_size(digest, size)?;
        let Some(OpenWrite {
            requests,
            mut responses,
            complete,
        }) = self.open_write(digest, total, progress).await?
        else {
            return Ok(None);
        };
        let mut content = if complete {
            // Nothing to fetch: containerd checked this content when it was stored (a resumed
            // ingest is hashed again at the commit).
            Box::pin(tokio_stream::empty())
        } else {
            content.await?
        };
        let reference = ingest_reference(digest);
        let feed = async move {
            let message = |action: WriteAction, offset: i64, data: Vec<u8>| WriteContentRequest {
                action: action as i32,
                r#ref: reference.clone(),
                total,
                offset,
                data,
                ..Default::default()
            };
            let mut offset = 0;
            let mut pending = Vec::with_capacity(CHUNK);
            loop {
                let next = content.next().await.transpose()?;
                let ended = next.is_none();
                let mut chunk = next.unwrap_or_default();
                // Whole messages from what arrived; the rest waits for more, or the end.
                while !chunk.is_empty() || (ended && !pending.is_empty()) {
                    let take = (CHUNK - pending.len()).min(chunk.len());
                    pending.extend_from_slice(&chunk.split_to(take));
                    if pending.len() < CHUNK && !ended {
                        continue;
                    }
                    let data = std::mem::replace(&mut pending, Vec::with_capacity(CHUNK));
                    let len = data.len() as i64;
                    if requests
                        .send(message(WriteAction::Write, offset, data))
                        .await
                        .is_err()
                    {
                        // containerd ended the call; its answer says why.
                        return Ok(());
                    }
                    offset += len;
                }
                if ended {
                    break;
                }
            }
            let commit = WriteContentRequest {
                expected: digest.to_string(),
                labels,
                ..message(
                    WriteAction::Commit,
                    if complete { total } else { offset },
                    Vec::new(),
                )
            };
            // Dropping the sender afterwards ends the request stream.
            let _ = requests.send(commit).await;
            Ok::<_, tuf_oci::Error>(())
        };
        let answers = async {
            let mut committed = None;
            while let Some(response) = responses.message().await? {
                if response.action == WriteAction::Commit as i32 {
                    committed = Some(response.digest);
                }
            }
            Ok::<_, tonic::Status>(committed)
        };
        tokio::pin!(feed, answers);
        let answered = tokio::select! {
            fed = &mut feed => {
                fed?;
                answers.await
            }
            // containerd ended the call first: what the registry still sends is moot.
            answered = &mut answers => answered,
        };
        let answered = match answered {
            // Another client committed the same digest meanwhile (containerd checked it).
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                // containerd found it at the commit without adding it to the pull's lease;
                // opening a write adds it, in the same step as it finds it still there.
                if self.open_write(digest, total, progress).await?.is_some() {
                    bail!(
                        "containerd collected {digest}, which another client committed during \
                         this pull's write of it; pull again"
                    );
                }
                return Ok(None);
            }
            answered => answered.with_context(|| format!("writing {digest}"))?,
        };
        match answered {
            // Committed from what containerd held: nothing was fetched.
            Some(committed) if committed == digest && complete => Ok(None),
            Some(committed) if committed == digest => Ok(Some(size)),
            Some(committed) => bail!("containerd committed {committed} for {digest}"),
            None => bail!("containerd ended the write of {digest} before its commit"),
        }
    }

    /// Applies the layers in order onto snapshots named by their chain ids; returns the top.
    async fn unpack(
        &self,
        snapshotter: &str,
        config_digest: &str,
        config: &[u8],
        manifest: &Manifest,
        progress: &(dyn Fn(&str) + Sync),
    ) -> anyhow::Result<String> {
        let rootfs: RootFs = serde_json::from_slice(config)
            .with_context(|| format!("image config {config_digest}"))?;
        let diff_ids = rootfs.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            bail!(
                "config {config_digest} names {} layers, its manifest {}",
                diff_ids.len(),
                manifest.layers.len()
            );
        }
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let mut parent = String::new();
        for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
            let chain = if parent.is_empty() {
                diff_id.clone()
            } else {
                tuf_oci::layout::sha256_digest(format!("{parent} {diff_id}").as_bytes())
            };
            let exists = snapshots
                .stat(self.request(StatSnapshotRequest {
                    snapshotter: snapshotter.to_string(),
                    key: chain.clone(),
                }))
                .await
                .is_ok();
            if !exists {
                // A key of this pull's own (its lease's): pulls of one image at once each
                // prepare their own snapshot, and the first to commit the chain wins.
                let key = format!("tuf-oci-extract-{}-{chain}", self.lease);
                let unpacked = self
                    .unpack_layer(snapshotter, &key, &parent, &chain, layer, diff_id)
                    .await;
                if let Err(e) = unpacked {
                    // Left to the lease otherwise, which a failed pull drops anyway.
                    let _ = self.remove_snapshot(snapshotter, &key).await;
                    return Err(e);
                }
            }
            progress(&format!("{}: unpacked ({snapshotter})", layer.digest));
            parent = chain;
        }
        // Keep the unpacked snapshot alive with the image (containerd's own convention).
        ContentClient::new(self.channel.clone())
            .update(self.request(UpdateRequest {
                info: Some(Info {
                    digest: config_digest.to_string(),
                    labels: HashMap::from([(
                        format!("containerd.io/gc.ref.snapshot.{snapshotter}"),
                        parent.clone(),
                    )]),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec![format!(
                        "labels.containerd.io/gc.ref.snapshot.{snapshotter}"
                    )],
                }),
            }))
            .await
            .context("labelling the config with its snapshot")?;
        Ok(parent)
    }

    /// Applies `layer` onto a snapshot of `parent` prepared as `key`, and commits it as
    /// `chain`; another pull committing `chain` first is as good.
    async fn unpack_layer(
        &self,
        snapshotter: &str,
        key: &str,
        parent: &str,
        chain: &str,
        layer: &Entry,
        diff_id: &str,
    ) -> anyhow::Result<()> {
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let digest = &layer.digest;
        let mounts = snapshots
            .prepare(self.request(PrepareSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
                parent: parent.to_string(),
                labels: HashMap::new(),
            }))
            .await
            .with_context(|| format!("preparing snapshot for {digest}"))?
            .into_inner()
            .mounts;
        let applied = DiffClient::new(self.channel.clone())
            .apply(self.request(ApplyRequest {
                diff: Some(Descriptor {
                    media_type: layer.media_type.clone(),
                    digest: digest.clone(),
                    size: containerd_size(digest, layer.size)?,
                    annotations: HashMap::new(),
                }),
                mounts,
                ..Default::default()
            }))
            .await
            .with_context(|| format!("applying layer {digest}"))?
            .into_inner()
            .applied
            .with_context(|| format!("applying layer {digest}: containerd returned nothing"))?;
        if applied.digest != diff_id {
            bail!(
                "layer {digest} unpacks to {}, config says {diff_id}",
                applied.digest
            );
        }
        let committed = snapshots
            .commit(self.request(CommitSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                name: chain.to_string(),
                key: key.to_string(),
                labels: HashMap::new(),
            }))
            .await;
        match committed {
            Ok(_) => Ok(()),
            // Another pull committed the chain meanwhile: this pull's snapshot is not needed
            // (and is left to the lease if it cannot be removed).
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                let _ = self.remove_snapshot(snapshotter, key).await;
                Ok(())
            }
            Err(status) => Err(status).with_context(|| format!("committing snapshot {chain}")),
        }
    }

    /// Removes the snapshot `key`, prepared and not committed.
    async fn remove_snapshot(&self, snapshotter: &str, key: &str) -> Result<(), tonic::Status> {
        SnapshotsClient::new(self.channel.clone())
            .remove(self.request(RemoveSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
            }))
            .await?;
        Ok(())
    }

    /// Records the image (creating it, or updating it when the name exists).
    async fn record(&self, name: &str, target: &oci_spec::image::Descriptor) -> anyhow::Result<()> {
        self.recording
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let image = Image {
            name: name.to_string(),
            target: Some(Descriptor {
                media_type: target.media_type().to_string(),
                digest: target.digest().to_string(),
                size: containerd_size(target.digest().as_ref(), target.size())?,
                annotations: HashMap::new(),
            }),
            ..Default::default()
        };
        let mut images = ImagesClient::new(self.channel.clone());
        match images
            .create(self.request(CreateImageRequest {
                image: Some(image.clone()),
                ..Default::default()
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                images
                    .update(self.request(UpdateImageRequest {
                        image: Some(image),
                        ..Default::default()
                    }))
                    .await
                    .with_context(|| format!("updating the image record {name}"))?;
                Ok(())
            }
            Err(status) => Err(status).with_context(|| format!("creating the image record {name}")),
        }
    }
}

#[derive(Deserialize)]
struct ConfigRef {
    config: tuf_oci::layout::Entry,
}

#[derive(Deserialize)]
struct RootFs {
    rootfs: DiffIds,
}

#[derive(Deserialize)]
struct DiffIds {
    diff_ids: Vec<String>,
}

/// Refuses a lock wait the pull's lease would not outlast.
fn check_lock_wait(lock_wait: Duration) -> anyhow::Result<()> {
    if lock_wait > MAX_LOCK_WAIT {
        bail!(
            "a lock wait of {} s exceeds {} s: the pull's lease must outlast it",
            lock_wait.as_secs(),
            MAX_LOCK_WAIT.as_secs()
        );
    }
    Ok(())
}

/// How long dropping the lease may take at the end of a pull, and a record under way when
/// the pull is interrupted.
const GRACE: Duration = Duration::from_secs(5);

/// [`LEASE`] from now in RFC 3339, for the lease's expiry label (a safety net if we die).
fn lease_expiry() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + LEASE.as_secs() as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_waits_the_lease_would_not_outlast_are_refused() {
        assert!(check_lock_wait(MAX_LOCK_WAIT).is_ok());
        let error = check_lock_wait(MAX_LOCK_WAIT + Duration::from_secs(1)).unwrap_err();
        assert!(
            error.to_string().contains("1801 s exceeds 1800 s"),
            "{error}"
        );
    }
}
