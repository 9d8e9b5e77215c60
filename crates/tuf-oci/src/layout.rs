//! The registry layout (`docs/layout.md` is its spec): how TUF metadata files become OCI objects
//! that distribution 2.8 accepts and serves unchanged, and how they are found again.
//!
//! Every metadata file is one image manifest with an empty config and a single layer holding the
//! file's bytes, tagged with its TUF file name (`3.snapshot.json`, `timestamp.json`,
//! `2.team-a.json`): consistent-snapshot names are valid tags, so each version of each role is
//! addressable without listing anything. Small files are also embedded in their layer
//! descriptor (`data`, OCI image-spec 1.1), so reading one by its tag takes one request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result};

/// Media type of a layer holding one TUF metadata file (the one docker/attest uses).
pub const METADATA_LAYER_MEDIA_TYPE: &str = "application/vnd.tuf.metadata+json";
/// `artifactType` of a manifest wrapping one TUF metadata file.
pub const METADATA_ARTIFACT_TYPE: &str = "application/vnd.tuf-oci.metadata.v1";
/// Annotation naming the TUF file inside a metadata manifest or index entry.
pub const FILENAME_ANNOTATION: &str = "tuf.io/filename";
/// Annotation of the pointer form of `tuf-metadata`: where the metadata repository is.
pub const POINTER_ANNOTATION: &str = "tuf.io/metadata-repository";
/// The well-known tag every repository with signed content carries.
pub const METADATA_TAG: &str = "tuf-metadata";
/// Largest `tuf-metadata` index read: in single-repository mode it lists every role's file
/// (about 260 bytes each), so it grows with the delegation tree as snapshot does.
pub const METADATA_INDEX_LIMIT: u64 = 4 << 20;
/// OCI image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Docker's image manifest (schema 2), as `docker push` stores images: signed, copied and
/// pulled like an OCI manifest, whose layout it shares.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's manifest list: read like an OCI index.
pub const DOCKER_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// What a manifest is asked for as: registries that may not serve an image as stored
/// otherwise rewrite it (distribution 2.8 turns a Docker manifest asked for by tag into
/// schema 1) or refuse it (distribution 3, a Docker manifest list).
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    MANIFEST_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    DOCKER_LIST_MEDIA_TYPE,
];
/// Why a manifest has no media type ([`manifest_media_type`]).
pub const NO_MEDIA_TYPE: &str = "manifest declares no mediaType read as a manifest, or its \
                                  fields do not tell a manifest from an index";

/// The media type of manifest `bytes`: the one it declares, if one of
/// [`MANIFEST_MEDIA_TYPES`]; else (the field is optional in OCI's manifests and indexes, and
/// required in Docker's) what its fields make it, an OCI index listing `manifests` or an OCI
/// manifest with a `config` or `layers`; never for a document with both (read one way by one
/// client and the other by another, CVE-2021-41190, which containerd refuses too). Taken from
/// the bytes, which the digest covers, not from what the registry says it served.
pub fn manifest_media_type(bytes: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let lists = value.get("manifests").is_some();
    let image = value.get("config").is_some() || value.get("layers").is_some();
    if lists && image {
        return None;
    }
    match value.get("mediaType") {
        // One of the four read as manifests (not Docker's schema 1, say).
        Some(declared) => declared
            .as_str()
            .filter(|declared| MANIFEST_MEDIA_TYPES.contains(declared))
            .map(str::to_string),
        None if lists => Some(INDEX_MEDIA_TYPE.into()),
        None if image => Some(MANIFEST_MEDIA_TYPE.into()),
        None => None,
    }
}

/// The OCI empty descriptor's media type and content (`{}`).
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The bytes of the empty config blob.
pub const EMPTY_BLOB: &[u8] = b"{}";
/// Metadata files up to this size are embedded in their manifest's layer descriptor: every
/// timestamp and most roots, and small snapshots and roles.
pub const EMBED_LIMIT: usize = 8 * 1024;
/// Names the top-level roles use; a delegated role may not take them (TUF 4.5).
pub const TOP_LEVEL_ROLES: &[&str] = &["root", "targets", "snapshot", "timestamp"];

