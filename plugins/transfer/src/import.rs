//! Transfer-service imports (`ImageImportStream`: `ctr images import` on containerd 2.x, whose
//! own image verifiers skip imports). The front receives the archive itself over the client's
//! stream, checks every image record containerd would make from it ([`crate::naming`]) with
//! TUF (the archive's own metadata when it carries some: air-gapped imports need no network),
//! and only then hands containerd the checked archive over a stream of the front's own. The
//! archive containerd gets is re-packed from what was checked: the OCI layout, its `index.json`
//! without the TUF metadata entries (metadata is not an image), and its blobs; nothing else.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::StreamInit;
use containerd_client::types::transfer::{Data, ImageStore, WindowUpdate};
use containerd_tuf_verifier::engine::Engine;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::BodyExt as _;
use oci_spec::image::{Descriptor, ImageIndex};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tuf_oci::store::REF_NAME as OCI_REF_NAME;

use crate::any;
use crate::frame::{self, Item, Messages};
use crate::gate::Refused;
use crate::naming::{self, Recorded};
use crate::status;
use crate::streams::{self, Claimed, FrameSender};
use crate::upstream::{self, Body, Upstream};

/// Largest archive the front accepts (it is staged on disk while checked).
pub const MAX_ARCHIVE: u64 = 64 << 30;

/// Imports staged at once. Each holds its archive on disk two or three times over (as
/// received, unpacked, re-packed) until containerd has imported it: more wait their turn, so
/// local clients starting imports by the dozen cannot fill the disk or the processors.
pub const MAX_CONCURRENT: usize = 4;

/// The archive as checked, in an import's directory: what containerd gets.
const CHECKED_ARCHIVE: &str = "checked.tar";

/// Longest the client may send none of its archive: an import holds one of the
/// [`MAX_CONCURRENT`] turns while it is received, and a client stopped half-way would hold it
/// for good.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Slowest a client may send its archive, on average, once [`MAX_IDLE`] has passed: one
/// trickling a few bytes just often enough would otherwise hold its turn for as long as it
/// liked.
const MIN_BYTES_PER_SECOND: u64 = 64 * 1024;

/// Flow-control window granted at a time, as containerd's own receiver does.
const WINDOW: i32 = 64 * 1024;
/// Largest `Data` message sent, as containerd's own sender does.
const CHUNK: usize = 32 * 1024;

const DATA: &str = "containerd.types.transfer.Data";
const WINDOW_UPDATE: &str = "containerd.types.transfer.WindowUpdate";

/// The names of import directories under the staging directory start so: named for the
/// front, since the staging directory may be shared (`/tmp` by default) and the sweep at start
/// removes what it finds so named.
const IMPORT_PREFIX: &str = "containerd-tuf-import-";

/// An import's directory under the staging directory: the archive as received while it is
/// checked, then as checked and ready for containerd until sent.
#[derive(Debug)]
pub struct Checked {
    /// `None` only once dropped. Shared with the file work on it ([`blocking_in`]), so the
    /// directory goes once the last of them is done: an import the client cancels is dropped
    /// while unpacking may still write there.
    staging: Option<Arc<ImportDir>>,
}

/// An import directory, file-locked while it is in use: fronts sharing the staging directory
/// tell an import of a front still running from one a front stopped without removing
/// ([`sweep`]).
#[derive(Debug)]
struct ImportDir {
    /// Removed when dropped; dropped before the lock.
    dir: tempfile::TempDir,
    _lock: std::fs::File,
    /// The import's turn among [`MAX_CONCURRENT`], given back once its directory is gone.
    _turn: OwnedSemaphorePermit,
}

impl ImportDir {
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Checked {
    fn new_in(staging: &Path, turn: OwnedSemaphorePermit) -> Result<Self, Refused> {
        let refused = |e| failed(&format!("staging directory in {}", staging.display()), e);
        let dir = tempfile::Builder::new()
            .prefix(IMPORT_PREFIX)
            .tempdir_in(staging)
            .map_err(refused)?;
        let lock = std::fs::File::open(dir.path()).map_err(refused)?;
        lock.try_lock().map_err(|e| refused(e.into()))?;
        Ok(Checked {
            staging: Some(Arc::new(ImportDir {
                dir,
                _lock: lock,
                _turn: turn,
            })),
        })
    }

    fn path(&self) -> &Path {
        self.staging.as_ref().expect("not dropped").path()
    }

    fn archive(&self) -> PathBuf {
        self.path().join(CHECKED_ARCHIVE)
    }
}

impl Drop for Checked {
    fn drop(&mut self) {
        // Removing gigabytes takes a while: not on the thread that forwards calls.
        if let (Some(dir), Ok(runtime)) =
            (self.staging.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn_blocking(move || drop(dir));
        }
    }
}

/// Removes the import directories under `staging` that no front is using: a front stopped
/// mid-import (killed, or the machine down) leaves its archive, of up to [`MAX_ARCHIVE`]
/// bytes, where nothing else removes it. Returns how many went; what cannot be removed is
/// logged and left.
pub fn sweep(staging: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(staging) else {
        return 0;
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_import = entry
            .file_name()
            .to_string_lossy()
            .starts_with(IMPORT_PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_import {
            continue;
        }
        // Held, it is another front's import in progress.
        let Ok(lock) = std::fs::File::open(&path) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => swept += 1,
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "removing a stale import"),
        }
    }
    swept
}

