//! A relay of Unix socket connections run as another user: what a client dialling a socket
//! sees as the server's user (`SO_PEERCRED`) is the relay's, whatever answers behind it.
//! Starting one needs root (to run it as another user) and `python3`.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

/// Binds `argv[1]`, checks that `argv[2]` can be reached as this user, says `ready`, then
/// relays every connection to `argv[2]`.
const RELAY: &str = r#"
import socket, sys, threading
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen()
socket.socket(socket.AF_UNIX).connect(sys.argv[2])
print("ready", flush=True)
def pipe(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
while True:
    client, _ = server.accept()
    upstream = socket.socket(socket.AF_UNIX)
    upstream.connect(sys.argv[2])
    for a, b in ((client, upstream), (upstream, client)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
"#;

/// A running relay; stops when dropped.
pub struct Relay {
    /// Killed when dropped.
    _process: tokio::process::Child,
}

impl Relay {
    /// Relays connections to `listen` on to `upstream`, as user (and group) `uid`; returns
    /// once it listens and has reached `upstream` as that user.
    pub async fn start(listen: &Path, upstream: &Path, uid: u32) -> Self {
        let mut child = tokio::process::Command::new("python3")
            .args(["-c", RELAY])
            .arg(listen)
            .arg(upstream)
            .uid(uid)
            .gid(uid)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 (run as root, to run it as another user)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut lines = tokio::io::BufReader::new(stdout);
        let read = tokio::time::timeout(Duration::from_secs(10), lines.read_line(&mut line));
        assert!(
            matches!(read.await, Ok(Ok(_))) && line.trim() == "ready",
            "the relay as uid {uid} did not listen on {} and reach {}",
            listen.display(),
            upstream.display()
        );
        Relay { _process: child }
    }
}
