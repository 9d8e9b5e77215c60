//! The policy file: which references are protected by which trusted root, and what happens to
//! everything else. A commented example is `packaging/policy.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tuf_oci::location::same_registry;
use tuf_oci::{ImageRef, Repository};

/// Where the policy is read from unless `CONTAINERD_TUF_POLICY` names another file.
pub const DEFAULT_POLICY: &str = "/etc/containerd-tuf/policy.toml";

/// What to do with references no scope covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Default {
    /// Fail closed: refuse them.
    #[default]
    Deny,
    /// Let them through unverified.
    Allow,
}

/// The whole policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Outcome for references outside every scope.
    #[serde(default)]
    pub default: Default,
    /// Trusted metadata kept between runs (rollback protection); one subdirectory per trusted
    /// root, shared by the scopes trusting it.
    pub cache_dir: PathBuf,
    /// Unix socket of the verification service (`serve`), also the bindir executable's fast path.
    pub socket: Option<PathBuf>,
    /// Registry hosts reached over plain HTTP.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// Deadline for each registry request, in seconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// How long the service reuses updated metadata before updating again (0: every call).
    #[serde(default)]
    pub refresh_interval_seconds: u64,
    /// How far this node's clock may run ahead of the signers' (0: strict expiry).
    #[serde(default)]
    pub clock_skew_seconds: u64,
    /// Protected scopes.
    #[serde(default, rename = "scope")]
    pub scopes: Vec<Scope>,
    /// Explicitly unprotected scopes.
    #[serde(default, rename = "unprotected")]
    pub unprotected: Vec<Match>,
    /// sha256 of the file this policy was read from and of the root files it names (empty when
    /// not read from a file), so the executable and the service can tell whether they apply the
    /// same policy.
    #[serde(skip)]
    pub digest: String,
}

/// Which references a scope covers: any of `registries` (aliases and mirrors share one trust)
/// and, when given, a repository path under one of `repositories`. A prefix matches whole path
/// components: `team-a` (or `team-a/`) covers `team-a` and `team-a/app`, not `team-ab/app`;
/// `team-a/app` covers `team-a/app` and `team-a/app/x`, not `team-a/app-secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Registry hosts (`host[:port]`), each covering what names the same registry
    /// ([`tuf_oci::location::same_registry`]: any case, `:443` or not).
    pub registries: Vec<String>,
    /// Repository path prefixes (`team-a/`), matched at `/` boundaries; empty means every
    /// repository.
    #[serde(default)]
    pub repositories: Vec<String>,
}

/// A protected scope: references it covers must verify against its trusted root.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// A name for logs and answers.
    pub name: String,
    /// The references covered.
    #[serde(flatten)]
    pub covers: Match,
    /// The trusted root metadata file (bootstrap).
    pub root: PathBuf,
    /// Metadata repository (`host/path`) overriding the images' `tuf-metadata` pointers, for
    /// mirrors and air-gapped copies; or `oci:DIR:PATH`, the metadata repository PATH in an OCI
    /// layout bundle on disk (no network). Without it the pointers are followed.
    pub metadata: Option<String>,
    /// Repository path prefixes whose images are signed under other names, for copies promoted
    /// to other repositories: `[["prod/", "team-a/"]]` verifies `prod/app:v1` as
    /// `team-a/app:v1`.
    #[serde(default)]
    pub signed_as: Vec<(String, String)>,
}

/// Refuses a relative `path` for setting `name`.
fn absolute(name: &str, path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        path.is_absolute(),
        "{name} {} is not an absolute path",
        path.display()
    );
    Ok(())
}

/// Refuses `host` in setting `name` unless it is a registry host as references spell it
/// (`host[:port]`).
fn registry_host(name: &str, host: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        Repository::parse(&format!("{host}/x")).is_ok_and(|r| r.registry == host),
        "{name}: {host:?} is not a registry host (`host[:port]`, no scheme or path)"
    );
    Ok(())
}

fn default_request_timeout() -> u64 {
    5
}