/// Receives the archive of `claimed`, checks what importing it into `store` would record, and
/// stages the archive containerd may import, in a directory of its own under `staging`, in
/// its `turn` among the imports staged at once ([`MAX_CONCURRENT`]).
pub async fn check(
    engine: &Engine,
    mut claimed: Claimed,
    store: &ImageStore,
    staging: &Path,
    turn: OwnedSemaphorePermit,
) -> Result<(Checked, Claimed), Refused> {
    let checked = Checked::new_in(staging, turn)?;
    receive(&mut claimed, &checked.path().join("received")).await?;
    let (mut index, layout) = blocking_in(&checked, |dir| {
        let layout = dir.join("layout");
        let index = open_archive(&dir.join("received"), &dir.join("received.tar"), &layout)?;
        // Opened once for every record checked: each would otherwise read index.json again.
        // A layout tuf-oci cannot open carries no TUF metadata it could use.
        let opened = tuf_oci::store::LayoutStore::open(&layout, false).ok();
        Ok((index, opened))
    })
    .await?;
    let images: Vec<Descriptor> = index
        .manifests()
        .iter()
        .filter(|entry| !is_metadata(entry))
        .cloned()
        .collect();
    // An archive can list one record many times over: each is checked once, and other calls
    // through the front take turns between checks (each reads the archive's index).
    let mut seen = HashSet::new();
    let records =
        naming::recorded(store, &images).map_err(|too_many| Refused::Deny(too_many.to_string()))?;
    for (name, recorded) in records {
        let answer = match recorded {
            Recorded::Entry(descriptor) => {
                let record = (
                    name.clone(),
                    descriptor.digest().to_string(),
                    descriptor.media_type().to_string(),
                    descriptor.size(),
                );
                if !seen.insert(record) {
                    continue;
                }
                tokio::task::yield_now().await;
                match &layout {
                    Some(layout) => engine.check_in_archive(&name, descriptor, layout).await,
                    None => engine.check(&name, Some(descriptor)).await,
                }
            }
            Recorded::ArchiveIndex => engine.check_unverifiable(
                naming::unpinned(&name, naming::ARCHIVE_INDEX_DIGEST),
                &format!(
                    "the import would name {name} the archive's own index, which no TUF \
                         target signs; import without naming it (ctr: no `--index-name`, and \
                         no `--digests` with `--base-name`)"
                ),
            ),
        };
        if !answer.allowed {
            return Err(Refused::Deny(answer.reason));
        }
    }
    index.set_manifests(images);
    blocking_in(&checked, move |dir| {
        repack(&dir.join("layout"), &index, &dir.join(CHECKED_ARCHIVE))
    })
    .await?;
    Ok((checked, claimed))
}

/// Unpacks the received archive into `layout` (through `tar`, decompressed) and reads its index.
fn open_archive(received: &Path, tar: &Path, layout: &Path) -> Result<ImageIndex, Refused> {
    decompress(received, tar)?;
    tuf_oci::store::unpack(tar, layout, tuf_oci::store::Unpacked::Layout).map_err(
        |e| match &e {
            tuf_oci::Error::Io { cause, .. } if is_the_nodes_fault(cause) => {
                failed("unpacking the archive", e)
            }
            _ => Refused::Malformed(format!(
                "the import is not an OCI archive (tar of an OCI layout, plain or gzip): {e}"
            )),
        },
    )?;
    std::fs::remove_file(tar).map_err(|e| failed("staged archive", e))?;
    let index = layout.join("index.json");
    let size = std::fs::metadata(&index).map_or(0, |m| m.len());
    if size > tuf_oci::store::INDEX_LIMIT {
        return Err(Refused::Malformed(format!(
            "the import's index.json is {size} bytes, more than {} (OCI layout)",
            tuf_oci::store::INDEX_LIMIT
        )));
    }
    ImageIndex::from_file(index)
        .map_err(|e| Refused::Malformed(format!("the import's index.json (OCI layout): {e}")))
}

