//! containerd's image-verifier "bindir" contract (containerd 2.x,
//! `io.containerd.image-verifier.v1.bindir`): the executable is run as
//! `<bin> -name <ref> -digest <digest> -stdin-media-type application/vnd.oci.descriptor.v1+json`
//! with the resolved descriptor on stdin; exit 0 allows the pull, anything else blocks it, and
//! stdout (at most 32 KiB) is the reason containerd reports.

use std::path::Path;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use oci_spec::image::Descriptor;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::api;
use crate::engine::Engine;
use crate::policy::Policy;

/// The only stdin media type containerd sends.
pub const DESCRIPTOR_MEDIA_TYPE: &str = "application/vnd.oci.descriptor.v1+json";
/// Stdin larger than this is refused (a descriptor is a few hundred bytes).
const MAX_STDIN: u64 = 64 * 1024;
/// containerd reads at most 32 KiB of stdout.
const MAX_REASON: usize = 32 * 1024 - 1;
/// Our own deadline, inside containerd's default 10 s per verifier, so we always answer.
const DEADLINE: Duration = Duration::from_secs(8);
/// How long to wait for the service's socket before verifying in-process. Once connected, a
/// call may take until [`DEADLINE`]: a cold verification takes seconds, and verifying
/// in-process after abandoning it would be no faster.
const SERVICE_CONNECT: Duration = Duration::from_millis(500);

/// What to print and how to exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Process exit code: 0 allows the pull.
    pub code: u8,
    /// One line for stdout.
    pub message: String,
    /// Whether the service answered (false: verified in-process or failed before).
    pub via_service: bool,
}

impl Outcome {
    fn refuse(message: impl Into<String>) -> Self {
        Outcome {
            code: 1,
            message: one_line(message.into()),
            via_service: false,
        }
    }
}

/// The flags containerd passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    /// `-name`: the image reference.
    pub name: String,
    /// `-digest`: the resolved digest.
    pub digest: String,
    /// `-stdin-media-type`.
    pub stdin_media_type: String,
}

impl Flags {
    /// Parses `-flag value`, `--flag value` and `-flag=value` (Go's flag package syntax).
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let (mut name, mut digest, mut media_type) = (None, None, None);
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let flag = arg.trim_start_matches('-');
            if flag.len() == arg.len() {
                return Err(format!("unexpected argument {arg:?}"));
            }
            let (flag, value) = match flag.split_once('=') {
                Some((flag, value)) => (flag, value.to_string()),
                None => (
                    flag,
                    args.next()
                        .ok_or_else(|| format!("flag -{flag} needs a value"))?
                        .clone(),
                ),
            };
            let slot = match flag {
                "name" => &mut name,
                "digest" => &mut digest,
                "stdin-media-type" => &mut media_type,
                other => return Err(format!("unknown flag -{other}")),
            };
            *slot = Some(value);
        }
        Ok(Flags {
            name: name.ok_or("missing -name")?,
            digest: digest.ok_or("missing -digest")?,
            stdin_media_type: media_type.ok_or("missing -stdin-media-type")?,
        })
    }
}

/// Set by the client executable on the full one it runs when the service did not answer: verify
/// in-process at once, without asking the service again.
pub const IN_PROCESS_ENV: &str = "CONTAINERD_TUF_IN_PROCESS";

/// Runs one verification as containerd asks for it: through the service when the policy names
/// one and `ask_service` holds, in-process otherwise. Never panics on bad input; every failure
/// blocks the pull with a reason.
pub async fn run(
    args: &[String],
    stdin: impl AsyncRead + Unpin,
    policy: anyhow::Result<Policy>,
    ask_service: bool,
) -> Outcome {
    answer(
        args,
        stdin,
        policy,
        ask_service,
        async |policy, flags, descriptor| match Engine::new(policy) {
            Ok(engine) => {
                let answer = engine.check(&flags.name, Some(&descriptor)).await;
                Outcome {
                    code: u8::from(!answer.allowed),
                    message: one_line(answer.reason),
                    via_service: false,
                }
            }
            Err(e) => Outcome::refuse(format!("tuf-oci: {}: {e:#}", flags.name)),
        },
    )
    .await
}