/// The longest request deadline a policy may set: beyond any registry's answer, and far
/// from the clock arithmetic a huge deadline would overflow.
const MAX_REQUEST_TIMEOUT: u64 = 3600;
/// The most clock skew or refresh interval a policy may set: a day. More would leave metadata
/// that expired (a freeze attack) accepted for longer than signers renew a timestamp.
const MAX_LENIENCY: u64 = 86_400;

/// A scope's `metadata` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metadata {
    /// A metadata repository `host/path` in a registry.
    Registry(Repository),
    /// `oci:DIR:PATH`: the metadata repository PATH inside the OCI layout DIR (a bundle written
    /// by `tuf-oci copy`), for nodes without network access to the registry's metadata.
    Bundle {
        /// The layout directory.
        dir: PathBuf,
        /// The metadata repository's path inside it.
        path: String,
    },
}

impl Metadata {
    /// Parses `host/path` or `oci:DIR:PATH`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        match text.strip_prefix("oci:") {
            Some(rest) => {
                let (dir, path) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| anyhow::anyhow!("{text}: expected oci:DIR:METADATA_PATH"))?;
                Ok(Metadata::Bundle {
                    dir: PathBuf::from(dir),
                    path: path.to_string(),
                })
            }
            None => Ok(Metadata::Registry(Repository::parse(text)?)),
        }
    }
}

/// What the policy says about one reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// The reference must verify in this scope (index into [`Policy::scopes`]).
    Verify(usize, &'a Scope),
    /// An `[[unprotected]]` entry covers it.
    Unprotected,
    /// No entry covers it; the default applies.
    Uncovered(Default),
}

/// What the policy makes of a name containerd asks about, before anything is verified. The
/// verifier answers from it, and the executable checks the service's answers against it.
#[derive(Debug)]
pub enum Judged<'a> {
    /// A reference tuf-oci reads, and what the policy decides for it.
    Reference(ImageRef, Decision<'a>),
    /// A name tuf-oci cannot read as a reference, on `registry`, which a scope protects:
    /// containerd may still read it and tidy it into a protected reference, so it is refused
    /// whatever the default ([`Policy::protected_registry_of`]).
    Unreadable {
        /// Why tuf-oci cannot read it.
        error: tuf_oci::Error,
        /// The protected registry containerd may pull it from (or a host that may be one).
        registry: String,
    },
    /// No registry reference (local tags, imports): in no scope, so the default decides.
    NoReference(tuf_oci::Error, Default),
}

impl Judged<'_> {
    /// Whether the policy lets the name through without a signed target.
    pub fn passes_unverified(&self) -> bool {
        match self {
            Judged::Reference(_, Decision::Verify(..)) | Judged::Unreadable { .. } => false,
            Judged::Reference(_, Decision::Unprotected) => true,
            Judged::Reference(_, Decision::Uncovered(default))
            | Judged::NoReference(_, default) => *default == Default::Allow,
        }
    }
}