/// Runs file work (archives of gigabytes) in `checked`'s directory off the async workers. The
/// directory stays until the work is done, even when the import is dropped meanwhile.
fn blocking_in<T: Send + 'static>(
    checked: &Checked,
    work: impl FnOnce(&Path) -> Result<T, Refused> + Send + 'static,
) -> impl Future<Output = Result<T, Refused>> + 'static {
    let dir = checked.staging.clone().expect("not dropped");
    async move {
        tokio::task::spawn_blocking(move || work(dir.path()))
            .await
            .map_err(|e| failed("archive work", e))?
    }
}

/// A checked archive being sent to containerd. Dropped when the Transfer naming its stream is
/// answered: containerd has then read all it will read, and the stream and the staged archive
/// go. containerd fails some Transfers before it reads the stream at all (a progress stream it
/// cannot find), and keeps such a stream open until its sender ends it.
#[derive(Debug)]
pub struct HandedOver {
    sending: tokio::task::AbortHandle,
    /// Why sending the archive failed, once it has: containerd then fails the Transfer with
    /// an error of its own (an archive cut short) that says nothing of the cause.
    failed: Arc<std::sync::OnceLock<String>>,
}

impl Drop for HandedOver {
    fn drop(&mut self) {
        self.sending.abort();
    }
}

/// `response` holding `handed_over` until its body ends (or is dropped); a failure it ends
/// with says why sending the archive failed, if it did.
pub fn held_until_answered(response: Response<Body>, handed_over: HandedOver) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    if status::is_trailers_only(&parts.headers) {
        explain(&mut parts.headers, &handed_over.failed);
    }
    let body = body
        .map_frame(move |mut frame| {
            if let Some(trailers) = frame.trailers_mut() {
                explain(trailers, &handed_over.failed);
            }
            frame
        })
        .boxed_unsync();
    Response::from_parts(parts, body)
}

/// Puts before the message of a failed call (`ended`: its trailers, or the headers of a
/// "Trailers-Only" answer) why sending the checked archive failed, if it did.
fn explain(ended: &mut http::HeaderMap, failed: &std::sync::OnceLock<String>) {
    let Some(why) = failed.get() else {
        return;
    };
    if status::ended(ended, None).0.is_none_or(|code| code == "0") {
        return;
    }
    // Read whatever its bytes, so that none of containerd's message is lost.
    let message = ended
        .get("grpc-message")
        .map(|value| status::decoded(&String::from_utf8_lossy(value.as_bytes())))
        .unwrap_or_default();
    status::set_message(
        ended,
        &format!(
            "tuf-oci front: sending the checked archive to containerd failed: {why}; containerd: {message}"
        ),
    );
}

/// Opens a stream of the front's own to containerd (same namespace and lease as the client's)
/// and sends it the checked archive as containerd's flow control allows. Returns once containerd
/// has registered the stream, so a Transfer naming it finds it.
pub async fn hand_over(
    upstream: &Upstream,
    claimed: &Claimed,
    id: &str,
    checked: Checked,
) -> Result<HandedOver, Refused> {
    let (to_containerd, body) = streams::channel_body();
    let mut request = Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() =
        upstream::at_path(&claimed.uri, streams::STREAM).map_err(|e| failed("stream URI", e))?;
    *request.headers_mut() = claimed.headers.clone();
    request.headers_mut().remove(http::header::CONTENT_LENGTH);
    let init = StreamInit { id: id.to_string() };
    send(&to_containerd, any::STREAM_INIT, &init.encode_to_vec()).await?;
    let response = upstream
        .send(request)
        .await
        .map_err(|e| failed("opening a stream to containerd", e))?;
    let refused = response
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(status::decoded);
    let mut from_containerd = Messages::new(response.into_body().boxed_unsync());
    // containerd acknowledges a registered stream with one message.
    match from_containerd.next().await {
        Some(Ok(Item::Message(_))) => {}
        _ => {
            return Err(Refused::Failed(format!(
                "containerd did not open stream {id}: {}",
                refused.unwrap_or_else(|| "no acknowledgement".into())
            )));
        }
    }
    let stream = id.to_string();
    let failed = Arc::new(std::sync::OnceLock::new());
    let failure = Arc::clone(&failed);
    let sending = tokio::spawn(async move {
        match pump(&checked.archive(), &to_containerd, &mut from_containerd).await {
            Ok(Sent::Whole) => {}
            Ok(Sent::EndedByContainerd) => {
                tracing::warn!(%stream, "containerd ended the stream of a checked import early");
            }
            Err(e) => {
                tracing::warn!(%stream, error = %e, "sending a checked import to containerd");
                // Before the stream ends: containerd answers the Transfer only after that.
                let _ = failure.set(e.to_string());
            }
        }
        drop(to_containerd);
        // Hold the stream (and the staged archive) until containerd ends it, or the Transfer
        // is answered (`HandedOver`).
        while from_containerd.next().await.is_some() {}
    });
    Ok(HandedOver {
        sending: sending.abort_handle(),
        failed,
    })
}