/// A descriptor as it appears inside manifests and indexes written by this crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The referenced object's media type.
    pub media_type: String,
    /// `sha256:<hex>` of the referenced bytes.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Artifact type, when the referenced manifest declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations (file names for metadata).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The referenced bytes themselves, base64 (OCI image-spec 1.1 `data`); readers check
    /// them against `digest` and `size` ([`Entry::embedded`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The fields this crate does not model (`platform`, `urls`, extensions), kept as they
    /// are: another tool's entries in an index this crate writes again (a referrers index, a
    /// layout's `index.json`) must not lose them.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Entry {
    /// Describes `bytes` with `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Entry {
            media_type: media_type.to_string(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
            data: None,
            extra: BTreeMap::new(),
        }
    }

    /// The layer descriptor of metadata file `bytes`: embedded when at most [`EMBED_LIMIT`].
    pub fn metadata_layer(bytes: &[u8]) -> Self {
        use base64::Engine as _;
        let mut layer = Entry::of(METADATA_LAYER_MEDIA_TYPE, bytes);
        if bytes.len() <= EMBED_LIMIT {
            layer.data = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        layer
    }

    /// The embedded bytes, if any, once they match `digest` and `size`: a registry may rewrite
    /// a manifest, and nothing unchecked leaves here. `what` names the object in errors.
    pub fn embedded(&self, what: &str) -> Result<Option<Vec<u8>>> {
        use base64::Engine as _;
        let Some(data) = &self.data else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| Error::Parse {
                role: what.to_string(),
                message: format!("embedded data is not base64: {e}"),
            })?;
        let actual = sha256_digest(&bytes);
        if actual != self.digest || bytes.len() as u64 != self.size {
            return Err(Error::DigestMismatch {
                what: format!("{what} (embedded in its manifest)"),
                expected: format!("{} ({} bytes)", self.digest, self.size),
                actual: format!("{actual} ({} bytes)", bytes.len()),
            });
        }
        Ok(Some(bytes))
    }
}

/// The fields of a manifest or index this crate reads. Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The manifest's own media type.
    #[serde(default)]
    pub media_type: Option<String>,
    /// Artifact type (metadata manifests carry [`METADATA_ARTIFACT_TYPE`]).
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// Layers of an image manifest.
    #[serde(default)]
    pub layers: Vec<Entry>,
    /// Entries of an index.
    #[serde(default)]
    pub manifests: Vec<Entry>,
    /// The subject this manifest refers to.
    #[serde(default)]
    pub subject: Option<Entry>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses manifest or index bytes.
    pub fn parse(what: &str, bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::Parse {
            role: what.to_string(),
            message: e.to_string(),
        })
    }

    /// The metadata layer of a metadata manifest, checked to carry `file_name`.
    pub fn metadata_layer(&self, file_name: &str) -> Result<&Entry> {
        let layer = match self.layers.as_slice() {
            [layer] if layer.media_type == METADATA_LAYER_MEDIA_TYPE => layer,
            _ => {
                return Err(Error::Parse {
                    role: file_name.to_string(),
                    message: format!(
                        "manifest is not a TUF metadata manifest (one {METADATA_LAYER_MEDIA_TYPE} layer)"
                    ),
                });
            }
        };
        match layer.annotations.get(FILENAME_ANNOTATION) {
            Some(name) if name == file_name => Ok(layer),
            other => Err(Error::Parse {
                role: file_name.to_string(),
                message: format!("layer is annotated as {other:?}, not {file_name}"),
            }),
        }
    }

    /// The target of a pointer-form `tuf-metadata` index, if this is one.
    pub fn pointer(&self) -> Option<&str> {
        self.annotations.get(POINTER_ANNOTATION).map(String::as_str)
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The TUF file name of `role` at `version` under consistent snapshots.
pub fn versioned_file(role: &str, version: u64) -> String {
    format!("{version}.{role}.json")
}

/// The version and role a versioned file name (`3.team-a.json`) names; `None` for any other
/// name, heads (`team-a.json`) included.
pub fn parse_versioned_file(name: &str) -> Option<(u64, &str)> {
    let (version, role) = name.strip_suffix(".json")?.split_once('.')?;
    Some((version.parse().ok()?, role))
}

/// The tag of `file` attached to `subject`: `ref-<first 16 hex of the subject digest>-<file>`.
pub(crate) fn attachment_tag(subject: &Entry, file: &str) -> String {
    let hex = subject.digest.trim_start_matches("sha256:");
    format!("ref-{}-{file}", &hex[..16.min(hex.len())])
}

/// The file an attachment tag ([`attachment_tag`]) names: `N.<role>.json` for
/// `ref-<16 hex>-N.<role>.json`.
pub(crate) fn attached_file(tag: &str) -> Option<&str> {
    let rest = tag.strip_prefix("ref-")?;
    let (hex, file) = rest.split_at_checked(16)?;
    let file = file.strip_prefix('-')?;
    hex.bytes().all(|b| b.is_ascii_hexdigit()).then_some(file)
}

/// The `signed.version` of TUF metadata `bytes`, if they parse and carry one (for comparing
/// stored files before anything is verified or written).
pub(crate) fn signed_version(bytes: &[u8]) -> Option<u64> {
    // Only the version is decoded: targets metadata with many targets is large.
    #[derive(serde::Deserialize)]
    struct Metadata {
        signed: Versioned,
    }
    #[derive(serde::Deserialize)]
    struct Versioned {
        version: u64,
    }
    let metadata: Metadata = serde_json::from_slice(bytes).ok()?;
    Some(metadata.signed.version)
}

/// Checks that a delegated role name can be stored: it becomes part of tags
/// (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`, with room for a version and an attachment prefix),
/// may not shadow a top-level role, and may not begin like a versioned file (`2024.q1`'s
/// head tag `2024.q1.json` would read as version 2024 of role `q1`).
pub fn check_role_name(name: &str) -> Result<()> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let versioned = name
        .split_once('.')
        .is_some_and(|(start, _)| start.bytes().all(|b| b.is_ascii_digit()));
    let top_level = TOP_LEVEL_ROLES
        .iter()
        .any(|top| top.eq_ignore_ascii_case(name));
    if !valid_chars || !first_ok || versioned || name.len() > 64 || top_level {
        return Err(Error::Usage(format!(
            "role name {name:?} must match [A-Za-z0-9_][A-Za-z0-9._-]*, be at most 64 characters, \
             not begin with digits and a dot, and not be a top-level role name"
        )));
    }
    Ok(())
}

