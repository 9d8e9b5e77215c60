//! Where things are: repositories, image references, and how a `tuf-metadata` pointer resolves.
//! Target names are registry-independent (`<repository path>:<tag>`), so a copy to another
//! registry keeps its names and signatures.

use std::fmt;
use std::net::IpAddr;

use oci_client::Reference;

use crate::error::{Error, Result};
use crate::grammar;

/// A repository in a registry, e.g. `127.0.0.1:5000` + `org/tuf`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    /// Registry host (and port).
    pub registry: String,
    /// Repository path without the host.
    pub path: String,
}

impl Repository {
    /// Parses `host[:port]/path`. The host is required: the metadata location is part of the
    /// trust bootstrap and must not depend on a default registry.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidReference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        let parts = grammar::parse(text).map_err(|e| invalid(&e))?;
        if parts.tag.is_some() || parts.digest.is_some() {
            return Err(invalid("a repository takes no tag or digest"));
        }
        Ok(Repository {
            registry: parts.registry.to_string(),
            path: parts.path.to_string(),
        })
    }

    /// A reference to `tag` in this repository.
    pub fn tagged(&self, tag: &str) -> Reference {
        Reference::with_tag(self.registry.clone(), self.path.clone(), tag.to_string())
    }

    /// A reference to `digest` in this repository.
    pub fn digested(&self, digest: &str) -> Reference {
        Reference::with_digest(self.registry.clone(), self.path.clone(), digest.to_string())
    }

    /// Resolves a `tuf-metadata` pointer found in this repository: `./x` and `../x` are relative
    /// to this repository's path taken as a directory, `/x` is a path on the same registry, and
    /// anything else must be a full `host/path` reference.
    pub fn resolve(&self, pointer: &str) -> Result<Repository> {
        let invalid = |reason: &str| Error::Pointer {
            repository: self.to_string(),
            reason: format!("pointer {pointer:?} {reason}"),
        };
        if let Some(absolute) = pointer.strip_prefix('/') {
            return Repository::parse(&format!("{}/{absolute}", self.registry))
                .map_err(|e| invalid(&format!("is not a valid repository path: {e}")));
        }
        if !pointer.starts_with('.') {
            return Repository::parse(pointer).map_err(|e| invalid(&e.to_string()));
        }
        let mut parts: Vec<&str> = self.path.split('/').collect();
        for part in pointer.split('/') {
            match part {
                "." | "" => {}
                ".." => {
                    parts
                        .pop()
                        .ok_or_else(|| invalid("climbs above the registry root"))?;
                }
                name => parts.push(name),
            }
        }
        if parts.is_empty() {
            return Err(invalid("resolves to no repository"));
        }
        Repository::parse(&format!("{}/{}", self.registry, parts.join("/")))
            .map_err(|e| invalid(&format!("is not a valid repository path: {e}")))
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// What a user asks to verify or sign: a repository plus a tag, a digest, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The repository.
    pub repository: Repository,
    /// The tag, if given.
    pub tag: Option<String>,
    /// The digest, if given.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `host/path:tag`, `host/path@sha256:...` or `host/path:tag@sha256:...`. A reference
    /// with neither tag nor digest means tag `latest`, as everywhere in the container world.
    pub fn parse(text: &str) -> Result<Self> {
        let parts = grammar::parse(text).map_err(|reason| Error::InvalidReference {
            reference: text.to_string(),
            reason,
        })?;
        let tag = match (parts.tag, parts.digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(ImageRef {
            repository: Repository {
                registry: parts.registry.to_string(),
                path: parts.path.to_string(),
            },
            tag,
            digest: parts.digest.map(str::to_string),
        })
    }

    /// The TUF target name for a tag: `<repository path>:<tag>`.
    pub fn target_name(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| format!("{}:{tag}", self.repository.path))
    }

    /// The oci-client reference (digest preferred, as it is content-addressed).
    pub fn reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => self.repository.digested(digest),
            (None, Some(tag)) => self.repository.tagged(tag),
            (None, None) => unreachable!("parse always sets a tag or a digest"),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether registry hosts `a` and `b` name the same registry, as clients reach it: host names
/// compare without regard to case (DNS), IP addresses as addresses (`[0::1]` is `[::1]`, and
/// the IPv4-mapped `[::ffff:7f00:1]` is dialled as `127.0.0.1`), ports as numbers (`:0443` is
/// dialled as `:443`), an explicit `:443` or an empty port (`host:`, which Go dials at the
/// default port) is HTTPS's default port, and Docker Hub's `docker.io` is also reached as
/// `registry-1.docker.io`, `index.docker.io` and `registry.hub.docker.com`. Anything else (an
/// address for a name, another port) is another registry.
pub fn same_registry(a: &str, b: &str) -> bool {
    fn key(host: &str) -> (String, Option<u64>) {
        let host = host.to_ascii_lowercase();
        // After the last `:`, digits are a port; an IPv6 literal's colons sit inside `[...]`.
        let (name, port) = match host.rsplit_once(':') {
            Some((name, "")) => (name, None),
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
                // Digits too many for any port compare as a port no registry has.
                (name, Some(port.parse::<u64>().unwrap_or(u64::MAX)))
            }
            _ => (host.as_str(), None),
        };
        let name = match name {
            "registry-1.docker.io" | "index.docker.io" | "registry.hub.docker.com" => {
                "docker.io".to_string()
            }
            other => canonical_ip(other).unwrap_or_else(|| other.to_string()),
        };
        (name, port.filter(|port| *port != 443))
    }
    key(a) == key(b)
}