/// The client's archive into `path`, granting the client flow-control window as it goes.
async fn receive(claimed: &mut Claimed, path: &Path) -> Result<(), Refused> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| failed("staging the archive", e))?;
    let mut window: i64 = 0;
    let mut total: u64 = 0;
    let mut listening = true;
    let started = tokio::time::Instant::now();
    let mut last_data = started;
    loop {
        if listening && window < i64::from(WINDOW) {
            let update = WindowUpdate { update: WINDOW };
            // A client that sent its last bytes and ended its side ends containerd's too, whose
            // answer closes the way back: what it sent is still to be read. An archive cut short
            // inside an entry is refused when it is opened; one cut between entries only leaves
            // entries out.
            listening = claimed
                .reply(&any::pack(WINDOW_UPDATE, &update.encode_to_vec()))
                .await
                .is_ok();
            window += i64::from(WINDOW);
        }
        // The next archive data is due within MAX_IDLE, and by when the average rate so far
        // falls under MIN_BYTES_PER_SECOND (counted after the first MAX_IDLE).
        let idle = last_data + MAX_IDLE;
        let slow = started + MAX_IDLE + Duration::from_secs(total / MIN_BYTES_PER_SECOND);
        let next = tokio::time::timeout_at(idle.min(slow), claimed.messages.recv()).await;
        let Some(message) = next.map_err(|_| {
            Refused::Malformed(if slow < idle {
                format!(
                    "the client sent its archive at under {} KiB/s",
                    MIN_BYTES_PER_SECOND / 1024
                )
            } else {
                format!(
                    "the client sent none of the archive for {} s",
                    MAX_IDLE.as_secs()
                )
            })
        })?
        else {
            break;
        };
        let message = message.map_err(|reason| {
            Refused::Malformed(format!(
                "the client's import stream broke off after {total} bytes of the archive: \
                 {reason}"
            ))
        })?;
        let Some(data) = any::unpack::<Data>(&message, DATA) else {
            continue;
        };
        if !data.data.is_empty() {
            last_data = tokio::time::Instant::now();
        }
        total += data.data.len() as u64;
        if total > MAX_ARCHIVE {
            return Err(Refused::Malformed(format!(
                "the import archive exceeds {MAX_ARCHIVE} bytes"
            )));
        }
        window -= data.data.len() as i64;
        file.write_all(&data.data)
            .await
            .map_err(|e| failed("staging the archive", e))?;
    }
    if total == 0 {
        return Err(Refused::Malformed(
            "the client's import stream ended before any of the archive came".into(),
        ));
    }
    file.flush()
        .await
        .map_err(|e| failed("staging the archive", e))
}

/// The tar in `received`, gunzipped when it is gzip (as containerd accepts imports). Other
/// compressions are refused by name rather than misread.
fn decompress(received: &Path, tar: &Path) -> Result<(), Refused> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(received).map_err(|e| failed("staged archive", e))?;
    let read =
        std::io::Read::read(&mut file, &mut magic).map_err(|e| failed("staged archive", e))?;
    match magic[..read] {
        [0x1f, 0x8b, ..] => {
            std::io::Seek::rewind(&mut file).map_err(|e| failed("staged archive", e))?;
            // Every member, as containerd's reader takes them (`cat a.gz b.gz`, parallel
            // compressors): the first alone would leave out what follows, unsaid.
            let mut decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
            let mut out =
                std::fs::File::create(tar).map_err(|e| failed("staging the archive", e))?;
            // Bounded: a small gzip stream can expand without end.
            let mut bounded = std::io::Read::take(&mut decoder, MAX_ARCHIVE + 1);
            let copied = std::io::copy(&mut bounded, &mut out).map_err(|e| {
                if is_the_nodes_fault(&e) {
                    failed("staging the archive", e)
                } else {
                    unreadable("the import's gzip stream", e)
                }
            })?;
            if copied > MAX_ARCHIVE {
                return Err(Refused::Malformed(format!(
                    "the import archive exceeds {MAX_ARCHIVE} bytes once decompressed"
                )));
            }
            // One staged copy of the archive at a time.
            std::fs::remove_file(received).map_err(|e| failed("staged archive", e))
        }
        [0x28, 0xb5, 0x2f, 0xfd] => Err(Refused::Malformed(
            "zstd-compressed imports are not read; decompress the archive first".into(),
        )),
        _ => std::fs::rename(received, tar).map_err(|e| failed("staging the archive", e)),
    }
}

