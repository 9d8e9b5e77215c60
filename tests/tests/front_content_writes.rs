//! Blob writes through containerd-tuf-transfer (`Content.Write`, as containerd 1.6 clients pull):
//! the front answers each write as soon as it holds it, a bounded amount ahead of containerd,
//! and containerd's own answers decide how the call ends.

use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{
    CreateRequest, InfoRequest, ReadContentRequest, WriteAction, WriteContentRequest,
    WriteContentResponse,
};
use containerd_tuf_transfer::{server, upstream::Upstream};
use containerd_tuf_verifier::engine::Engine;
use containerd_tuf_verifier::policy::Policy;
use sha2::Digest as _;
use tokio::sync::{mpsc, oneshot};
use tonic::Streaming;
use tonic::transport::Channel;
use tuf_oci_tests::containerd::{Containerd, Version};

const MIB: usize = 1 << 20;

/// How long an answer that must come may take; one that must not come is waited for 1 s.
const ANSWER: Duration = Duration::from_secs(10);

/// containerd 1.6 and the front before it (which refuses every image: writes are forwarded
/// whatever the policy).
struct Setup {
    containerd: Containerd,
    front: Channel,
    /// The front's socket.
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn setup() -> Setup {
    let containerd = Containerd::start(Version::V1_6, None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "default = \"deny\"\ncache_dir = \"{}\"\n",
            dir.path().join("cache").display()
        ),
    )
    .unwrap();
    let socket = dir.path().join("front.sock");
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let engine = Arc::new(Engine::new(Policy::load(&policy).unwrap()).unwrap());
    let listener = containerd_tuf_verifier::server::bind(&socket).unwrap();
    let upstream = Upstream::new(containerd.socket.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, upstream, engine, staging, async {
        let _ = stopped.await;
    }));
    let front = containerd_tuf_verifier::client::unix_channel(&socket, ANSWER)
        .await
        .unwrap();
    // What the tests commit stays leased: containerd collects unreferenced content, and its
    // first collection runs shortly after it starts.
    let direct = containerd_tuf_verifier::client::unix_channel(&containerd.socket, ANSWER)
        .await
        .unwrap();
    LeasesClient::new(direct)
        .create(in_namespace(CreateRequest {
            id: LEASE.into(),
            labels: Default::default(),
        }))
        .await
        .unwrap();
    Setup {
        containerd,
        front,
        socket,
        _dir: dir,
        _stop: stop,
    }
}

/// The lease the tests' writes are made under.
const LEASE: &str = "front-content-writes";

/// A request in the `default` namespace, under [`LEASE`].
fn in_namespace<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("containerd-namespace", "default".parse().unwrap());
    metadata.insert("containerd-lease", LEASE.parse().unwrap());
    request
}

/// One `Content.Write` call, opened as containerd's clients open it: with the ingest's status.
struct Write {
    requests: mpsc::Sender<WriteContentRequest>,
    answers: Streaming<WriteContentResponse>,
}