impl Policy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("policy {}: {e}", path.display()))?;
        let mut policy: Policy =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("policy {}: {e}", path.display()))?;
        // The policy as applied: its text and the trusted roots it names (a root file replaced
        // without editing the policy changes what verifies too), each part hashed on its own so
        // that no two (policy, roots) pairs hash alike.
        let mut parts = tuf_oci::layout::sha256_digest(text.as_bytes());
        for scope in &policy.scopes {
            let root = std::fs::read(&scope.root).unwrap_or_default();
            parts.push_str(&tuf_oci::layout::sha256_digest(&root));
        }
        policy.digest = tuf_oci::layout::sha256_digest(parts.as_bytes());
        policy
            .check_settings()
            .map_err(|e| anyhow::anyhow!("policy {}: {e}", path.display()))?;
        for scope in &policy.scopes {
            anyhow::ensure!(
                !scope.covers.registries.is_empty(),
                "policy {}: scope {} names no registries",
                path.display(),
                scope.name
            );
            absolute("root", &scope.root).map_err(|e| {
                anyhow::anyhow!("policy {}: scope {}: {e}", path.display(), scope.name)
            })?;
            scope.covers.check().map_err(|e| {
                anyhow::anyhow!("policy {}: scope {}: {e}", path.display(), scope.name)
            })?;
            if let Some(metadata) = &scope.metadata {
                let parsed = Metadata::parse(metadata).map_err(|e| {
                    anyhow::anyhow!("policy {}: scope {}: {e}", path.display(), scope.name)
                })?;
                if let Metadata::Bundle { dir, .. } = parsed {
                    absolute("metadata bundle", &dir).map_err(|e| {
                        anyhow::anyhow!("policy {}: scope {}: {e}", path.display(), scope.name)
                    })?;
                }
            }
        }
        // Two scopes covering the same references equally: which root applies would depend
        // on their order in the file.
        for (i, scope) in policy.scopes.iter().enumerate() {
            for other in &policy.scopes[i + 1..] {
                if let Some(shared) = scope.covers.shared_with(&other.covers) {
                    anyhow::bail!(
                        "policy {}: scopes {} and {} both cover {shared}",
                        path.display(),
                        scope.name,
                        other.name
                    );
                }
            }
        }
        for unprotected in &policy.unprotected {
            unprotected
                .check()
                .map_err(|e| anyhow::anyhow!("policy {}: unprotected: {e}", path.display()))?;
        }
        Ok(policy)
    }

    /// Refuses settings out of their range, and paths and hosts that would not mean what they
    /// seem: a relative path depends on the directory each process starts in (containerd's,
    /// the service's), and a registry spelt as a URL matches no reference, which would leave
    /// its images to the default.
    fn check_settings(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=MAX_REQUEST_TIMEOUT).contains(&self.request_timeout_seconds),
            "request_timeout_seconds is {}, not between 1 and {MAX_REQUEST_TIMEOUT}",
            self.request_timeout_seconds
        );
        for (name, value) in [
            ("refresh_interval_seconds", self.refresh_interval_seconds),
            ("clock_skew_seconds", self.clock_skew_seconds),
        ] {
            anyhow::ensure!(
                value <= MAX_LENIENCY,
                "{name} is {value}, more than {MAX_LENIENCY} (a day)"
            );
        }
        absolute("cache_dir", &self.cache_dir)?;
        if let Some(socket) = &self.socket {
            absolute("socket", socket)?;
        }
        for host in &self.insecure_registries {
            registry_host("insecure_registries", host)?;
        }
        Ok(())
    }

    /// The policy at `CONTAINERD_TUF_POLICY`, or at [`DEFAULT_POLICY`].
    pub fn from_env() -> anyhow::Result<Self> {
        let path = std::env::var_os("CONTAINERD_TUF_POLICY")
            .map_or_else(|| PathBuf::from(DEFAULT_POLICY), PathBuf::from);
        Self::load(&path)
    }

    /// What the policy makes of `name` ([`Judged`]).
    pub fn judge<'a>(&'a self, name: &'a str) -> Judged<'a> {
        match ImageRef::parse(name) {
            Ok(image) => {
                let decision = self.decide(&image);
                Judged::Reference(image, decision)
            }
            Err(error) => match self.protected_registry_of(name) {
                Some(registry) => Judged::Unreadable { error, registry },
                None => Judged::NoReference(error, self.default),
            },
        }
    }

    /// The most specific entry covering `image` (longest repository prefix; a protected scope
    /// wins a tie, so a mistake fails closed).
    pub fn decide(&self, image: &ImageRef) -> Decision<'_> {
        let scope = self
            .scopes
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((s.covers.specificity(image, scope_reaches)?, i, s)))
            .max_by_key(|(specificity, ..)| *specificity);
        let unprotected = self
            .unprotected
            .iter()
            .filter_map(|m| m.specificity(image, same_registry))
            .max();
        match (scope, unprotected) {
            (Some((specificity, i, s)), other) if other.is_none_or(|u| specificity >= u) => {
                Decision::Verify(i, s)
            }
            (_, Some(_)) => Decision::Unprotected,
            _ => Decision::Uncovered(self.default),
        }
    }

    /// The protected registry a name tuf-oci does not read as a reference may be pulled from
    /// by containerd, which reads and tidies some such names into references a scope covers
    /// (`host/team-a//app:v1`, `host/team%2Da/app:v1`, `host./team-a/app:v1`: Go drops a
    /// host's trailing dot; `user@host/team-a/app:v1`: containerd drops user information;
    /// `x/../host/team-a/app:v1`: containerd resolves `..`, [`dialled_host`]). Such names are
    /// refused rather than left to the policy default.
    pub fn protected_registry_of(&self, name: &str) -> Option<String> {
        if self.scopes.is_empty() {
            return None;
        }
        let written = name.split('/').next()?;
        // containerd reads the host as a URL's (`dummy://` + name): user information before
        // an `@` is dropped, and a query or fragment ends it.
        let written = written.rsplit('@').next()?.split(['?', '#']).next()?;
        let Some(dialled) = dialled_host(name) else {
            // Escapes containerd would refuse: nothing is pulled, so refusing costs nothing.
            return Some(written.to_string());
        };
        [written, dialled.as_str()]
            .into_iter()
            .find(|host| self.protects_host(host))
            .map(str::to_string)
    }

    /// Whether a scope protects `host` as containerd dials it.
    fn protects_host(&self, host: &str) -> bool {
        // Go decodes a host's `%` escapes and maps what is not ASCII to ASCII before it dials
        // (IDNA: `ｒｅｇｉｓｔｒｙ.example.com` is dialled as `registry.example.com`): such a
        // host may be any registry a scope protects.
        if host.bytes().any(|b| !b.is_ascii() || b == b'%') {
            return true;
        }
        let (hostname, port) = host.split_once(':').unwrap_or((host, ""));
        let hostname = hostname.trim_end_matches('.');
        let tidied = if port.is_empty() {
            hostname.to_string()
        } else {
            format!("{hostname}:{port}")
        };
        self.scopes
            .iter()
            .flat_map(|scope| &scope.covers.registries)
            .any(|registry| scope_reaches(registry, &tidied))
    }

    /// Per-request registry deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }
}

