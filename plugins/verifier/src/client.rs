//! gRPC clients over Unix sockets: the verification service's, and a channel for others.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::api::verifier_client::VerifierClient;

/// Connects to the service at `socket`, failing within `timeout` when nothing listens; each
/// call is limited to `timeout` too (see [`connect_with`] for calls that may take longer).
pub async fn connect(socket: &Path, timeout: Duration) -> anyhow::Result<VerifierClient<Channel>> {
    connect_with(socket, timeout, timeout).await
}

/// Connects to the service at `socket`, failing within `connect_timeout` when nothing listens;
/// each call may then take up to `request_timeout` (a cold verification takes seconds).
pub async fn connect_with(
    socket: &Path,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> anyhow::Result<VerifierClient<Channel>> {
    Ok(VerifierClient::new(
        unix_channel_with(socket, connect_timeout, request_timeout).await?,
    ))
}

/// A gRPC channel over the Unix socket `socket` (the verification service, or containerd),
/// with `timeout` for connecting and for each call.
pub async fn unix_channel(socket: &Path, timeout: Duration) -> anyhow::Result<Channel> {
    unix_channel_with(socket, timeout, timeout).await
}

/// [`unix_channel`] with separate deadlines for connecting and for each call.
async fn unix_channel_with(
    socket: &Path,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> anyhow::Result<Channel> {
    let socket: PathBuf = socket.to_path_buf();
    // The URI is required by the API but unused: the connector dials the socket.
    let channel = Endpoint::try_from("http://[::1]:0")?
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(&socket).await?;
                trusted_server(&stream, &socket)?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(channel)
}

/// Fails unless the server on `stream` runs as root or as the user this process runs as
/// (`SO_PEERCRED`). Anyone else listening there (a socket path left free in a directory others
/// can write) could answer anything: a verification service's "allowed" among the rest.
pub fn trusted_server(stream: &tokio::net::UnixStream, socket: &Path) -> std::io::Result<()> {
    let server = stream.peer_cred()?.uid();
    let own = rustix::process::geteuid().as_raw();
    if server == 0 || server == own {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!(
            "the server on {} runs as uid {server}, neither root nor this process's uid {own}",
            socket.display()
        ),
    ))
}