/// The same for the client executable, which links no verification engine: when the service
/// does not answer, it runs `verifier` (the full executable) in-process with the same flags and
/// descriptor, and passes on its answer. Starting the small client costs a warm pull 0.4–2 ms
/// less than starting the full executable (`docs/performance.md`).
///
/// Run with [`IN_PROCESS_ENV`] set, the client was run as the full executable (a path leading
/// back to it): it refuses rather than run itself again, one process after another.
pub async fn run_client(
    args: &[String],
    stdin: impl AsyncRead + Unpin,
    policy: anyhow::Result<Policy>,
    verifier: &Path,
) -> Outcome {
    if std::env::var_os(IN_PROCESS_ENV).is_some() {
        return Outcome::refuse(
            "tuf-oci: the client was run as the full executable, which it would run again",
        );
    }
    answer(
        args,
        stdin,
        policy,
        true,
        async |_, flags, descriptor| match in_executable(verifier, &flags, &descriptor).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::refuse(format!(
                "tuf-oci: {}: verifying in-process with {}: {e}",
                flags.name,
                verifier.display()
            )),
        },
    )
    .await
}

/// Checks the flags and the descriptor, asks the service, and calls `otherwise` when it does
/// not answer; all within [`DEADLINE`].
async fn answer(
    args: &[String],
    stdin: impl AsyncRead + Unpin,
    policy: anyhow::Result<Policy>,
    ask_service: bool,
    otherwise: impl AsyncFnOnce(Policy, Flags, Descriptor) -> Outcome,
) -> Outcome {
    let deadline = Instant::now() + DEADLINE;
    // What the deadline cut short, for the refusal.
    let stage = std::sync::Mutex::new("reading the flags");
    let set_stage = |now| *stage.lock().expect("not poisoned") = now;
    let checked = async {
        let flags = match Flags::parse(args) {
            Ok(flags) => flags,
            Err(e) => return Outcome::refuse(format!("tuf-oci: {e}")),
        };
        let name = flags.name.as_str();
        set_stage("reading the descriptor on stdin");
        let descriptor = match read_descriptor(&flags, stdin).await {
            Ok(descriptor) => descriptor,
            Err(e) => return Outcome::refuse(format!("tuf-oci: {name}: {e}")),
        };
        let policy = match policy {
            Ok(policy) => policy,
            Err(e) => return Outcome::refuse(format!("tuf-oci: {name}: {e:#}")),
        };
        if ask_service && let Some(socket) = policy.socket.as_deref() {
            set_stage("asking the verification service");
            if let Some(outcome) = via_service(socket, &policy, name, &descriptor, deadline).await {
                return outcome;
            }
        }
        set_stage("verifying in-process");
        otherwise(policy, flags, descriptor).await
    };
    match tokio::time::timeout_at(deadline, checked).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let name = Flags::parse(args)
                .map(|flags| flags.name)
                .unwrap_or_default();
            Outcome::refuse(format!(
                "tuf-oci: {name}: verification did not finish within {} s ({})",
                DEADLINE.as_secs(),
                stage.lock().expect("not poisoned")
            ))
        }
    }
}

/// Runs the full executable `verifier` in-process on one verification and reads its answer.
/// It is killed if the deadline ends the wait; its stderr is ours (containerd logs it). An
/// answer without a reason is no answer: the pull is refused whatever the exit status.
async fn in_executable(
    verifier: &Path,
    flags: &Flags,
    descriptor: &Descriptor,
) -> std::io::Result<Outcome> {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;

    // A bare name would be looked up in containerd's PATH.
    if !verifier.is_absolute() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not an absolute path",
        ));
    }
    let mut child = tokio::process::Command::new(verifier)
        .args(["-name", &flags.name, "-digest", &flags.digest])
        .args(["-stdin-media-type", &flags.stdin_media_type])
        .env(IN_PROCESS_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let input = serde_json::to_vec(descriptor)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // It may answer, a refusal, without reading: its answer is what counts.
    let _ = stdin.write_all(&input).await;
    drop(stdin);
    let mut reason = Vec::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    stdout
        .take(MAX_REASON as u64)
        .read_to_end(&mut reason)
        .await?;
    let status = child.wait().await?;
    let reason = String::from_utf8_lossy(&reason).trim().to_string();
    if reason.is_empty() {
        return Ok(Outcome::refuse(format!(
            "tuf-oci: {}: {} gave no reason ({status})",
            flags.name,
            verifier.display()
        )));
    }
    Ok(Outcome {
        code: u8::from(!status.success()),
        message: one_line(reason),
        via_service: false,
    })
}