impl Match {
    /// Refuses a prefix that names no repository (`""`, `"/"`): whether it meant every
    /// repository or none, leaving `repositories` out says the former unambiguously.
    /// A registry is a host as references spell it, and a prefix a repository path: anything
    /// else (`https://host`, `host/team-a`, `Team-A/`) would cover nothing.
    fn check(&self) -> anyhow::Result<()> {
        for host in &self.registries {
            registry_host("registries", host)?;
        }
        for prefix in &self.repositories {
            let path = prefix.trim_end_matches('/');
            anyhow::ensure!(
                !path.is_empty(),
                "repository prefix {prefix:?} names no repository (leave `repositories` out to cover all)"
            );
            anyhow::ensure!(
                Repository::parse(&format!("localhost/{path}")).is_ok_and(|r| r.path == path),
                "repository prefix {prefix:?} is not a repository path (lower case, `/` between \
                 components, as in `team-a/`)"
            );
        }
        Ok(())
    }

    /// What both `self` and `other` cover equally (a registry, and the same repository prefix
    /// or none), named; `None` when they cover nothing alike.
    fn shared_with(&self, other: &Match) -> Option<String> {
        let registry = self
            .registries
            .iter()
            .find(|r| other.registries.iter().any(|o| scope_reaches(r, o)))?;
        if self.repositories.is_empty() && other.repositories.is_empty() {
            return Some(format!("every repository of {registry}"));
        }
        let trimmed = |prefix: &String| prefix.trim_end_matches('/').to_string();
        self.repositories
            .iter()
            .map(trimmed)
            .find(|prefix| other.repositories.iter().map(trimmed).any(|o| o == *prefix))
            .map(|prefix| format!("{registry}/{prefix}"))
    }

    /// `None` when `image` is not covered; otherwise the length of the matching prefix. A
    /// listed registry covers the image's when `reaches` says so.
    fn specificity(&self, image: &ImageRef, reaches: fn(&str, &str) -> bool) -> Option<usize> {
        let registry = &image.repository.registry;
        if !self.registries.iter().any(|r| reaches(r, registry)) {
            return None;
        }
        if self.repositories.is_empty() {
            return Some(0);
        }
        self.repositories
            .iter()
            .filter_map(|prefix| covered_by(&image.repository.path, prefix))
            .max()
    }
}

