//! The OCI reference grammar (distribution's `reference` package), checked by hand: a Unicode
//! regex for it costs more to compile than a whole cold verification, and a verifier runs once
//! per pull.
//!
//! ```text
//! reference := host[:port] "/" path [":" tag] ["@" digest]
//! path      := component ("/" component)*     component := [a-z0-9]+ (([._]|__|-+) [a-z0-9]+)*
//! tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest    := ("sha256" | "sha384" | "sha512") ":" lowercase hex of the algorithm's length
//! ```
//!
//! `\w` in distribution's grammar is Go's, which is ASCII. The registry host is required here
//! (trust never depends on a default registry), so Docker Hub's short names are not expanded.

/// A reference split into its parts, each checked against the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts<'a> {
    /// `host[:port]`.
    pub registry: &'a str,
    /// The repository path.
    pub path: &'a str,
    /// The tag, if any.
    pub tag: Option<&'a str>,
    /// The digest, if any.
    pub digest: Option<&'a str>,
}

/// Longest repository name (host and path), as distribution enforces.
const MAX_NAME: usize = 255;

/// Splits and checks `host[:port]/path[:tag][@digest]`.
pub fn parse(text: &str) -> Result<Parts<'_>, String> {
    let (name, digest) = match text.split_once('@') {
        Some((name, digest)) => (name, Some(check_digest(digest)?)),
        None => (text, None),
    };
    let (registry, rest) = name.split_once('/').ok_or("expected host/repository")?;
    if !looks_like_host(registry) {
        return Err("the reference must start with a registry host".into());
    }
    check_host(registry)?;
    let (path, tag) = match rest.rsplit_once(':') {
        Some((path, tag)) => (path, Some(check_tag(tag)?)),
        None => (rest, None),
    };
    check_path(path)?;
    if registry.len() + 1 + path.len() > MAX_NAME {
        return Err(format!("repository name longer than {MAX_NAME} characters"));
    }
    Ok(Parts {
        registry,
        path,
        tag,
        digest,
    })
}

/// Docker's rule for telling a registry host from a first path component.
pub fn looks_like_host(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost"
}

fn check_host(host: &str) -> Result<(), String> {
    let invalid = || Err(format!("invalid registry host {host:?}"));
    let (name, port) = match host.strip_prefix('[') {
        // An IPv6 literal: `[addr]` or `[addr]:port`.
        Some(v6) => {
            let Some((address, port)) = v6.split_once(']') else {
                return invalid();
            };
            if address.is_empty() || !address.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                return invalid();
            }
            (None, port)
        }
        None => {
            let (name, port) = host.split_at(host.find(':').unwrap_or(host.len()));
            (Some(name), port)
        }
    };
    if let Some(name) = name
        && !name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
    {
        return invalid();
    }
    match port.strip_prefix(':') {
        None if port.is_empty() => Ok(()),
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => invalid(),
    }
}

fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty repository path".into());
    }
    for component in path.split('/') {
        if !is_path_component(component) {
            return Err(format!(
                "repository path component {component:?} must be lowercase letters and digits, \
                 joined by '.', '_', '__' or dashes"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+` runs joined by one `.`, one `_`, `__`, or any number of `-`.
fn is_path_component(component: &str) -> bool {
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alphanumeric(first) || !alphanumeric(last) {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        if alphanumeric(b) {
            if !matches!(separator.as_str(), "" | "." | "_" | "__") && !is_dashes(&separator) {
                return false;
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(b as char);
        } else {
            return false;
        }
    }
    true
}

fn is_dashes(separator: &str) -> bool {
    separator.bytes().all(|b| b == b'-')
}

/// Checks one tag: registries list tags and readers paste them into request paths, so a listed
/// name that is not a tag (`../x`) must never reach a URL.
pub fn check_tag(tag: &str) -> Result<&str, String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let valid = bytes.first().is_some_and(|&b| word(b))
        && bytes.len() <= 128
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
    if valid {
        Ok(tag)
    } else {
        Err(format!(
            "invalid tag {tag:?}: up to 128 of A-Z a-z 0-9 _ . -, not starting with . or -"
        ))
    }
}

/// `sha256`, `sha384` or `sha512` and its lowercase hex: the algorithms OCI registers (and
/// oci-client accepts).
pub fn check_digest(digest: &str) -> Result<&str, String> {
    let invalid = |why: &str| Err(format!("invalid digest {digest:?}: {why}"));
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return invalid("expected algorithm:hex");
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return invalid("unsupported algorithm"),
    };
    if hex.len() != len {
        return invalid(&format!("{algorithm} takes {len} hex digits"));
    }
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return invalid("expected lowercase hex");
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

    #[test]
    fn accepts_what_distribution_accepts() {
        let tagged = parse("127.0.0.1:5000/team-a/app:v1").unwrap();
        assert_eq!(
            tagged,
            Parts {
                registry: "127.0.0.1:5000",
                path: "team-a/app",
                tag: Some("v1"),
                digest: None,
            }
        );
        let both = format!("registry.example/a.b/c__d/e---f:V_1.0-rc@{SHA}");
        let both = parse(&both).unwrap();
        assert_eq!(both.path, "a.b/c__d/e---f");
        assert_eq!(both.tag, Some("V_1.0-rc"));
        assert_eq!(both.digest, Some(SHA));
        assert_eq!(parse("localhost/app").unwrap().tag, None);
        assert_eq!(parse("[::1]:5000/app:x").unwrap().registry, "[::1]:5000");
        let long_tag = format!("h.io/a:{}", "t".repeat(128));
        assert!(parse(&long_tag).is_ok());
    }

    #[test]
    fn refuses_what_distribution_refuses() {
        for bad in [
            "team-a/app:v1",
            "app",
            "h.io/",
            "h.io/Team/app",
            "h.io/a//b",
            "h.io/a/-b",
            "h.io/a/b.",
            "h.io/a..b",
            "h.io/a___b",
            "h.io/a:",
            "h.io/a:.v1",
            "h.io/a:v1:v2",
            "h.io/a:tág",
            "-h.io/a",
            "h.io:/a",
            "h.io:50x/a",
            "[zz]:5000/a",
            "h.io/a@sha256:abc",
            "h.io/a@sha256:6C3C624B58DBBCD3C0DD82B4C53F04194D1247C6EEBDAAB7C610CF7D66709B3B",
            "h.io/a@md5:6c3c624b58dbbcd3c0dd82b4c53f0419",
            "h.io/a@sha256",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
        let long_tag = format!("h.io/a:{}", "t".repeat(129));
        assert!(parse(&long_tag).is_err());
        let long_name = format!("h.io/{}", "a".repeat(251));
        assert!(parse(&long_name).is_err());
    }
}