/// Answers `--version` and `--help` (either spelling: containerd's flags take one dash) for
/// the executable `name`; `None` when `args` ask for neither.
pub fn info(args: &[String], name: &str, usage: &str) -> Option<ExitCode> {
    match args {
        [flag] if flag == "--version" || flag == "-version" => {
            println!("{name} {}", env!("CARGO_PKG_VERSION"));
        }
        [flag] if flag == "--help" || flag == "-help" || flag == "-h" => println!("{usage}"),
        _ => return None,
    }
    Some(ExitCode::SUCCESS)
}

/// Runs one verification, given containerd's stdin, on a one-thread runtime (one verification
/// per process: no threads to start) and reports it as containerd reads it: the reason on
/// stdout, the exit code.
pub fn report<F: Future<Output = Outcome>>(
    verification: impl FnOnce(Pin<Box<dyn AsyncRead>>) -> F,
) -> ExitCode {
    use std::io::Write;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = match &runtime {
        Ok(runtime) => runtime.block_on(async { verification(stdin()).await }),
        Err(e) => Outcome::refuse(format!("tuf-oci: starting the async runtime: {e}")),
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{}", outcome.message);
    let _ = stdout.flush();
    // Without waiting for blocking work a deadline left behind (a DNS lookup, say).
    if let Ok(runtime) = runtime {
        runtime.shutdown_background();
    }
    ExitCode::from(outcome.code)
}

/// Our stdin. containerd's is a pipe, read through the runtime's reactor: `tokio::io::stdin`
/// would start a thread and hand every read over to it, which costs a warm verification more
/// than the rest of its reading. Anything else (a file) is read on that thread.
fn stdin() -> Pin<Box<dyn AsyncRead>> {
    use std::os::fd::AsFd;

    let pipe = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(tokio::net::unix::pipe::Receiver::from_owned_fd);
    match pipe {
        Ok(pipe) => Box::pin(pipe),
        Err(_) => Box::pin(tokio::io::stdin()),
    }
}

/// Asks the running service, waiting for its answer until `deadline`; `None` when it is not
/// reachable or fails (then we verify in-process).
async fn via_service(
    socket: &std::path::Path,
    policy: &Policy,
    name: &str,
    descriptor: &Descriptor,
    deadline: Instant,
) -> Option<Outcome> {
    let request_timeout = deadline.saturating_duration_since(Instant::now());
    let mut client = match crate::client::connect_with(socket, SERVICE_CONNECT, request_timeout)
        .await
    {
        Ok(client) => client,
        Err(e) => {
            // Not running is usual; refused (someone else's server, or a socket this user may
            // not use) is a misconfiguration worth seeing.
            let denied = e
                .chain()
                .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
                .any(|io| io.kind() == std::io::ErrorKind::PermissionDenied);
            let error = tuf_oci::causes(e.as_ref());
            if denied {
                tracing::warn!(socket = %socket.display(), error, "service not asked; verifying in-process");
            } else {
                tracing::debug!(socket = %socket.display(), error, "service unreachable; verifying in-process");
            }
            return None;
        }
    };
    let request = api::VerifyRequest {
        reference: name.to_string(),
        descriptor: Some(api::Descriptor::from_oci(descriptor)),
        policy_digest: policy.digest.clone(),
    };
    match client.verify(request).await {
        Ok(response) => {
            let response = response.into_inner();
            if let Some(unfit) = unfit_answer(policy, name, descriptor, &response) {
                tracing::warn!(socket = %socket.display(), "the service answered {unfit}; verifying in-process");
                return None;
            }
            Some(Outcome {
                code: u8::from(!response.allowed),
                message: one_line(response.reason),
                via_service: true,
            })
        }
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            tracing::warn!(message = status.message(), "verifying in-process");
            None
        }
        Err(status) => {
            tracing::debug!(%status, "service call failed; verifying in-process");
            None
        }
    }
}