/// Whether a scope listing registry `listed` covers `registry`: when they name the same
/// registry ([`same_registry`]), and also when they differ only in one's explicit `:80`,
/// plain HTTP's default port (`ctr pull --plain-http host:80/...` reaches `host` served over
/// HTTP). Covering both is safe for a scope: at worst an image is verified that needed not
/// be, never the other way round, so unprotected entries match exactly.
fn scope_reaches(listed: &str, registry: &str) -> bool {
    fn without_port_80(host: &str) -> &str {
        match host.rsplit_once(':') {
            Some((name, port))
                if !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && port.parse::<u16>() == Ok(80) =>
            {
                name
            }
            _ => host,
        }
    }
    same_registry(listed, registry)
        || same_registry(without_port_80(listed), without_port_80(registry))
}

/// The host containerd dials for `name`, read as its `reference.Parse` reads it: the URL
/// `dummy://<name>` (fragment and query cut off, user information dropped), the path's `%`
/// escapes decoded and the path cut at its first `:` or `@` (tag or digest), then the host and
/// the path joined with `.` and `..` resolved (Go's `path.Join`); the host is what comes before
/// the first `/`. So `x/../registry.example.com/app:v1` and
/// `x/%2e%2e/registry.example.com/app:v1` are pulled from `registry.example.com`. `None` for an
/// escape containerd cannot decode.
fn dialled_host(name: &str) -> Option<String> {
    let name = name.split('#').next().unwrap_or(name);
    let name = name.split('?').next().unwrap_or(name);
    let (authority, path) = name.split_once('/').unwrap_or((name, ""));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let path = decode_escapes(path)?;
    let path = path.split([':', '@']).next().unwrap_or_default();
    let mut joined: Vec<&str> = Vec::new();
    for segment in std::iter::once(host).chain(path.split('/')) {
        match segment {
            "" | "." => {}
            ".." if joined.last().is_some_and(|last| *last != "..") => {
                joined.pop();
            }
            segment => joined.push(segment),
        }
    }
    Some(joined.first().copied().unwrap_or(".").to_string())
}

