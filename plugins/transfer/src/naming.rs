//! The image records containerd 2.x makes when the Transfer service imports an archive into an
//! `ImageStore`: the front must know every name an import would create, so it can verify each
//! before containerd sees the import. The rules follow containerd's `core/transfer/image`
//! (`Store.Store`, `imageName`) and `core/images/archive` (`AddRefPrefix`, `FilterRefPrefix`).

use containerd_client::types::transfer::ImageStore;
use oci_spec::image::Descriptor;
use tuf_oci::store::{IMAGE_NAME as CONTAINERD_NAME, REF_NAME as OCI_REF_NAME};

/// What an import would point a name at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded<'a> {
    /// An entry of the archive's `index.json`.
    Entry(&'a Descriptor),
    /// The index containerd builds from the archive's `index.json` (its own bytes, which no
    /// TUF target can have signed).
    ArchiveIndex,
}

/// The most image records one Transfer may make. Each is checked with TUF; a request naming
/// more (prefix references times archive entries multiply) is refused before any is built.
pub const MAX_RECORDS: usize = 4096;

/// The most (archive entry, prefix reference) pairs one import may name records through.
pub const MAX_NAMINGS: usize = 65_536;

/// Stands for a digest the front does not know when it names records.
pub const UNKNOWN_DIGEST: &str = "<digest>";
/// Stands for the digest of the index containerd builds from an archive's `index.json`.
pub const ARCHIVE_INDEX_DIGEST: &str = "<archive index digest>";

/// A Transfer that would make more than [`MAX_RECORDS`] image records, or name them through
/// more than [`MAX_NAMINGS`] (entry, prefix) pairs; shown, the refusal given to the client.
#[derive(Debug)]
pub struct TooMany;

impl std::fmt::Display for TooMany {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tuf-oci: the transfer would make more than {MAX_RECORDS} image records, or name \
             them through more than {MAX_NAMINGS} pairs of archive entry and prefix reference; \
             refused"
        )
    }
}

/// `name` without the `@<placeholder>` [`named`] gave it: the name the user chose, whole
/// (`user@host/...` included, which the policy reads as containerd does).
pub fn unpinned<'a>(name: &'a str, placeholder: &str) -> &'a str {
    name.strip_suffix(placeholder)
        .and_then(|rest| rest.strip_suffix('@'))
        .unwrap_or(name)
}

/// The names `store` gives a descriptor with digest `digest` that carries no import
/// annotations (a pulled image, an image tagged anew, an archive's own index): its own name,
/// and every complete reference or prefix that adds the digest (containerd's `Store.Store`).
pub fn named(store: &ImageStore, digest: &str) -> Result<Vec<String>, TooMany> {
    let naming = |reference: &&containerd_client::types::transfer::ImageReference| {
        !reference.is_prefix || reference.add_digest
    };
    let count =
        usize::from(!store.name.is_empty()) + store.extra_references.iter().filter(naming).count();
    if count > MAX_RECORDS {
        return Err(TooMany);
    }
    let own = (!store.name.is_empty()).then(|| store.name.clone());
    let references = store
        .extra_references
        .iter()
        .filter(naming)
        .map(|reference| {
            if reference.add_digest {
                format!("{}@{digest}", reference.name)
            } else {
                reference.name.clone()
            }
        });
    Ok(own.into_iter().chain(references).collect())
}

/// Every `(name, target)` record importing an archive with `entries` into `store` creates.
pub fn recorded<'a>(
    store: &ImageStore,
    entries: &'a [Descriptor],
) -> Result<Vec<(String, Recorded<'a>)>, TooMany> {
    // The archive's index, under the names a descriptor without import annotations gets.
    let mut records: Vec<_> = named(store, ARCHIVE_INDEX_DIGEST)?
        .into_iter()
        .map(|name| (name, Recorded::ArchiveIndex))
        .collect();
    // Each entry: named from its annotations through every prefix reference. The work is
    // bounded too: pairs that name nothing take time all the same.
    let prefixes: Vec<_> = store
        .extra_references
        .iter()
        .filter(|r| r.is_prefix)
        .collect();
    if entries.len().saturating_mul(prefixes.len()) > MAX_NAMINGS {
        return Err(TooMany);
    }
    for entry in entries {
        let annotations = entry.annotations().clone().unwrap_or_default();
        for reference in &prefixes {
            if records.len() > MAX_RECORDS {
                return Err(TooMany);
            }
            let name = image_name(&annotations, &reference.name, reference.allow_overwrite);
            let digest_name = || format!("{}@{}", reference.name, entry.digest());
            match name {
                None if reference.add_digest => {
                    records.push((digest_name(), Recorded::Entry(entry)));
                }
                None => {}
                Some(name) => {
                    records.push((name, Recorded::Entry(entry)));
                    if reference.add_digest && !reference.skip_named_digest {
                        records.push((digest_name(), Recorded::Entry(entry)));
                    }
                }
            }
        }
    }
    if records.len() > MAX_RECORDS {
        return Err(TooMany);
    }
    Ok(records)
}

