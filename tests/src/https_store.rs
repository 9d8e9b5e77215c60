//! A blob store over HTTPS, as a registry's storage is when the registry redirects blob reads
//! there (distribution with S3): one body for every `GET`, under a certificate of a CA made
//! for the test, noting the credential each request carried. Needs `python3` and `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

/// Serves the file `argv[1]` over TLS with certificate `argv[2]` and key `argv[3]`, or sends
/// every request on to `argv[4]` (307) when given; says `ready <port>`, then
/// `heard <Authorization or ->` for each request.
const SERVER: &str = r#"
import http.server, ssl, sys
body = open(sys.argv[1], "rb").read()
location = sys.argv[4] if len(sys.argv) > 4 else None
class Store(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print("heard", self.headers.get("Authorization", "-"), flush=True)
        if location:
            self.send_response(307)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Store)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A running store; stops when dropped.
pub struct HttpsStore {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The certificate of the CA that signed the store's: what a client must trust.
    pub ca: PathBuf,
    /// The `Authorization` header of each request served (`None` for none), in order.
    heard: Arc<Mutex<Vec<Option<String>>>>,
    _dir: tempfile::TempDir,
    _process: tokio::process::Child,
}

impl HttpsStore {
    /// The `Authorization` header of each request served so far (`None` for none), once at
    /// least one was: the store notes a request as it answers it, a moment before this
    /// process reads the note.
    pub async fn heard(&self) -> Vec<Option<String>> {
        for _ in 0..200 {
            let heard = self.heard.lock().expect("not poisoned").clone();
            if !heard.is_empty() {
                return heard;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the store was asked nothing");
    }

    /// Serves `body`; returns once the store listens.
    pub async fn start(body: &[u8]) -> Self {
        Self::serving(body, None).await
    }

    /// Sends every request on to `location` (307), as storage handing reads on elsewhere.
    pub async fn redirecting(location: &str) -> Self {
        Self::serving(b"", Some(location)).await
    }

    async fn serving(body: &[u8], location: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("body"), body).expect("body");
        certificates(dir.path());
        let mut child = tokio::process::Command::new("python3")
            .args(["-c", SERVER])
            .args([path("body"), path("cert.pem"), path("key.pem")])
            .args(location)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the store did not start")
            .expect("its output")
            .expect("a line");
        let port = ready.strip_prefix("ready ").expect("ready <port>");
        let heard = Arc::<Mutex<Vec<Option<String>>>>::default();
        let noted = heard.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(value) = line.strip_prefix("heard ") {
                    let value = (value != "-").then(|| value.to_string());
                    noted.lock().expect("not poisoned").push(value);
                }
            }
        });
        HttpsStore {
            url: format!("https://127.0.0.1:{port}"),
            ca: path("ca.pem"),
            heard,
            _dir: dir,
            _process: child,
        }
    }
}

/// A CA (`ca.pem`) and a certificate it signs for 127.0.0.1 (`cert.pem`, `key.pem`) in `dir`.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-noenc",
    ];
    let ca = [
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=tuf-oci test CA",
    ];
    openssl(&[&["req", "-x509", "-days", "1"][..], &key, &ca].concat());
    let leaf = [
        "-keyout",
        "key.pem",
        "-out",
        "cert.csr",
        "-subj",
        "/CN=127.0.0.1",
    ];
    openssl(&[&["req"][..], &key, &leaf].concat());
    std::fs::write(
        dir.join("cert.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "1",
        "-extfile",
        "cert.ext",
    ]);
}
