//! containerd-tuf-verifier-client, the small image verifier for nodes running the verification
//! service, invoked as containerd's bindir plugin runs it: it answers through the service, and
//! without the service through the full executable, whose answer it passes on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tuf_oci::layout::Entry;
use tuf_oci_tests::relay::Relay;
use tuf_oci_tests::{
    TeamA, TestRegistry, assert_refused, run_image_verifier, serve_verifier, workspace_binary,
    write_policy,
};

struct Setup {
    registry: TestRegistry,
    team: TeamA,
    dir: tempfile::TempDir,
    policy: PathBuf,
    socket: PathBuf,
}

/// team-a/ protected, verifications asked of a service on `dir/verifier.sock`.
async fn setup() -> Setup {
    let registry = TestRegistry::start();
    let team = TeamA::create(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("verifier.sock");
    let policy = write_policy(
        dir.path(),
        &registry,
        &team.org,
        &["team-a/"],
        &[],
        &format!("socket = \"{}\"", socket.display()),
    );
    Setup {
        registry,
        team,
        dir,
        policy,
        socket,
    }
}

impl Setup {
    /// Runs `executable` as containerd does on `name` resolved to `descriptor`, with `env`;
    /// returns its exit code and stdout.
    fn verify(
        &self,
        executable: &str,
        env: &[(&str, &Path)],
        name: &str,
        descriptor: &Entry,
    ) -> (Option<i32>, String) {
        run_image_verifier(
            Command::new(workspace_binary(executable))
                .env("CONTAINERD_TUF_POLICY", &self.policy)
                .envs(env.iter().copied()),
            name,
            descriptor,
        )
    }

    /// The client, with `verifier` as its full executable.
    fn client(&self, verifier: &Path, name: &str, descriptor: &Entry) -> (Option<i32>, String) {
        self.verify(
            "containerd-tuf-verifier-client",
            &[("CONTAINERD_TUF_VERIFIER", verifier)],
            name,
            descriptor,
        )
    }

    /// The client, falling back on `verifier`, allows the signed tag and refuses the unsigned
    /// one and a tag resolved to other content.
    fn answers_right(&self, verifier: &Path) {
        allowed(self.client(verifier, &self.name("v1"), &self.team.signed));
        assert_refused(
            self.client(verifier, &self.name("v2"), &self.team.unsigned),
            "no trusted role signs target team-a/app:v2",
        );
        assert_refused(
            self.client(verifier, &self.name("v1"), &self.team.unsigned),
            ": digest is sha256:",
        );
    }

    fn name(&self, tag: &str) -> String {
        format!("{}/team-a/app:{tag}", self.registry.host)
    }
}

fn allowed(out: (Option<i32>, String)) {
    assert_eq!(out.0, Some(0), "{}", out.1);
    assert!(out.1.contains("signed by team-a"), "{}", out.1);
}

#[tokio::test]
async fn the_client_answers_through_the_service() {
    let s = setup().await;
    let service = serve_verifier(&s.policy, &s.socket).await;
    // No full executable to fall back on: every answer comes from the service.
    s.answers_right(&s.dir.path().join("missing-verifier"));
    drop(service);
}

#[tokio::test]
async fn without_the_service_the_client_runs_the_full_executable() {
    let s = setup().await;
    let verifier = workspace_binary("containerd-tuf-verifier");
    s.answers_right(&verifier);
    // The full executable's own refusals of bad input come through too.
    let mut wrong_size = s.team.signed.clone();
    wrong_size.size += 1;
    assert_refused(s.client(&verifier, &s.name("v1"), &wrong_size), ": size is");
}

#[tokio::test]
async fn without_either_the_client_refuses_naming_what_is_missing() {
    let s = setup().await;
    let missing = s.dir.path().join("missing-verifier");
    assert_refused(
        s.client(&missing, &s.name("v1"), &s.team.signed),
        &format!("verifying in-process with {}", missing.display()),
    );
    // A full executable that exits without a reason blocks the pull, whatever its status.
    for silent in ["/bin/false", "/bin/true"] {
        assert_refused(
            s.client(Path::new(silent), &s.name("v1"), &s.team.signed),
            &format!("{silent} gave no reason"),
        );
    }
    // A bare name would be looked up in containerd's PATH.
    assert_refused(
        s.client(
            Path::new("containerd-tuf-verifier"),
            &s.name("v1"),
            &s.team.signed,
        ),
        "not an absolute path",
    );
}

#[tokio::test]
async fn a_client_run_as_the_full_executable_does_not_run_itself_again() {
    let s = setup().await;
    let client = workspace_binary("containerd-tuf-verifier-client");
    // Each client would otherwise start the next, without end.
    assert_refused(
        s.client(&client, &s.name("v1"), &s.team.signed),
        "the client was run as the full executable",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_has_the_full_executable_verify_without_the_service() {
    let s = setup().await;
    // A service that hangs up on every connection: the client gives up on it (after connecting
    // once or more) and runs the full executable, which must not ask it again. Each connecting
    // process is told apart by its pid.
    let listener = tokio::net::UnixListener::bind(&s.socket).unwrap();
    let callers = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let seen = callers.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let pid = stream.peer_cred().unwrap().pid();
            seen.lock().unwrap().insert(pid);
            drop(stream);
        }
    });
    let verifier = workspace_binary("containerd-tuf-verifier");
    let out =
        tokio::task::spawn_blocking(move || s.client(&verifier, &s.name("v1"), &s.team.signed))
            .await
            .unwrap();
    allowed(out);
    assert_eq!(
        callers.lock().unwrap().len(),
        1,
        "only the client asks the service"
    );
}