impl Write {
    async fn open(channel: &Channel, reference: &str, total: usize, expected: &str) -> Self {
        let (requests, stream) = mpsc::channel(16);
        requests
            .send(WriteContentRequest {
                action: WriteAction::Stat as i32,
                r#ref: reference.into(),
                total: total as i64,
                expected: expected.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut answers = ContentClient::new(channel.clone())
            .write(in_namespace(futures_util::stream::unfold(
                stream,
                |mut stream| async { stream.recv().await.map(|request| (request, stream)) },
            )))
            .await
            .unwrap()
            .into_inner();
        let status = answers.message().await.unwrap().unwrap();
        assert_eq!(status.offset, 0, "a new ingest");
        Write { requests, answers }
    }

    async fn send(&self, action: WriteAction, offset: usize, data: &[u8]) {
        self.requests
            .send(WriteContentRequest {
                action: action as i32,
                offset: offset as i64,
                data: data.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    /// The next answer, or `None` when none comes within `wait`.
    async fn answer(
        &mut self,
        wait: Duration,
    ) -> Option<Result<WriteContentResponse, tonic::Status>> {
        let answer = tokio::time::timeout(wait, self.answers.message())
            .await
            .ok()?;
        Some(answer.map(|answer| answer.expect("an answer, not the end of the call")))
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// Whether containerd holds content `digest` (asked directly, not through the front).
async fn stored(containerd: &Containerd, digest: &str) -> bool {
    let channel = containerd_tuf_verifier::client::unix_channel(&containerd.socket, ANSWER)
        .await
        .unwrap();
    match ContentClient::new(channel)
        .info(in_namespace(InfoRequest {
            digest: digest.into(),
        }))
        .await
    {
        Ok(_) => true,
        Err(status) if status.code() == tonic::Code::NotFound => false,
        Err(status) => panic!("Content.Info {digest}: {status:?}"),
    }
}

#[tokio::test]
async fn writes_are_answered_before_containerd_answers_them() {
    let setup = setup().await;
    let (containerd, front) = (&setup.containerd, &setup.front);
    let blob: Vec<u8> = (0..4 * MIB + 1024).map(|i| (i % 251) as u8).collect();
    let digest = sha256(&blob);
    let mut write = Write::open(front, "early-1", blob.len(), &digest).await;

    // With containerd stopped, four MiB are answered by the front...
    containerd.pause();
    for (i, chunk) in blob.chunks(MIB).take(4).enumerate() {
        write.send(WriteAction::Write, i * MIB, chunk).await;
        let answer = write.answer(ANSWER).await;
        let answer = answer
            .expect("answered while containerd is stopped")
            .unwrap();
        assert_eq!(answer.offset as usize, (i + 1) * MIB);
    }
    // ...and no more: the fifth write waits for containerd.
    write
        .send(WriteAction::Write, 4 * MIB, &blob[4 * MIB..])
        .await;
    let waited = write.answer(Duration::from_secs(1)).await;
    containerd.resume();
    assert!(
        waited.is_none(),
        "answered beyond the front's bound: {waited:?}"
    );
    let answer = write.answer(ANSWER).await.unwrap().unwrap();
    assert_eq!(answer.offset as usize, blob.len());
    assert!(
        !stored(containerd, &digest).await,
        "stored before the commit"
    );

    // The commit is containerd's answer.
    write.send(WriteAction::Commit, blob.len(), &[]).await;
    let committed = write.answer(ANSWER).await.unwrap().unwrap();
    assert_eq!(committed.digest, digest);
    assert!(stored(containerd, &digest).await);
}

#[tokio::test]
async fn writes_of_an_unnamed_digest_are_answered_by_containerd() {
    let setup = setup().await;
    let front = &setup.front;
    // No digest named (as `ctr image convert` writes): the client reads the running digest
    // from the answers to its writes, which only containerd has. An answer of the front's
    // would carry none.
    let mut write = Write::open(front, "unnamed-1", 0, "").await;
    for (offset, data) in [(0, &b"abc"[..]), (3, b"def")] {
        write.send(WriteAction::Write, offset, data).await;
    }
    for (offset, written) in [(3, &b"abc"[..]), (6, b"abcdef")] {
        let answer = write.answer(ANSWER).await.unwrap().unwrap();
        assert_eq!((answer.offset, answer.digest), (offset, sha256(written)));
    }
}

#[tokio::test]
async fn a_write_containerd_refuses_ends_the_call_with_its_error() {
    let setup = setup().await;
    let (containerd, front) = (&setup.containerd, &setup.front);
    let blob = vec![7u8; 2048];
    let digest = sha256(&blob);
    let mut write = Write::open(front, "refused-1", blob.len(), &digest).await;

    write.send(WriteAction::Write, 0, &blob[..1024]).await;
    assert_eq!(write.answer(ANSWER).await.unwrap().unwrap().offset, 1024);
    // Not where the ingest stands: containerd's to answer, and it refuses.
    write.send(WriteAction::Write, 1500, &blob[1024..]).await;
    let refused = write.answer(ANSWER).await.unwrap().unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("must occur at current offset 1024"),
        "{refused:?}"
    );
    assert!(!stored(containerd, &digest).await);
}

#[tokio::test]
async fn writes_as_large_as_containerd_takes_pass_and_larger_are_refused() {
    let setup = setup().await;
    let (containerd, front) = (&setup.containerd, &setup.front);
    // Larger than the front's bound on early answers, and than its other streams' messages.
    let blob = vec![3u8; 6 * MIB];
    let digest = sha256(&blob);
    let mut write = Write::open(front, "large-1", blob.len(), &digest).await;
    write.send(WriteAction::Write, 0, &blob).await;
    assert_eq!(
        write.answer(ANSWER).await.unwrap().unwrap().offset as usize,
        blob.len()
    );
    write.send(WriteAction::Commit, blob.len(), &[]).await;
    assert_eq!(write.answer(ANSWER).await.unwrap().unwrap().digest, digest);
    assert!(stored(containerd, &digest).await);

    // Beyond containerd's 16 MiB a message is refused before the front reads it.
    let blob = vec![4u8; 17 * MIB];
    let mut write = Write::open(front, "larger-1", blob.len(), &sha256(&blob)).await;
    write.send(WriteAction::Write, 0, &blob).await;
    let refused = write.answer(ANSWER).await.unwrap().unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("exceeds 16777216"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_lock_containerd_reports_at_once_keeps_its_status() {
    let setup = setup().await;
    let containerd = &setup.containerd;
    // Another client holds containerd's lock on the ingest (its call still open).
    let direct = containerd_tuf_verifier::client::unix_channel(&containerd.socket, ANSWER)
        .await
        .unwrap();
    let blob = b"held while another client writes".to_vec();
    let holder = Write::open(&direct, "held-1", blob.len(), "").await;

    // containerd refuses ctr's call through the front before answering any message (a
    // "trailers-only" answer). ctr waits on the lock only if it reads `UNAVAILABLE`; taken for
    // another error, it fails at once. (What ctr writes is not leased once it exits, so
    // containerd may collect it: ctr's success is the outcome.)
    let release = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(holder);
    };
    let (out, ()) = tokio::join!(
        ctr_ingest(containerd, &setup.socket, "held-1", &blob),
        release
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_blob_containerd_has_is_found_through_the_front() {
    let setup = setup().await;
    let containerd = &setup.containerd;
    let blob = b"stored once, offered twice".to_vec();
    let digest = sha256(&blob);
    // Content containerd has, written again through the front (as pulls of images sharing
    // layers do), is taken as there. The first copy is leased: unleased, containerd may be
    // collecting it while ctr writes it again, and then offers ctr the whole of it to skip,
    // which ctr cannot do on its stdin.
    let mut write = Write::open(&setup.front, "first-1", blob.len(), &digest).await;
    write.send(WriteAction::Commit, 0, &blob).await;
    assert_eq!(write.answer(ANSWER).await.unwrap().unwrap().digest, digest);
    assert!(stored(containerd, &digest).await);

    let out = ctr_ingest(containerd, &setup.socket, "second-1", &blob).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stored(containerd, &digest).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_stop_reading_hold_up_no_other_call() {
    // Every call crosses one connection to containerd. What a client does not take waits
    // there; were that connection's flow-control window shared, three stalled reads of 8 MiB
    // would stop every other call of every client, as clients reading to a pager do.
    let setup = setup().await;
    let blob: Vec<u8> = (0..8 * MIB).map(|i| (i % 251) as u8).collect();
    let digest = sha256(&blob);
    let mut write = Write::open(&setup.front, "big", blob.len(), &digest).await;
    for (i, chunk) in blob.chunks(MIB).enumerate() {
        let last = (i + 1) * MIB >= blob.len();
        let action = if last {
            WriteAction::Commit
        } else {
            WriteAction::Write
        };
        write.send(action, i * MIB, chunk).await;
    }
    loop {
        let answer = write.answer(ANSWER).await.expect("an answer").unwrap();
        if answer.action == WriteAction::Commit as i32 {
            break;
        }
    }
    assert!(stored(&setup.containerd, &digest).await);

    let mut stalled = Vec::new();
    for _ in 0..3 {
        let channel = containerd_tuf_verifier::client::unix_channel(&setup.socket, ANSWER)
            .await
            .unwrap();
        let reading = ContentClient::new(channel.clone())
            .read(in_namespace(ReadContentRequest {
                digest: digest.clone(),
                offset: 0,
                size: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        stalled.push((channel, reading));
    }
    // containerd sends what the windows let it send.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let version = tokio::time::timeout(
        Duration::from_secs(5),
        VersionClient::new(setup.front.clone()).version(()),
    )
    .await
    .expect("Version answered beside the stalled reads");
    version.unwrap();
    drop(stalled);
}

/// `ctr content ingest` of `blob` under `reference` through `socket`, `blob` on its stdin.
async fn ctr_ingest(
    containerd: &Containerd,
    socket: &std::path::Path,
    reference: &str,
    blob: &[u8],
) -> std::process::Output {
    let mut ctr = containerd.spawn_ctr_ingest(socket, reference, &sha256(blob), blob.len());
    let mut stdin = ctr.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, blob)
        .await
        .unwrap();
    drop(stdin);
    tokio::time::timeout(ANSWER, ctr.wait_with_output())
        .await
        .expect("ctr answered")
        .unwrap()
}