/// How sending a checked archive ended.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// All of it went.
    Whole,
    /// containerd ended the stream before all of it went: its answer to the Transfer says why.
    EndedByContainerd,
}

/// Sends the file at `path` as `Data` messages within the windows containerd grants.
async fn pump(path: &Path, to: &FrameSender, from: &mut Messages) -> Result<Sent, Refused> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| failed("reading the checked archive", e))?;
    let mut buffer = vec![0; CHUNK];
    let mut window: i64 = 0;
    loop {
        while window <= 0 {
            match from.next().await {
                Some(Ok(Item::Message(message))) => {
                    let payload = message.payload().map_err(Refused::Failed)?;
                    if let Some(update) = any::unpack::<WindowUpdate>(&payload, WINDOW_UPDATE) {
                        window += i64::from(update.update);
                    }
                }
                Some(Err(e)) => {
                    return Err(Refused::Failed(format!(
                        "reading containerd's answers on the import stream: {e}"
                    )));
                }
                Some(Ok(Item::Trailers(_))) | None => return Ok(Sent::EndedByContainerd),
            }
        }
        let want = buffer.len().min(usize::try_from(window).unwrap_or(CHUNK));
        let n = file
            .read(&mut buffer[..want])
            .await
            .map_err(|e| failed("reading the checked archive", e))?;
        if n == 0 {
            return Ok(Sent::Whole);
        }
        let data = Data {
            data: buffer[..n].to_vec(),
        };
        send(to, DATA, &data.encode_to_vec()).await?;
        window -= n as i64;
    }
}

/// Writes a tar of exactly the checked layout: `oci-layout`, `index` as `index.json`, and
/// the blobs.
fn repack(layout: &Path, index: &ImageIndex, archive: &Path) -> Result<(), Refused> {
    let write = || -> std::io::Result<()> {
        let mut tar = tar::Builder::new(std::fs::File::create(archive)?);
        let mut add = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, bytes)
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let index = serde_json::to_vec(index).map_err(std::io::Error::other)?;
        add("index.json", &index)?;
        // Unpacking made the blobs directory, whatever the archive held.
        for entry in std::fs::read_dir(layout.join("blobs/sha256"))? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_digest = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if is_digest && entry.file_type()?.is_file() {
                tar.append_path_with_name(entry.path(), format!("blobs/sha256/{name}"))?;
            }
        }
        tar.into_inner()?.sync_all()
    };
    write().map_err(|e| failed("re-packing the checked archive", e))
}

/// Whether an archive entry is TUF metadata (a metadata tag of `tuf-oci copy`), not an image.
fn is_metadata(entry: &Descriptor) -> bool {
    entry
        .annotations()
        .as_ref()
        .and_then(|a| a.get(OCI_REF_NAME))
        .and_then(|name| name.rsplit_once(':'))
        .is_some_and(|(_, tag)| tuf_oci::copy::is_metadata_tag(tag))
}

async fn send(to: &FrameSender, type_url: &str, value: &[u8]) -> Result<(), Refused> {
    to.send(Ok(Frame::data(frame::encode(&any::pack(type_url, value)))))
        .await
        .map_err(|_| Refused::Failed("containerd closed the import stream".into()))
}

fn unreadable(what: &str, e: impl std::fmt::Display) -> Refused {
    Refused::Malformed(format!("{what}: {e}"))
}

fn failed(what: &str, e: impl std::fmt::Display) -> Refused {
    Refused::Failed(format!("{what}: {e}"))
}