/// containerd's `imageName`: its own annotation if the prefix rule keeps it unchanged, else the
/// OCI ref name through the prefix rule.
fn image_name(
    annotations: &std::collections::HashMap<String, String>,
    prefix: &str,
    allow_overwrite: bool,
) -> Option<String> {
    if let Some(name) = annotations.get(CONTAINERD_NAME).filter(|n| !n.is_empty()) {
        return (translate(prefix, name, !allow_overwrite).as_deref() == Some(name))
            .then(|| name.clone());
    }
    let name = annotations.get(OCI_REF_NAME).filter(|n| !n.is_empty())?;
    translate(prefix, name, !allow_overwrite)
}

/// containerd's `refTranslator`: a bare tag joins the prefix; a full reference stays as it is,
/// or (when `check_prefix`) is dropped unless it starts with the prefix.
fn translate(prefix: &str, reference: &str, check_prefix: bool) -> Option<String> {
    if prefix.is_empty() {
        return None;
    }
    if reference.contains(['/', ':', '@']) {
        return (!check_prefix || has_prefix(reference, prefix)).then(|| reference.to_string());
    }
    Some(format!("{prefix}:{reference}"))
}

/// containerd's `isImagePrefix`: `prefix` followed by nothing or a separator.
fn has_prefix(reference: &str, prefix: &str) -> bool {
    reference
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', ':', '@']))
}

#[cfg(test)]
mod tests {
    use containerd_client::types::transfer::ImageReference;

    use super::*;