/// The manifest wrapping one metadata file. `subject` attaches it to the image it signs, so the
/// referrers API (or its tag-schema fallback) lists it next to that image.
pub fn metadata_manifest(file_name: &str, layer: &Entry, subject: Option<&Entry>) -> Vec<u8> {
    let mut layer = layer.clone();
    layer
        .annotations
        .insert(FILENAME_ANNOTATION.into(), file_name.into());
    layer
        .annotations
        .insert("org.opencontainers.image.title".into(), file_name.into());
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": METADATA_ARTIFACT_TYPE,
        "config": Entry::of(EMPTY_MEDIA_TYPE, EMPTY_BLOB),
        "layers": [layer],
        "annotations": { FILENAME_ANNOTATION: file_name },
    });
    if let Some(subject) = subject {
        manifest["subject"] = json!(subject);
    }
    serde_json::to_vec(&manifest).expect("manifest serializes")
}

/// The descriptor of `manifest`, the metadata manifest of `file_name`, as indexes list it: with
/// its artifact type and file name.
pub fn metadata_entry(file_name: &str, manifest: &[u8]) -> Entry {
    let mut entry = Entry::of(MANIFEST_MEDIA_TYPE, manifest);
    entry.artifact_type = Some(METADATA_ARTIFACT_TYPE.into());
    entry
        .annotations
        .insert(FILENAME_ANNOTATION.into(), file_name.into());
    entry
}

/// The `tuf-metadata` index entry of metadata file `file_name` with these bytes: the descriptor
/// of the manifest writers store it in (without a subject), computed locally since that
/// manifest is deterministic.
pub fn index_entry(file_name: &str, bytes: &[u8]) -> Entry {
    let layer = Entry::metadata_layer(bytes);
    metadata_entry(file_name, &metadata_manifest(file_name, &layer, None))
}

/// `entries` with the entries of `more` they lack (by digest) after them: a referrers index
/// merged, whoever else wrote to it keeping their entries.
pub(crate) fn with_entries<'a>(
    entries: &[Entry],
    more: impl IntoIterator<Item = &'a Entry>,
) -> Vec<Entry> {
    let mut merged = entries.to_vec();
    for entry in more {
        if !merged.iter().any(|m| m.digest == entry.digest) {
            merged.push(entry.clone());
        }
    }
    merged
}

/// An image index; `manifests` may be empty (pointer form and empty referrers lists).
pub fn index(manifests: &[Entry], annotations: &BTreeMap<String, String>) -> Vec<u8> {
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": manifests,
    });
    if !annotations.is_empty() {
        index["annotations"] = json!(annotations);
    }
    serde_json::to_vec(&index).expect("index serializes")
}

/// The referrers tag-schema tag for `digest` (OCI distribution spec, "Referrers Tag Schema").
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_become_valid_tags() {
        check_role_name("team-a").unwrap();
        check_role_name("team_a.apps-2").unwrap();
        check_role_name("2024-q1").unwrap();
        check_role_name("v2024.q1").unwrap();
        for bad in [
            "",
            "-a",
            "a/b",
            "snapshot",
            "Snapshot",
            "a:b",
            "2024.q1",
            &"x".repeat(65),
        ] {
            assert!(check_role_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn small_files_are_embedded_and_checked() {
        let file = b"{\"signed\":{}}";
        let layer = Entry::metadata_layer(file);
        assert_eq!(layer.embedded("f").unwrap().as_deref(), Some(&file[..]));
        let large = vec![b' '; EMBED_LIMIT + 1];
        assert_eq!(Entry::metadata_layer(&large).embedded("f").unwrap(), None);

        let mut swapped = layer.clone();
        swapped.data = Entry::metadata_layer(b"{\"signed\":{\"x\":1}}").data;
        assert!(matches!(
            swapped.embedded("f"),
            Err(Error::DigestMismatch { .. })
        ));
        let mut garbled = layer;
        garbled.data = Some("not base64!".into());
        assert!(matches!(garbled.embedded("f"), Err(Error::Parse { .. })));
    }

    #[test]
    fn metadata_manifest_round_trips() {
        let layer = Entry::of(METADATA_LAYER_MEDIA_TYPE, b"{\"signed\":{}}");
        let bytes = metadata_manifest("3.snapshot.json", &layer, None);
        let manifest = Manifest::parse("m", &bytes).unwrap();
        assert_eq!(
            manifest.artifact_type.as_deref(),
            Some(METADATA_ARTIFACT_TYPE)
        );
        assert_eq!(
            manifest.metadata_layer("3.snapshot.json").unwrap().digest,
            layer.digest
        );
        assert!(manifest.metadata_layer("4.snapshot.json").is_err());
    }
}
