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

/// The names `store` gives a descriptor with digest `digest` that carries no import
/// annotations (a pulled image, an image tagged anew, an archive's own index): its own name,
/// and every complete reference or prefix that adds the digest (containerd's `Store.Store`).
pub fn named(store: &ImageStore, digest: &str) -> Vec<String> {
    let own = (!store.name.is_empty()).then(|| store.name.clone());
    let references = store
        .extra_references
        .iter()
        .filter(|reference| !reference.is_prefix || reference.add_digest)
        .map(|reference| {
            if reference.add_digest {
                format!("{}@{digest}", reference.name)
            } else {
                reference.name.clone()
            }
        });
    own.into_iter().chain(references).collect()
}

/// Every `(name, target)` record importing an archive with `entries` into `store` creates.
pub fn recorded<'a>(store: &ImageStore, entries: &'a [Descriptor]) -> Vec<(String, Recorded<'a>)> {
    // The archive's index, under the names a descriptor without import annotations gets.
    let mut records: Vec<_> = named(store, "<archive index digest>")
        .into_iter()
        .map(|name| (name, Recorded::ArchiveIndex))
        .collect();
    // Each entry: named from its annotations through every prefix reference.
    for entry in entries {
        let annotations = entry.annotations().clone().unwrap_or_default();
        for reference in store.extra_references.iter().filter(|r| r.is_prefix) {
            let name = image_name(&annotations, &reference.name, reference.allow_overwrite);
            let digest_name = format!("{}@{}", reference.name, entry.digest());
            match name {
                None if reference.add_digest => records.push((digest_name, Recorded::Entry(entry))),
                None => {}
                Some(name) => {
                    records.push((name, Recorded::Entry(entry)));
                    if reference.add_digest && !reference.skip_named_digest {
                        records.push((digest_name, Recorded::Entry(entry)));
                    }
                }
            }
        }
    }
    records
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
        let records = recorded(&store, &[]);
        assert_eq!(
            named(&store, "sha256:ab"),
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
}
