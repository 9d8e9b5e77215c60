//! Real containerd for tests: Debian's 1.6 (`/usr/bin/containerd`) or 2.3.4 from
//! `../shared/containerd/` (extracted once into `target/containerd-2.3.4`), each with its own
//! root, state and socket in a temp dir, driven by the real `ctr`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// Which containerd to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Debian bookworm's containerd 1.6 (no Transfer service, no image verifiers).
    V1_6,
    /// containerd 2.3.4 (Transfer service, bindir image verifiers).
    V2_3,
}

/// A running containerd, killed on drop.
pub struct Containerd {
    /// Its gRPC socket.
    pub socket: PathBuf,
    /// `ctr` of the same version.
    pub ctr: PathBuf,
    process: Child,
    env: Vec<(String, PathBuf)>,
    /// Root, state, socket and config live here.
    pub dir: TempDir,
}

impl Containerd {
    /// Starts containerd `version`. With `verifiers`, 2.x runs every executable in that
    /// directory as an image verifier. `env` is passed to containerd (and so to verifiers).
    pub fn start(version: Version, verifiers: Option<&Path>, env: &[(&str, &Path)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (bin, ctr) = binaries(version);
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        let mut text = match version {
            Version::V2_3 => "version = 3\n".to_string(),
            Version::V1_6 => "version = 2\n".to_string(),
        };
        text.push_str(&format!(
            "root = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{socket}\"\n[ttrpc]\n  address = \"{socket}.ttrpc\"\n",
            root = dir.path().join("root").display(),
            state = dir.path().join("state").display(),
            socket = socket.display(),
        ));
        if let Some(verifiers) = verifiers {
            text.push_str(&format!(
                "[plugins.\"io.containerd.image-verifier.v1.bindir\"]\n  bin_dir = \"{}\"\n  \
                 max_verifiers = 10\n  per_verifier_timeout = \"10s\"\n",
                verifiers.display()
            ));
        }
        std::fs::write(&config, text).expect("containerd config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log file");
        let mut command = Command::new(&bin);
        command
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log);
        for (key, value) in env {
            command.env(key, value);
        }
        let process = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let containerd = Containerd {
            socket,
            ctr,
            process,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_path_buf()))
                .collect(),
            dir,
        };
        containerd.wait_ready();
        containerd
    }

    /// Stops containerd and starts it again on the same socket, root and state.
    pub fn restart(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_file(&self.socket);
        let config = self.dir.path().join("config.toml");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("containerd.log"))
            .expect("log file");
        let bin = self.ctr.with_file_name("containerd");
        self.process = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("restart containerd");
        self.wait_ready();
    }

    /// Stops containerd's process where it is (`SIGSTOP`) until [`Containerd::resume`]: its
    /// clients' calls wait, as on a node whose containerd is busy.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused containerd run on (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.process.id().to_string())
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{name} containerd");
    }

    fn wait_ready(&self) {
        for _ in 0..400 {
            if self.socket.exists() && self.ctr(&["version"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("containerd did not start: {}", self.log());
    }

    /// Runs `ctr --address <socket> args...`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_at(&self.socket, args)
    }

    /// Runs this containerd's `ctr` against another socket (a front).
    pub fn ctr_at(&self, socket: &Path, args: &[&str]) -> Output {
        self.ctr_command(socket, args).output().expect("run ctr")
    }

    /// [`Containerd::ctr_at`] on a blocking thread, so that a front serving on this runtime
    /// keeps answering while ctr waits for it; the handle yields the output.
    pub fn spawn_ctr_at(&self, socket: &Path, args: &[&str]) -> tokio::task::JoinHandle<Output> {
        let mut command = self.ctr_command(socket, args);
        tokio::task::spawn_blocking(move || command.output().expect("run ctr"))
    }

    /// This containerd's `ctr` against `socket`, to run with other stdio (a pipe to stdin).
    pub fn ctr_command(&self, socket: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(&self.ctr);
        command.arg("--address").arg(socket).args(args);
        command
    }

    /// `ctr content ingest` of `size` bytes of `digest` under `reference`, through `socket`,
    /// reading them from its stdin (a pipe); it takes containerd's lock on `reference` before
    /// reading. Killed on drop.
    pub fn spawn_ctr_ingest(
        &self,
        socket: &Path,
        reference: &str,
        digest: &str,
        size: usize,
    ) -> tokio::process::Child {
        let size = size.to_string();
        let args = [
            "content",
            "ingest",
            "--expected-size",
            &size,
            "--expected-digest",
            digest,
            reference,
        ];
        tokio::process::Command::from(self.ctr_command(socket, &args))
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run ctr content ingest")
    }

    /// The image names containerd holds.
    pub fn images(&self) -> Vec<String> {
        let out = self.ctr(&["images", "ls", "-q"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// containerd and ctr binaries for `version`, extracting 2.3.4 on first use.
fn binaries(version: Version) -> (PathBuf, PathBuf) {
    match version {
        Version::V1_6 => ("/usr/bin/containerd".into(), "/usr/bin/ctr".into()),
        Version::V2_3 => {
            let dir = containerd2_dir();
            (dir.join("containerd"), dir.join("ctr"))
        }
    }
}

/// Where containerd 2.3.4 is: `$CONTAINERD2_DIR`, or extracted from the shared archive into
/// the target directory (atomically, so parallel tests and processes do not race).
pub fn containerd2_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONTAINERD2_DIR") {
        return dir.into();
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let dir = workspace.join("target/containerd-2.3.4");
    if dir.join("ctr").exists() {
        return dir;
    }
    static EXTRACTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = EXTRACTING.lock().unwrap_or_else(|e| e.into_inner());
    if dir.join("ctr").exists() {
        return dir;
    }
    let install = workspace.join("../shared/containerd/install.sh");
    std::fs::create_dir_all(workspace.join("target")).expect("target dir");
    let staging = tempfile::tempdir_in(workspace.join("target"))
        .expect("staging dir")
        .keep();
    let status = Command::new("sh")
        .arg(&install)
        .arg(&staging)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", install.display()));
    assert!(status.success(), "{} failed", install.display());
    if std::fs::rename(&staging, &dir).is_err() {
        // Another test extracted it first.
        let _ = std::fs::remove_dir_all(&staging);
    }
    dir
}
