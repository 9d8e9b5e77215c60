//! Diagnostics on stderr, set up the same way by both executables: containerd logs a verifier's
//! stderr at debug level, and stdout is kept for the reason.

/// The filter in this variable replaces the default level (info).
pub const LOG_ENV: &str = "CONTAINERD_TUF_LOG";

/// Sends logs to stderr, filtered by [`LOG_ENV`] when it is set.
pub fn init() {
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr);
    match tracing_subscriber::EnvFilter::try_from_env(LOG_ENV) {
        Ok(filter) => logs.with_env_filter(filter).init(),
        // A plain level: parsing even "info" as a filter compiles regexes, which every bindir
        // invocation would pay.
        Err(_) => logs.with_max_level(tracing::Level::INFO).init(),
    }
}