/// An IP address host (`127.0.0.1`, `[::1]`) spelt one way: IPv6 in its shortest form, in
/// brackets, and an IPv4-mapped IPv6 address as the IPv4 address clients dial. `None` for a
/// host name.
fn canonical_ip(host: &str) -> Option<String> {
    let ip = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.parse().ok()?),
        None => IpAddr::V4(host.parse().ok()?),
    };
    Some(match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    })
}

/// The rest of repository `path` under `prefix`, matched at `/` boundaries: `Some("")` when
/// `path` is the prefix (a trailing `/` on it ignored), `Some("/app")` when it lies under it,
/// `None` otherwise: `team-a` does not cover `team-ab`, nor `team-a/app` `team-a/app-secrets`.
/// An empty prefix covers every path.
pub fn under_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.strip_prefix(prefix)?;
    (prefix.is_empty() || rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The repository path the targets of `path` are named with, given `signed_as`, pairs of
/// local path prefixes and the prefixes they are signed under (`("prod/", "team-a/")` for a
/// copy of team-a's images promoted to `prod/`): the longest local prefix covering `path`
/// decides, and a path no pair covers is its own.
pub fn signed_path(signed_as: &[(String, String)], path: &str) -> String {
    signed_as
        .iter()
        .filter_map(|(local, signed)| Some((local, signed, under_prefix(path, local)?)))
        .max_by_key(|(local, _, _)| local.trim_end_matches('/').len())
        .map_or_else(
            || path.to_string(),
            |(_, signed, rest)| {
                // One `/` between the parts, whichever of them is empty.
                let parts = [signed.trim_matches('/'), rest.trim_start_matches('/')];
                parts
                    .into_iter()
                    .filter(|part| !part.is_empty())
                    .collect::<Vec<_>>()
                    .join("/")
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_the_same_however_their_hosts_are_spelt() {
        assert!(same_registry(
            "Registry.Example.COM",
            "registry.example.com"
        ));
        assert!(same_registry(
            "registry.example.com:443",
            "registry.example.com"
        ));
        assert!(same_registry("R:5000", "r:5000"));
        assert!(same_registry("[::1]:443", "[::1]"));
        assert!(same_registry("registry-1.docker.io", "docker.io"));
        assert!(same_registry("index.docker.io", "Docker.io:443"));
        assert!(same_registry("registry.hub.docker.com", "docker.io"));
        assert!(same_registry(
            "registry.example.com:",
            "registry.example.com"
        ));
        assert!(same_registry("[::1]:", "[0::1]:443"));
        assert!(!same_registry("[::1]:", "[::1]:5000"));
        assert!(same_registry(
            "registry.example.com:0443",
            "registry.example.com"
        ));
        assert!(same_registry("r:05000", "R:5000"));
        assert!(!same_registry("r:5000", "r:5001"));
        assert!(!same_registry("r:99999999999999999999999", "r"));
        assert!(!same_registry("r:5000", "r"));
        assert!(!same_registry("127.0.0.1:5000", "localhost:5000"));
        assert!(same_registry("[0::1]:5000", "[::1]:5000"));
        assert!(same_registry("[::FFFF:7f00:1]:5000", "127.0.0.1:5000"));
        assert!(same_registry("[::ffff:127.0.0.1]", "127.0.0.1:443"));
        assert!(!same_registry("[::1]:5000", "127.0.0.1:5000"));
        assert!(!same_registry("[::ffff:7f00:2]:5000", "127.0.0.1:5000"));
        assert!(!same_registry(
            "registry.example.com.evil",
            "registry.example.com"
        ));
    }

    #[test]
    fn prefixes_end_at_path_separators() {
        assert_eq!(under_prefix("team-a/app", "team-a"), Some("/app"));
        assert_eq!(under_prefix("team-a/app", "team-a/"), Some("/app"));
        assert_eq!(under_prefix("team-a", "team-a/"), Some(""));
        assert_eq!(under_prefix("team-ab/app", "team-a"), None);
        assert_eq!(under_prefix("team-a/app-secrets", "team-a/app"), None);
        assert_eq!(under_prefix("x/y", ""), Some("x/y"));
    }

    #[test]
    fn pointers_resolve_relative_absolute_and_full() {
        let repo = Repository::parse("127.0.0.1:5000/team-a/app").unwrap();
        assert_eq!(
            repo.resolve("../../org/tuf").unwrap().to_string(),
            "127.0.0.1:5000/org/tuf"
        );
        assert_eq!(
            repo.resolve("../tuf").unwrap().to_string(),
            "127.0.0.1:5000/team-a/tuf"
        );
        assert_eq!(
            repo.resolve("/org/tuf").unwrap().to_string(),
            "127.0.0.1:5000/org/tuf"
        );
        assert_eq!(
            repo.resolve("registry.example:443/org/tuf")
                .unwrap()
                .to_string(),
            "registry.example:443/org/tuf"
        );
        assert!(matches!(
            repo.resolve("../../../x"),
            Err(Error::Pointer { .. })
        ));
        assert!(matches!(
            repo.resolve("org/tuf"),
            Err(Error::Pointer { .. })
        ));
    }

    #[test]
    fn image_refs_name_targets_without_host() {
        let r = ImageRef::parse("127.0.0.1:5000/team-a/app:v1").unwrap();
        assert_eq!(r.target_name().as_deref(), Some("team-a/app:v1"));
        let d = ImageRef::parse(
            "127.0.0.1:5000/team-a/app@sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
        )
        .unwrap();
        assert_eq!(d.target_name(), None);
        assert!(d.digest.is_some());
        assert_eq!(
            ImageRef::parse("localhost/app").unwrap().tag.as_deref(),
            Some("latest")
        );
        assert!(ImageRef::parse("team-a/app:v1").is_err());
    }
}