/// `text` with its `%XX` escapes decoded, as Go's URL parser decodes a path; `None` when an
/// escape is malformed (Go refuses the URL) or decodes to no UTF-8.
fn decode_escapes(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            decoded.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// `Some(length of the prefix without its trailing '/')` when the repository `path` is `prefix`
/// or lies under it: `team-a` and `team-a/` cover `team-a` and `team-a/app`, never `team-ab`;
/// `team-a/app` covers `team-a/app` and `team-a/app/x`, never `team-a/app-secrets`.
fn covered_by(path: &str, prefix: &str) -> Option<usize> {
    // An empty prefix (only in a policy that skipped `load`) covers everything, as an empty
    // list does.
    tuf_oci::location::under_prefix(path, prefix).map(|_| prefix.trim_end_matches('/').len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn longest_prefix_decides_and_scopes_win_ties() {
        let p = policy(
            r#"
            cache_dir = "/tmp/c"
            [[scope]]
            name = "org"
            registries = ["r:5000", "mirror:5000"]
            repositories = ["team-a/"]
            root = "/root.json"
            [[unprotected]]
            registries = ["r:5000"]
            repositories = ["team-a/public/", "team-b/"]
            [[unprotected]]
            registries = ["r:5000"]
            repositories = ["team-a/"]
            "#,
        );
        let image = |r: &str| ImageRef::parse(r).unwrap();
        assert!(matches!(
            p.decide(&image("r:5000/team-a/app:v1")),
            Decision::Verify(0, _)
        ));
        assert!(matches!(
            p.decide(&image("mirror:5000/team-a/app:v1")),
            Decision::Verify(0, _)
        ));
        assert_eq!(
            p.decide(&image("r:5000/team-a/public/x:v1")),
            Decision::Unprotected
        );
        assert_eq!(
            p.decide(&image("r:5000/team-b/x:v1")),
            Decision::Unprotected
        );
        assert_eq!(
            p.decide(&image("other:5000/team-a/x:v1")),
            Decision::Uncovered(Default::Deny)
        );
    }

    #[test]
    fn a_scope_covers_its_registry_however_a_reference_spells_it() {
        // With `default = "allow"`, a spelling the scope missed would pull its images
        // unverified from the same registry.
        let p = policy(
            r#"
            cache_dir = "/tmp/c"
            default = "allow"
            [[scope]]
            name = "org"
            registries = ["registry.example.com", "docker.io", "r:5000", "127.0.0.1:5001", "[::1]:5002", "plain.example.com", "[::2]:80"]
            repositories = ["team-a/"]
            root = "/root.json"
            "#,
        );
        for reference in [
            "registry.hub.docker.com/team-a/app:v1",
            "plain.example.com:80/team-a/app:v1",
            "registry.example.com:080/team-a/app:v1",
            "[::2]/team-a/app:v1",
            "REGISTRY.EXAMPLE.COM/team-a/app:v1",
            "registry.example.com:443/team-a/app:v1",
            "registry-1.docker.io/team-a/app:v1",
            "index.docker.io/team-a/app:v1",
            "R:5000/team-a/app:v1",
            "registry.example.com:0443/team-a/app:v1",
            "r:005000/team-a/app:v1",
            "[::ffff:7f00:1]:5001/team-a/app:v1",
            "[0::1]:5002/team-a/app:v1",
            "[0:0::1]:05002/team-a/app:v1",
        ] {
            let image = ImageRef::parse(reference).unwrap();
            assert!(
                matches!(p.decide(&image), Decision::Verify(0, _)),
                "{reference}"
            );
        }
        let elsewhere = ImageRef::parse("r:5001/team-a/app:v1").unwrap();
        assert_eq!(p.decide(&elsewhere), Decision::Uncovered(Default::Allow));

        // Names containerd reads and tuf-oci does not, on a protected registry.
        for name in [
            "registry.example.com/team-a//app:v1",
            "registry.example.com/team%2Da/app:v1",
            "registry.example.com./team-a/app:v1",
            "R.:5000/team-a/app:v1",
            "x@registry.example.com/team-a/app:v1",
            "u:p@registry.example.com/team-a/app:v1",
            "registry.example.com#x/team-a/app:v1",
            "[::ffff:127.0.0.1]:5001/team-a/app:v1",
            "[0::1]:5002/team-a//app:v1",
            // Dialled as the registry listed (Go maps the host to ASCII first), the default
            // port (an empty one), or port 80.
            "\u{ff52}\u{ff45}\u{ff47}istry.example.com/team-a/app:v1",
            "registry\u{ff0e}example.com/team-a/app:v1",
            "%EF%BD%92egistry.example.com/team-a/app:v1",
            "registry.example.com:/team-a/app:v1",
            "[::2]:/team-a/app:v1",
            "[::2]:80/team-a//app:v1",
            // containerd resolves `..` (escaped too) when it joins host and path.
            "x/../registry.example.com/team-a/app:v1",
            "a.b/../registry.example.com/team-a/app:v1",
            "x/%2e%2e/registry.example.com/team-a/app:v1",
            "x/..%2Fregistry.example.com/team-a/app:v1",
            "./registry.example.com/team-a/app:v1",
            "u@x/y/../../registry.example.com/team-a/app@sha256:00",
            // An escape containerd cannot decode: it pulls nothing.
            "x/%zz/team-a/app:v1",
        ] {
            assert!(ImageRef::parse(name).is_err(), "{name}");
            assert!(p.protected_registry_of(name).is_some(), "{name}");
            assert!(!p.judge(name).passes_unverified(), "{name}");
        }
        for name in [
            "r:5001/team-a//app:v1",
            "localimage:latest",
            "other.example.com./x",
            "[::ffff:127.0.0.2]:5001/team-a//app:v1",
            "[::1]:5001/team-a//app:v1",
            "r:80/team-a//app:v1",
            // `..` leading out of the host, or cut off with the tag, dials no protected host.
            "registry.example.com.evil/../x/app:v1",
            "x/../../registry.example.com/app:v1",
            "x/..:v1/registry.example.com/app",
        ] {
            assert_eq!(p.protected_registry_of(name), None, "{name}");
        }
        // Without a scope, nothing is protected whatever a host's characters.
        let open = policy(
            r#"
            cache_dir = "/tmp/c"
            default = "allow"
            "#,
        );
        assert_eq!(
            open.protected_registry_of("\u{ff52}egistry.example.com/team-a/app:v1"),
            None
        );
    }

    #[test]
    fn prefixes_match_whole_path_components() {
        assert_eq!(covered_by("team-ab/x", "team-a"), None);
        assert_eq!(covered_by("team-ab/x", "team-a/"), None);
        assert_eq!(covered_by("team-a/app-secrets", "team-a/app"), None);
        assert_eq!(covered_by("team-a/x", "team-a/"), Some(6));
        assert_eq!(covered_by("team-a/x", "team-a"), Some(6));
        assert_eq!(covered_by("team-a/app", "team-a/app"), Some(10));
        assert_eq!(covered_by("team-a/app", "team-a/app/"), Some(10));
        assert_eq!(covered_by("team-a/app/x", "team-a/app"), Some(10));
        assert_eq!(covered_by("team-a", "team-a/"), Some(6));
        assert_eq!(covered_by("team", "team-a"), None);
    }

    #[test]
    fn an_unprotected_repository_does_not_unprotect_its_namesakes() {
        let p = policy(
            r#"
            cache_dir = "/tmp/c"
            [[scope]]
            name = "org"
            registries = ["r:5000"]
            root = "/root.json"
            [[unprotected]]
            registries = ["r:5000"]
            repositories = ["team-a/app", "team-b"]
            "#,
        );
        let decide = |r: &str| p.decide(&ImageRef::parse(r).unwrap());
        assert!(matches!(
            decide("r:5000/team-a/app-secrets:v1"),
            Decision::Verify(0, _)
        ));
        assert!(matches!(
            decide("r:5000/team-bb/app:v1"),
            Decision::Verify(0, _)
        ));
        assert_eq!(decide("r:5000/team-a/app:v1"), Decision::Unprotected);
        assert_eq!(decide("r:5000/team-a/app/debug:v1"), Decision::Unprotected);
        assert_eq!(decide("r:5000/team-b/app:v1"), Decision::Unprotected);
    }

    #[test]
    fn scopes_covering_the_same_references_equally_are_refused() {
        // Which root would apply would depend on the order of the scopes in the file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        let scope = |name: &str, registry: &str, repositories: &str| {
            format!(
                "[[scope]]\nname = \"{name}\"\nroot = \"/{name}.json\"\n\
                 registries = [\"{registry}\"]\n{repositories}\n"
            )
        };
        for (a, b, shared) in [
            (
                scope("one", "r:5000", "repositories = [\"team-a/\"]"),
                scope("two", "R:05000", "repositories = [\"team-b\", \"team-a\"]"),
                Some("r:5000/team-a"),
            ),
            (
                scope("one", "r:5000", ""),
                scope("two", "r:5000", ""),
                Some("every repository of r:5000"),
            ),
            (
                scope("one", "r:5000", "repositories = [\"team-a/\"]"),
                scope("two", "r:5000", "repositories = [\"team-a/app\"]"),
                None,
            ),
            (
                scope("one", "r:5000", ""),
                scope("two", "r:5000", "repositories = [\"team-a/\"]"),
                None,
            ),
            (
                scope("one", "r:5000", "repositories = [\"team-a/\"]"),
                scope("two", "r:5001", "repositories = [\"team-a/\"]"),
                None,
            ),
            // A scope covers port 80 of its registries too (plain HTTP's default).
            (
                scope("one", "plain.example.com", ""),
                scope("two", "plain.example.com:80", ""),
                Some("every repository of plain.example.com"),
            ),
        ] {
            std::fs::write(&path, format!("cache_dir = \"/tmp/c\"\n{a}{b}")).unwrap();
            match (Policy::load(&path), shared) {
                (Ok(_), None) => {}
                (Err(e), Some(shared)) => {
                    let e = e.to_string();
                    assert!(e.contains("scopes one and two both cover"), "{e}");
                    assert!(e.contains(shared), "{e}");
                }
                (outcome, _) => panic!("{a}{b}: {:?}", outcome.map(|_| ())),
            }
        }
    }

    #[test]
    fn request_deadlines_out_of_range_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        for (seconds, fine) in [
            (0, false),
            (1, true),
            (3600, true),
            (3601, false),
            (u64::MAX >> 1, false),
        ] {
            std::fs::write(
                &path,
                format!("cache_dir = \"/tmp/c\"\nrequest_timeout_seconds = {seconds}\n"),
            )
            .unwrap();
            match Policy::load(&path) {
                Ok(_) => assert!(fine, "{seconds} s accepted"),
                Err(e) => {
                    assert!(!fine, "{seconds} s refused: {e}");
                    assert!(e.to_string().contains("request_timeout_seconds"), "{e}");
                }
            }
        }
    }

    #[test]
    fn settings_that_would_not_mean_what_they_seem_are_refused() {
        // Each would leave references the operator meant to protect to the default (a
        // registry spelt as a URL, a prefix no path matches), make expiry meaningless, or
        // depend on the directory a process starts in.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        let scope = |registries: &str, repositories: &str, root: &str| {
            format!(
                "cache_dir = \"/tmp/c\"\n[[scope]]\nname = \"org\"\nroot = \"{root}\"\n\
                 registries = [{registries}]\nrepositories = [{repositories}]\n"
            )
        };
        let fine = scope(
            "\"r:5000\", \"[::1]:5000\", \"registry.example.com\"",
            "\"team-a/\", \"x/y\"",
            "/r.json",
        );
        std::fs::write(&path, &fine).unwrap();
        Policy::load(&path).unwrap();
        for (policy, named) in [
            (scope("\"https://registry.example.com\"", "\"team-a/\"", "/r.json"), "registries"),
            (scope("\"registry.example.com/team-a\"", "\"team-a/\"", "/r.json"), "registries"),
            (scope("\"registry\"", "\"team-a/\"", "/r.json"), "registries"),
            (scope("\"r:5000\"", "\"/team-a/\"", "/r.json"), "\"/team-a/\""),
            (scope("\"r:5000\"", "\"Team-A/\"", "/r.json"), "\"Team-A/\""),
            (scope("\"r:5000\"", "\"team-a:v1\"", "/r.json"), "\"team-a:v1\""),
            (scope("\"r:5000\"", "\"team-a/\", \"\"", "/r.json"), "names no repository"),
            (scope("\"r:5000\"", "\"team-a/\"", "roots/r.json"), "root roots/r.json"),
            ("cache_dir = \"cache\"\n".to_string(), "cache_dir cache"),
            (
                scope("\"r:5000\"", "\"team-a/\"", "/r.json") + "metadata = \"oci:bundle:org/tuf\"\n",
                "metadata bundle bundle",
            ),
            ("cache_dir = \"/c\"\nsocket = \"v.sock\"\n".to_string(), "socket v.sock"),
            ("cache_dir = \"/c\"\nclock_skew_seconds = 86401\n".to_string(), "clock_skew_seconds"),
            (format!("cache_dir = \"/c\"\nclock_skew_seconds = {}\n", u64::MAX >> 1), "clock_skew_seconds"),
            ("cache_dir = \"/c\"\nrefresh_interval_seconds = 86401\n".to_string(), "refresh_interval_seconds"),
            ("cache_dir = \"/c\"\ninsecure_registries = [\"http://r:5000\"]\n".to_string(), "insecure_registries"),
            (
                "cache_dir = \"/c\"\n[[unprotected]]\nregistries = [\"r:5000\"]\nrepositories = [\"/\"]\n".to_string(),
                "unprotected: repository prefix \"/\" names no repository",
            ),
        ] {
            std::fs::write(&path, &policy).unwrap();
            let error = Policy::load(&path).map(|_| ()).unwrap_err().to_string();
            assert!(error.contains(named), "{policy}: {error}");
        }
        std::fs::write(
            &path,
            "cache_dir = \"/c\"\nclock_skew_seconds = 86400\nrefresh_interval_seconds = 86400\n",
        )
        .unwrap();
        Policy::load(&path).unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(toml::from_str::<Policy>("cache_dir = \"/x\"\nfail_open = true\n").is_err());
    }
}
