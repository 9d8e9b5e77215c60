//! containerd-tuf-transfer out of file descriptors (local clients holding many connections):
//! it keeps the connections it has and accepts again once some are gone, rather than exit.

use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use containerd_client::services::v1::version_client::VersionClient;
use tuf_oci_tests::{listening, workspace_binary};

#[tokio::test]
async fn the_front_serves_again_after_running_out_of_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let cache = dir.path().join("cache");
    std::fs::write(
        &policy,
        format!("default = \"deny\"\ncache_dir = \"{}\"\n", cache.display()),
    )
    .unwrap();
    let socket = dir.path().join("front.sock");
    // 32 descriptors: a few for the front itself, the rest for client connections.
    let mut front = Command::new("sh");
    front
        .args(["-c", "ulimit -n 32 && exec \"$0\" \"$@\""])
        .arg(workspace_binary("containerd-tuf-transfer"))
        .arg("--containerd")
        .arg(dir.path().join("no-containerd.sock"))
        .arg("--listen")
        .arg(&socket)
        .arg("--policy")
        .arg(&policy);
    let mut front = listening(front, &socket).await;

    let held: Vec<UnixStream> = (0..64)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    // The front accepts what it has descriptors for and fails on the rest, again and again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!front.ended(), "the front exited");
    drop(held);

    // containerd is not there: the front answers itself.
    let channel = containerd_tuf_verifier::client::unix_channel(&socket, Duration::from_secs(5))
        .await
        .unwrap();
    let status = VersionClient::new(channel).version(()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("tuf-oci front"), "{status:?}");
}