/// Whether an I/O error met while decompressing or unpacking an import is the node's (a full
/// or read-only disk, a quota, no permission, no memory), not the archive's: the import is
/// then `UNAVAILABLE`, to be tried again, not a bad archive.
fn is_the_nodes_fault(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::StorageFull
            | ErrorKind::QuotaExceeded
            | ErrorKind::ReadOnlyFilesystem
            | ErrorKind::FileTooLarge
            | ErrorKind::PermissionDenied
            | ErrorKind::OutOfMemory
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A turn of an import of its own.
    fn turn() -> OwnedSemaphorePermit {
        Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .unwrap()
    }

    #[test]
    fn an_archive_without_blobs_is_repacked() {
        let dir = tempfile::tempdir().unwrap();
        let index_json = r#"{"schemaVersion":2,"manifests":[]}"#;
        let received = dir.path().join("received.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&received).unwrap());
        for (name, bytes) in [
            ("oci-layout", &br#"{"imageLayoutVersion":"1.0.0"}"#[..]),
            ("index.json", index_json.as_bytes()),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, bytes).unwrap();
        }
        builder.into_inner().unwrap();
        let layout = dir.path().join("layout");
        tuf_oci::store::unpack(&received, &layout, tuf_oci::store::Unpacked::Layout).unwrap();
        let index: ImageIndex = serde_json::from_str(index_json).unwrap();
        let archive = dir.path().join("archive.tar");
        repack(&layout, &index, &archive).unwrap();
        let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
        let names: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|entry| entry.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["oci-layout", "index.json"]);
    }

    /// An import the client cancels is dropped while its file work (unpacking an archive of
    /// gigabytes) goes on. The directory goes once that work is done, not before, when the
    /// work would write where nothing removes it any more.
    #[tokio::test]
    async fn an_import_dropped_during_its_file_work_leaves_nothing_staged() {
        let staging = tempfile::tempdir().unwrap();
        let checked = Checked::new_in(staging.path(), turn()).unwrap();
        let (started, start) = std::sync::mpsc::channel();
        let (finished, finish) = std::sync::mpsc::channel();
        let work = blocking_in(&checked, move |dir| {
            started.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            let written = std::fs::create_dir_all(dir.join("layout/blobs/sha256"))
                .and_then(|()| std::fs::write(dir.join("layout/oci-layout"), b"{}"))
                .map_err(|e| unreadable("unpacking", e));
            finished.send(()).unwrap();
            written
        });
        let import = tokio::spawn(work);
        let waited = tokio::task::spawn_blocking(move || start.recv().unwrap());
        waited.await.unwrap();
        import.abort();
        drop(checked);
        let waited = tokio::task::spawn_blocking(move || finish.recv().unwrap());
        waited.await.unwrap();
        let mut left = usize::MAX;
        for _ in 0..100 {
            left = std::fs::read_dir(staging.path()).unwrap().count();
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(left, 0, "left in the staging directory");
    }

    #[tokio::test]
    async fn imports_left_behind_are_swept_and_those_in_progress_kept() {
        let staging = tempfile::tempdir().unwrap();
        let in_progress = Checked::new_in(staging.path(), turn()).unwrap();
        std::fs::write(in_progress.archive(), b"being checked").unwrap();
        // A front killed mid-import left its directory, unlocked with the process gone.
        let left = staging.path().join(format!("{IMPORT_PREFIX}left"));
        std::fs::create_dir_all(left.join("layout")).unwrap();
        std::fs::write(left.join("received"), b"an archive").unwrap();
        // Another program's, in a staging directory the front shares (`/tmp` by default).
        let others = ["not-an-import", "import-x"].map(|name| staging.path().join(name));
        for other in &others {
            std::fs::create_dir(other).unwrap();
        }

        assert_eq!(sweep(staging.path()), 1);
        assert!(!left.exists());
        assert!(in_progress.archive().exists());
        assert!(others.iter().all(|other| other.exists()));
    }

    #[test]
    fn archives_are_read_plain_or_gzip_and_other_compressions_named() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let (received, tar) = (dir.path().join("received"), dir.path().join("out.tar"));
        let gzip = |bytes: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(bytes).unwrap();
            gz.finish().unwrap()
        };
        std::fs::write(&received, gzip(b"tar bytes")).unwrap();
        decompress(&received, &tar).unwrap();
        assert_eq!(std::fs::read(&tar).unwrap(), b"tar bytes");
        // Two gzip members, one after the other: both are the archive.
        std::fs::write(&received, [gzip(b"tar "), gzip(b"bytes")].concat()).unwrap();
        decompress(&received, &tar).unwrap();
        assert_eq!(std::fs::read(&tar).unwrap(), b"tar bytes");

        std::fs::write(&received, b"plain tar").unwrap();
        decompress(&received, &tar).unwrap();
        assert_eq!(std::fs::read(&tar).unwrap(), b"plain tar");

        std::fs::write(&received, [0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap();
        let err = decompress(&received, &tar).unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
    }

    #[test]
    fn an_index_past_its_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let (received, tar) = (dir.path().join("received"), dir.path().join("out.tar"));
        let mut builder = tar::Builder::new(std::fs::File::create(&received).unwrap());
        let big = vec![b' '; usize::try_from(tuf_oci::store::INDEX_LIMIT).unwrap() + 1];
        let mut header = tar::Header::new_gnu();
        header.set_size(big.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "index.json", &big[..])
            .unwrap();
        builder.finish().unwrap();
        drop(builder);
        let err = open_archive(&received, &tar, &dir.path().join("layout")).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
    }

    #[test]
    fn an_archive_cut_short_inside_an_entry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (received, tar) = (dir.path().join("received"), dir.path().join("out.tar"));
        let mut builder = tar::Builder::new(Vec::new());
        let blob = vec![7u8; 4096];
        let mut header = tar::Header::new_gnu();
        header.set_size(blob.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "blobs/sha256/aa", &blob[..])
            .unwrap();
        let whole = builder.into_inner().unwrap();
        std::fs::write(&received, &whole[..512 + 1000]).unwrap();
        let err = open_archive(&received, &tar, &dir.path().join("layout")).unwrap_err();
        assert!(err.to_string().contains("not an OCI archive"), "{err}");
    }

    #[tokio::test]
    async fn a_hand_over_lasts_as_long_as_the_answer() {
        let sending = tokio::spawn(std::future::pending::<()>());
        let (to_client, body) = streams::channel_body();
        let handed_over = HandedOver {
            sending: sending.abort_handle(),
            failed: Arc::default(),
        };
        let answer = held_until_answered(Response::new(body), handed_over);
        let mut body = answer.into_body();
        let frame = Frame::data(bytes::Bytes::from_static(b"answer"));
        to_client.send(Ok(frame)).await.unwrap();
        assert!(body.frame().await.unwrap().unwrap().is_data());
        tokio::task::yield_now().await;
        assert!(!sending.is_finished(), "stopped before the answer ended");
        drop(to_client);
        assert!(body.frame().await.is_none());
        drop(body);
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), sending)
            .await
            .expect("still sending after the answer ended");
        assert!(stopped.unwrap_err().is_cancelled());
    }

    /// containerd ending the stream itself is told apart from the front failing to send: its
    /// own answer then says why, and the front adds nothing to it.
    #[tokio::test]
    async fn containerd_ending_the_stream_is_not_the_fronts_failure() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("checked.tar");
        std::fs::write(&archive, b"archive").unwrap();
        let (to, _body) = streams::channel_body();
        let (ended, from) = streams::channel_body();
        drop(ended);
        let mut from = Messages::new(from);
        let sent = pump(&archive, &to, &mut from).await.unwrap();
        assert_eq!(sent, Sent::EndedByContainerd);
        let missing = pump(&dir.path().join("gone"), &to, &mut from).await;
        assert!(
            matches!(missing, Err(Refused::Failed(ref why)) if why.contains("reading the checked archive")),
            "{missing:?}"
        );
    }

    /// containerd fails a Transfer whose archive was cut short with an error of its own: the
    /// answer says why the front stopped sending, whether it ends in trailers or at once.
    #[tokio::test]
    async fn a_failed_hand_over_is_named_in_the_answer() {
        let handed_over = |failure: Option<&str>| {
            let failed = Arc::new(std::sync::OnceLock::new());
            if let Some(failure) = failure {
                failed.set(failure.to_string()).unwrap();
            }
            HandedOver {
                sending: tokio::spawn(async {}).abort_handle(),
                failed,
            }
        };
        let at_once = held_until_answered(
            status::error(status::Code::Unavailable, "unexpected EOF"),
            handed_over(Some("reading the checked archive: disk error")),
        );
        let (_, message) = status::ended(at_once.headers(), None);
        assert_eq!(
            status::decoded(message),
            "tuf-oci front: sending the checked archive to containerd failed: reading the \
             checked archive: disk error; containerd: unexpected EOF"
        );
        for (failure, explained) in [(Some("cut"), true), (None, false)] {
            let (to_client, body) = streams::channel_body();
            let answer = held_until_answered(Response::new(body), handed_over(failure));
            let trailers = status::trailers(status::Code::Unavailable, "unexpected EOF");
            to_client.send(Ok(Frame::trailers(trailers))).await.unwrap();
            drop(to_client);
            let frame = answer.into_body().frame().await.unwrap().unwrap();
            let trailers = frame.into_trailers().unwrap();
            let (_, message) = status::ended(&trailers, None);
            assert_eq!(
                status::decoded(message).contains("cut;"),
                explained,
                "{message}"
            );
        }
        // A Transfer that succeeded says nothing more.
        let (to_client, body) = streams::channel_body();
        let answer = held_until_answered(Response::new(body), handed_over(Some("cut")));
        let mut ok = http::HeaderMap::new();
        ok.insert("grpc-status", http::HeaderValue::from_static("0"));
        to_client.send(Ok(Frame::trailers(ok))).await.unwrap();
        let frame = answer.into_body().frame().await.unwrap().unwrap();
        assert!(!frame.into_trailers().unwrap().contains_key("grpc-message"));
    }

    #[tokio::test]
    async fn an_archive_sent_whole_is_read_once_the_way_back_closed() {
        // The client sent everything and ended its side, which ended containerd's answer and
        // closed the way back before the front read the last bytes.
        let messages = [&b"first "[..], b"second"]
            .map(|chunk| {
                let data = Data {
                    data: chunk.to_vec(),
                };
                bytes::Bytes::from(any::pack(DATA, &data.encode_to_vec()))
            })
            .to_vec();
        let mut claimed = Claimed::answered(messages);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("received");
        receive(&mut claimed, &path).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first second");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_sending_none_of_its_archive_loses_its_turn() {
        // A client stopped half-way (a producer piped into `ctr images import -` that hangs)
        // would hold one of the few turns for good.
        let (mut claimed, _open, _answers) = Claimed::silent();
        let dir = tempfile::tempdir().unwrap();
        let refused = receive(&mut claimed, &dir.path().join("received")).await;
        assert!(
            matches!(&refused, Err(Refused::Malformed(m)) if m.contains("none of the archive for 60 s")),
            "{refused:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_trickling_its_archive_loses_its_turn() {
        // A kilobyte every 30 s never leaves the client idle for 60 s, and would hold the
        // turn for as long as it liked.
        let (mut claimed, client, _answers) = Claimed::silent();
        let trickle = tokio::spawn(async move {
            loop {
                let data = Data {
                    data: vec![0; 1024],
                };
                let message = bytes::Bytes::from(any::pack(DATA, &data.encode_to_vec()));
                if client.send(Ok(message)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("received");
        let received = receive(&mut claimed, &path);
        // Paused time: ten minutes pass at once, but pass.
        let refused = tokio::time::timeout(Duration::from_secs(600), received).await;
        assert!(
            matches!(&refused, Ok(Err(Refused::Malformed(m))) if m.contains("under 64 KiB/s")),
            "{refused:?}"
        );
        trickle.abort();
    }

    #[tokio::test]
    async fn an_import_stream_broken_off_is_not_taken_for_its_end() {
        // Taken for the end, the entries received so far would be checked and imported: an
        // archive cut short between entries, imported without a word.
        let (mut claimed, client, _answers) = Claimed::silent();
        let data = Data {
            data: b"the first entries".to_vec(),
        };
        let sending = tokio::spawn(async move {
            let message = bytes::Bytes::from(any::pack(DATA, &data.encode_to_vec()));
            client.send(Ok(message)).await.unwrap();
            let reason = "a message of 5000000 bytes exceeds the limit".to_string();
            client.send(Err(reason)).await.unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let refused = receive(&mut claimed, &dir.path().join("received")).await;
        sending.await.unwrap();
        assert!(
            matches!(&refused, Err(Refused::Malformed(m))
                if m.contains("broke off after 17 bytes of the archive: a message of 5000000")),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn an_import_stream_ending_before_any_data_says_so() {
        let mut claimed = Claimed::answered(Vec::new());
        let dir = tempfile::tempdir().unwrap();
        let refused = receive(&mut claimed, &dir.path().join("received")).await;
        assert!(
            matches!(&refused, Err(Refused::Malformed(m)) if m.contains("ended before any of the archive")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_full_disk_is_the_fronts_failure_not_a_bad_archive() {
        // A gzip archive decompressed onto a full disk (`/dev/full` answers every write so).
        let dir = tempfile::tempdir().unwrap();
        let received = dir.path().join("received");
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, &[0; 4096]).unwrap();
        std::fs::write(&received, gzip.finish().unwrap()).unwrap();
        let refused = decompress(&received, Path::new("/dev/full"));
        assert!(
            matches!(&refused, Err(Refused::Failed(m)) if m.starts_with("staging the archive")),
            "{refused:?}"
        );
        // The same error unpacking: the node's, where a broken tar is the archive's.
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(is_the_nodes_fault(&full));
        assert!(!is_the_nodes_fault(&std::io::Error::from(
            std::io::ErrorKind::InvalidData
        )));
    }

    #[test]
    fn metadata_entries_are_not_images() {
        let entry = |name: &str| -> Descriptor {
            serde_json::from_value(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", "a".repeat(64)),
                "size": 1,
                "annotations": { OCI_REF_NAME: name },
            }))
            .unwrap()
        };
        for name in [
            "team-a/app:tuf-metadata",
            "org/tuf:3.root.json",
            "team-a/app:sha256-ab",
        ] {
            assert!(is_metadata(&entry(name)), "{name}");
        }
        for name in ["team-a/app:v1", "v1"] {
            assert!(!is_metadata(&entry(name)), "{name}");
        }
    }
}