/// What makes the service's `response` no answer for `name` with `descriptor`: no reason, or
/// allowing what the policy lets through only verified without a signed target that is
/// `descriptor`. The service makes neither; whatever else answers on its socket, or a service
/// of another version, is not taken at its word.
fn unfit_answer(
    policy: &Policy,
    name: &str,
    descriptor: &Descriptor,
    response: &api::VerifyResponse,
) -> Option<&'static str> {
    if response.reason.is_empty() {
        return Some("without a reason");
    }
    if !response.allowed || policy.judge(name).passes_unverified() {
        return None;
    }
    let signed = response.target.as_ref().and_then(|t| t.descriptor.as_ref());
    match signed {
        Some(signed)
            if signed.digest == descriptor.digest().to_string()
                && signed.size == descriptor.size()
                && signed.media_type == descriptor.media_type().to_string() =>
        {
            None
        }
        _ => Some("allowing a pull without its signed target being this descriptor"),
    }
}

/// Reads and checks the descriptor on stdin.
async fn read_descriptor(
    flags: &Flags,
    stdin: impl AsyncRead + Unpin,
) -> Result<Descriptor, String> {
    if flags.stdin_media_type != DESCRIPTOR_MEDIA_TYPE {
        return Err(format!(
            "unsupported -stdin-media-type {:?} (expected {DESCRIPTOR_MEDIA_TYPE})",
            flags.stdin_media_type
        ));
    }
    let mut input = Vec::new();
    stdin
        .take(MAX_STDIN + 1)
        .read_to_end(&mut input)
        .await
        .map_err(|e| format!("reading stdin: {e}"))?;
    if input.len() as u64 > MAX_STDIN {
        return Err(format!("descriptor on stdin exceeds {MAX_STDIN} bytes"));
    }
    let descriptor: Descriptor = serde_json::from_slice(&input)
        .map_err(|e| format!("descriptor on stdin is not valid: {e}"))?;
    if descriptor.digest().to_string() != flags.digest {
        return Err(format!(
            "descriptor digest {} differs from -digest {}",
            descriptor.digest(),
            flags.digest
        ));
    }
    Ok(descriptor)
}

/// containerd shows stdout as one error string: keep it to one line within its limit.
fn one_line(message: String) -> String {
    let mut line = message.replace(['\n', '\r'], " ");
    if line.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_in_go_syntax() {
        let flags = Flags::parse(&args(&[
            "-name",
            "r/a:v1",
            "--digest=sha256:00",
            "-stdin-media-type",
            DESCRIPTOR_MEDIA_TYPE,
        ]))
        .unwrap();
        assert_eq!(flags.name, "r/a:v1");
        assert_eq!(flags.digest, "sha256:00");
        assert_eq!(
            Flags::parse(&args(&["-name"])).unwrap_err(),
            "flag -name needs a value"
        );
        assert_eq!(
            Flags::parse(&args(&["-bogus", "x"])).unwrap_err(),
            "unknown flag -bogus"
        );
        assert_eq!(
            Flags::parse(&args(&["stray"])).unwrap_err(),
            "unexpected argument \"stray\""
        );
        assert_eq!(
            Flags::parse(&args(&["-name", "x", "-digest", "y"])).unwrap_err(),
            "missing -stdin-media-type"
        );
    }

    #[test]
    fn reasons_stay_on_one_line_within_the_limit() {
        assert_eq!(one_line("a\nb".into()), "a b");
        assert_eq!(one_line("é".repeat(MAX_REASON)).len(), MAX_REASON - 1);
    }
}