    fn entry(annotations: &[(&str, &str)]) -> Descriptor {
        serde_json::from_value(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", "a".repeat(64)),
            "size": 7,
            "annotations": annotations.iter().cloned().collect::<std::collections::HashMap<_, _>>(),
        }))
        .unwrap()
    }

    fn prefix(name: &str, allow_overwrite: bool, add_digest: bool) -> ImageReference {
        ImageReference {
            name: name.into(),
            is_prefix: true,
            allow_overwrite,
            add_digest,
            skip_named_digest: false,
        }
    }

    fn names(store: &ImageStore, entries: &[Descriptor]) -> Vec<String> {
        recorded(store, entries)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn ctr_import_defaults() {
        // `ctr images import` without --base-name: prefix import-DATE, overwrite allowed.
        let store = ImageStore {
            extra_references: vec![prefix("import-2026-11-25", true, false)],
            ..ImageStore::default()
        };
        let digest = format!("sha256:{}", "a".repeat(64));
        type Annotations<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Annotations, &[&str])] = &[
            (
                &[(CONTAINERD_NAME, "r:5000/team-a/app:v1")],
                &["r:5000/team-a/app:v1"],
            ),
            (&[(OCI_REF_NAME, "v1")], &["import-2026-11-25:v1"]),
            (&[(OCI_REF_NAME, "team-a/app:v1")], &["team-a/app:v1"]),
            (
                &[(CONTAINERD_NAME, "r/a:v1"), (OCI_REF_NAME, "v1")],
                &["r/a:v1"],
            ),
            (&[], &[]),
        ];
        for (annotations, expected) in cases {
            assert_eq!(
                names(&store, &[entry(annotations)]),
                *expected,
                "{annotations:?}"
            );
        }
        let with_digests = ImageStore {
            extra_references: vec![prefix("import-x", true, true)],
            ..ImageStore::default()
        };
        // --digests: the archive's index is named by its digest too.
        let index = "import-x@<archive index digest>".to_string();
        assert_eq!(
            names(&with_digests, &[entry(&[])]),
            [index.clone(), format!("import-x@{digest}")]
        );
        assert_eq!(
            names(&with_digests, &[entry(&[(OCI_REF_NAME, "v1")])]),
            [
                index,
                "import-x:v1".to_string(),
                format!("import-x@{digest}")
            ]
        );
    }

    #[test]
    fn base_name_filters_full_references() {
        // `--base-name r/a`: only references under that name are kept.
        let store = ImageStore {
            extra_references: vec![prefix("r/a", false, false)],
            ..ImageStore::default()
        };
        assert_eq!(
            names(&store, &[entry(&[(CONTAINERD_NAME, "r/a:v1")])]),
            ["r/a:v1"]
        );
        assert!(names(&store, &[entry(&[(CONTAINERD_NAME, "r/ab:v1")])]).is_empty());
        assert!(names(&store, &[entry(&[(CONTAINERD_NAME, "other/b:v1")])]).is_empty());
        assert_eq!(names(&store, &[entry(&[(OCI_REF_NAME, "v2")])]), ["r/a:v2"]);
    }

    #[test]
    fn index_names_point_at_the_archive_index() {
        let store = ImageStore {
            name: "r/bundle:all".into(),
            extra_references: vec![
                ImageReference {
                    name: "r/exact:v1".into(),
                    ..ImageReference::default()
                },
                prefix("r/p", false, true),
            ],
            ..ImageStore::default()
        };
        let records = recorded(&store, &[]).unwrap();
        assert_eq!(
            named(&store, "sha256:ab").unwrap(),
            ["r/bundle:all", "r/exact:v1", "r/p@sha256:ab"]
        );
        assert_eq!(
            records,
            [
                ("r/bundle:all".to_string(), Recorded::ArchiveIndex),
                ("r/exact:v1".to_string(), Recorded::ArchiveIndex),
                (
                    "r/p@<archive index digest>".to_string(),
                    Recorded::ArchiveIndex
                ),
            ]
        );
    }

    #[test]
    fn transfers_naming_too_many_records_are_refused_before_they_are_named() {
        // One archive of many entries through many prefixes would name entries times
        // prefixes records; they are counted as they are named, and refused past the limit.
        let many_prefixes = ImageStore {
            extra_references: (0..1000)
                .map(|i| prefix(&format!("r/p{i}"), true, true))
                .collect(),
            ..ImageStore::default()
        };
        let entries: Vec<Descriptor> = (0..1000).map(|_| entry(&[(OCI_REF_NAME, "v1")])).collect();
        assert!(recorded(&many_prefixes, &entries).is_err());
        assert!(recorded(&many_prefixes, &entries[..1]).is_ok());
        // Pairs that name nothing (no annotations, no digest added) count too.
        let silent = ImageStore {
            extra_references: (0..1000)
                .map(|i| prefix(&format!("r/p{i}"), true, false))
                .collect(),
            ..ImageStore::default()
        };
        let bare: Vec<Descriptor> = (0..MAX_NAMINGS / 1000 + 1).map(|_| entry(&[])).collect();
        assert!(recorded(&silent, &bare).is_err());
        assert_eq!(recorded(&silent, &bare[..MAX_NAMINGS / 1000]).unwrap(), []);
        let at_limit = ImageStore {
            extra_references: (0..MAX_RECORDS)
                .map(|i| ImageReference {
                    name: format!("r/exact:{i}"),
                    ..ImageReference::default()
                })
                .collect(),
            ..ImageStore::default()
        };
        assert_eq!(named(&at_limit, UNKNOWN_DIGEST).unwrap().len(), MAX_RECORDS);
        let over = ImageStore {
            name: "r/own:v1".into(),
            ..at_limit
        };
        assert!(named(&over, UNKNOWN_DIGEST).is_err());
    }

    #[test]
    fn only_the_placeholder_is_taken_off_a_name() {
        assert_eq!(unpinned("r/p@<digest>", UNKNOWN_DIGEST), "r/p");
        assert_eq!(
            unpinned("u@registry.example.com/team-a/app:v1", UNKNOWN_DIGEST),
            "u@registry.example.com/team-a/app:v1"
        );
        assert_eq!(
            unpinned("r/p@<archive index digest>", ARCHIVE_INDEX_DIGEST),
            "r/p"
        );
        assert_eq!(unpinned("r/p<digest>", UNKNOWN_DIGEST), "r/p<digest>");
    }
}
