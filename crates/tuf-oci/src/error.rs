//! The one error type of the library: a variant per failed check, carrying the role, version,
//! reference or digest it concerns, so callers (and tests) can match on what failed.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, verifying or writing TUF metadata in a registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry answered with an error (other than "not found") or could not be reached.
    #[error("registry request for {reference} failed: {message}")]
    Registry {
        /// The reference (or repository) the request was about.
        reference: String,
        /// What the registry or the HTTP layer said.
        message: String,
    },

    /// The registry client cannot be set up. Its HTTPS clients are set up when first needed,
    /// and a failure there (no CA certificates on the system) fails that request instead.
    #[error("the registry client cannot be set up: {message}")]
    ClientSetup {
        /// What the HTTP client said.
        message: String,
    },

    /// An object the verification needs does not exist in the registry.
    #[error("{what} not found in the registry")]
    NotFound {
        /// The object, e.g. `4.snapshot.json in 127.0.0.1:5000/org/tuf`.
        what: String,
    },

    /// A reference given by the user or read from a pointer could not be parsed.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// The text as given.
        reference: String,
        /// Why it was refused.
        reason: String,
    },

    /// A metadata file or blob is larger than the limit set for it (TUF 5.2–5.6 download limits).
    #[error("{what} exceeds its size limit of {limit} bytes")]
    TooLarge {
        /// What was being downloaded.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },

    /// Content returned by the registry does not hash to the digest it was asked for.
    #[error("{what}: registry returned content with digest {actual}, expected {expected}")]
    DigestMismatch {
        /// What was being downloaded.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what came back.
        actual: String,
    },

    /// A metadata file is not valid JSON of the expected role type.
    #[error("{role} metadata cannot be parsed: {message}")]
    Parse {
        /// The role whose metadata was read.
        role: String,
        /// The parser's message.
        message: String,
    },

    /// Fewer valid signatures than the threshold, duplicate key ids, or a role not in its
    /// delegator (TUF 5.3.4, 5.4.2, 5.5.3, 5.6.3).
    #[error("{role} metadata fails signature verification: {message}")]
    Signature {
        /// The role whose signatures were checked.
        role: String,
        /// What the threshold check found.
        message: String,
    },

    /// The metadata's expiry is in the past (freeze attack, TUF 5.3.10, 5.4.4, 5.5.6, 5.6.5).
    #[error("{role} metadata expired at {expires}")]
    Expired {
        /// The expired role.
        role: String,
        /// Its `expires` field.
        expires: jiff::Timestamp,
    },

    /// A role's version went down compared to trusted metadata (rollback attack).
    #[error("rollback of {role}: trusted version {trusted}, fetched version {fetched}")]
    Rollback {
        /// The role.
        role: String,
        /// The version the client already trusts.
        trusted: u64,
        /// The lower version offered.
        fetched: u64,
    },

    /// A role's version differs from the one its parent metadata names (mix-and-match, TUF 5.4.3,
    /// 5.6.2).
    #[error("{role} version {fetched} does not match version {expected} named by {named_by}")]
    VersionMismatch {
        /// The role.
        role: String,
        /// The metadata naming the version (timestamp, snapshot or a root chain).
        named_by: String,
        /// The version named there.
        expected: u64,
        /// The version found in the fetched metadata.
        fetched: u64,
    },

    /// A metadata file's hash or length differs from what its parent metadata names.
    #[error("{role} metadata does not match the hash or length named by {named_by}")]
    MetaHashMismatch {
        /// The role.
        role: String,
        /// The metadata naming the hash.
        named_by: String,
    },

    /// A role listed in trusted snapshot metadata disappeared from a newer snapshot (TUF 5.5.5).
    #[error("snapshot version {version} drops {role}, which the trusted snapshot lists")]
    RoleRemoved {
        /// The missing role's file name.
        role: String,
        /// The offending snapshot version.
        version: u64,
    },

    /// A delegated role is on the target's path but snapshot metadata does not list it.
    #[error("snapshot does not list {role}")]
    NotInSnapshot {
        /// The role's file name.
        role: String,
    },

    /// A root in the N -> N+1 chain failed verification (TUF 5.3).
    #[error("root version {version} is not a valid successor: {message}")]
    RootChain {
        /// The version that failed.
        version: u64,
        /// What failed.
        message: String,
    },

    /// Delegation search gave up: too many roles visited or a role name refused.
    #[error("delegation search for {target} stopped: {reason}")]
    Delegation {
        /// The target being searched.
        target: String,
        /// Why the search stopped.
        reason: String,
    },

    /// A delegation naming `role` cannot be used: its entry does not parse, or the role's name
    /// cannot name a file (TUF file names become tags).
    #[error("delegated role {role}: {reason}")]
    InvalidDelegation {
        /// The delegated role.
        role: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No role on the target's delegation path signs this name.
    #[error("no trusted role signs target {name}")]
    TargetNotSigned {
        /// The target name, `<repository>:<tag>`.
        name: String,
    },

    /// No trusted target of the repository carries this digest.
    #[error("no trusted target of repository {repository} has digest {digest}")]
    DigestNotSigned {
        /// The repository path.
        repository: String,
        /// The digest asked for.
        digest: String,
    },

    /// The registry (or containerd, or an archive) presents something other than what TUF
    /// signed for this name: the tag moved, or the digest, size or media type differ.
    #[error("{reference}: {field} is {presented}, but TUF signed {signed}")]
    DescriptorMismatch {
        /// The reference checked.
        reference: String,
        /// The field that differs (digest, size or mediaType).
        field: &'static str,
        /// The signed value.
        signed: String,
        /// The value presented.
        presented: String,
    },

    /// A target's `custom` field or a descriptor cannot be mapped losslessly.
    #[error("target {target} is not a valid OCI descriptor: {reason}")]
    InvalidDescriptor {
        /// The target name (or digest when no name is known).
        target: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A repository's `tuf-metadata` tag is missing or unusable.
    #[error("tuf-metadata of {repository}: {reason}")]
    Pointer {
        /// The repository holding the tag.
        repository: String,
        /// What is wrong.
        reason: String,
    },

    /// A signing key could not be read, generated or used.
    #[error("key {path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What failed.
        message: String,
    },

    /// Signing metadata failed (missing keys for the threshold, serialization).
    #[error("cannot sign {role}: {message}")]
    Sign {
        /// The role being signed.
        role: String,
        /// What failed.
        message: String,
    },

    /// A write would lose somebody else's change (role version already taken).
    #[error("{what} was changed concurrently: {reason}")]
    Conflict {
        /// The object.
        what: String,
        /// What was found.
        reason: String,
    },

    /// A local file (trusted root, cache, layout) could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message already, so not repeated as a source).
        cause: std::io::Error,
    },

    /// The caller asked for something the metadata does not allow (bad role name, etc.).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Short constructor for I/O errors on a path.
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause,
        }
    }
}

/// `error` and its causes, each said once: HTTP and gRPC transport errors often repeat their
/// source's message in their own, and a chain printed whole then says it twice.
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    message
}

/// `result`, with a failed check (parse, signature, size, digest) as `None`: junk that whoever
/// can push to a repository may leave there. A read that could not be made (registry, I/O)
/// stays an error.
pub(crate) fn junk_as_none<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e @ (Error::Registry { .. } | Error::Io { .. })) => Err(e),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("transport error: {0}")]
        struct Repeating(#[source] std::io::Error);
        let denied = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "not yours");
        assert_eq!(causes(&Repeating(denied)), "transport error: not yours");
        #[derive(Debug, thiserror::Error)]
        #[error("connecting")]
        struct Plain(#[source] std::io::Error);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(causes(&Plain(refused)), "connecting: refused");
    }
}