#[tokio::test]
async fn the_full_executable_run_by_the_client_does_not_ask_the_service_again() {
    let s = setup().await;
    // Something listens on the service's socket and never answers: asking it would wait until
    // the executable's deadline and refuse.
    let listener = tokio::net::UnixListener::bind(&s.socket).unwrap();
    let out = s.verify(
        "containerd-tuf-verifier",
        &[("CONTAINERD_TUF_IN_PROCESS", Path::new("1"))],
        &s.name("v1"),
        &s.team.signed,
    );
    allowed(out);
    let asked = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
    assert!(asked.is_err(), "the service was asked");
}

#[tokio::test]
async fn a_full_executable_that_hangs_is_killed_at_the_deadline() {
    let s = setup().await;
    let pid_file = s.dir.path().join("hung.pid");
    let hung = s.dir.path().join("hung-verifier");
    std::fs::write(
        &hung,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hung, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert_refused(
        s.client(&hung, &s.name("v1"), &s.team.signed),
        "verification did not finish within 8 s",
    );
    // Killed, not left running after the client answered.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    for _ in 0..100 {
        let state = std::fs::read_to_string(&stat).unwrap_or_default();
        if state.is_empty() || state.contains(") Z ") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the hung full executable (pid {}) still runs", pid.trim());
}

/// Answers on the service's socket in its stead: every pull allowed, with a reason, and,
/// when `echo`, with the descriptor asked about as the signed target.
struct Impostor {
    echo: bool,
}

#[tonic::async_trait]
impl containerd_tuf_verifier::api::verifier_server::Verifier for Impostor {
    async fn verify(
        &self,
        request: tonic::Request<containerd_tuf_verifier::api::VerifyRequest>,
    ) -> Result<tonic::Response<containerd_tuf_verifier::api::VerifyResponse>, tonic::Status> {
        let request = request.into_inner();
        let target = self
            .echo
            .then(|| containerd_tuf_verifier::api::VerifiedTarget {
                name: request.reference,
                role: "targets".into(),
                descriptor: request.descriptor,
            });
        Ok(tonic::Response::new(
            containerd_tuf_verifier::api::VerifyResponse {
                allowed: true,
                reason: "signed by the impostor".into(),
                target,
                ..Default::default()
            },
        ))
    }

    async fn refresh(
        &self,
        _: tonic::Request<containerd_tuf_verifier::api::RefreshRequest>,
    ) -> Result<tonic::Response<containerd_tuf_verifier::api::RefreshResponse>, tonic::Status> {
        Ok(tonic::Response::new(Default::default()))
    }

    async fn health(
        &self,
        _: tonic::Request<containerd_tuf_verifier::api::HealthRequest>,
    ) -> Result<tonic::Response<containerd_tuf_verifier::api::HealthResponse>, tonic::Status> {
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_allowing_a_protected_pull_without_its_signed_target_is_not_taken() {
    let s = setup().await;
    serve_impostor(&s.socket, false);
    // The client verifies in-process instead: what TUF signs passes, nothing else.
    let verifier = workspace_binary("containerd-tuf-verifier");
    s.answers_right(&verifier);
    // Nor does an allowing answer stand where the policy's default denies.
    let public = format!("{}/public/app:v1", s.registry.host);
    assert_refused(
        s.client(&verifier, &public, &s.team.unsigned),
        "policy default denies",
    );
}

/// Serves an [`Impostor`] on `socket`.
fn serve_impostor(socket: &Path, echo: bool) {
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                containerd_tuf_verifier::api::verifier_server::VerifierServer::new(Impostor {
                    echo,
                }),
            )
            .serve_with_incoming(incoming),
    );
}

/// Whoever listens on the service's socket is asked only when running as root or as the
/// client's user: a server another user started there (the socket path left free in a
/// directory others can write) is not asked, and the client verifies in-process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_socket_served_by_another_user_is_not_asked() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup().await;
    // An impostor answering exactly as the service would for a signed image, reached through a
    // relay: the relay's user is what the client sees.
    let impostor = s.dir.path().join("impostor.sock");
    serve_impostor(&impostor, true);
    for open in [s.dir.path(), &impostor] {
        std::fs::set_permissions(open, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let verifier = workspace_binary("containerd-tuf-verifier");
    let unsigned = || s.client(&verifier, &s.name("v2"), &s.team.unsigned);
    {
        let _as_root = Relay::start(&s.socket, &impostor, 0).await;
        let (code, reason) = unsigned();
        assert_eq!(code, Some(0), "{reason}");
        assert!(reason.contains("signed by the impostor"), "{reason}");
    }
    std::fs::remove_file(&s.socket).unwrap();
    let _as_nobody = Relay::start(&s.socket, &impostor, 65534).await;
    s.answers_right(&verifier);
}
