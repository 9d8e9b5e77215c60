//! Signed images and organisations the cases measure.

use tuf_oci::keys::SigningKey;
use tuf_oci::layout::Entry;
use tuf_oci_tests::{Org, TestRegistry, delegation, expiries};

/// A new organisation at `metadata` delegating `role/*` to `role`, published; with the role's
/// key.
pub(crate) async fn delegating_org(
    registry: &TestRegistry,
    metadata: &str,
    role: &str,
) -> (Org, SigningKey) {
    let org = Org::init(registry, metadata).await;
    let key = org.key(role).await;
    let paths = [format!("{role}/*")];
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    org.delegate_from_targets(registry, &delegation(role, &paths, &[&key], 1))
        .await;
    org.publish(registry).await;
    (org, key)
}

/// A new organisation with its metadata repository beside repository `app` (`../tuf`), whose
/// top-level targets sign the images `(tag, content)` pushed to `app`, published.
pub(crate) async fn signed_app(
    registry: &TestRegistry,
    app: &str,
    images: &[(String, String)],
) -> (Org, Vec<Entry>) {
    let (parent, _) = app.rsplit_once('/').expect("app is parent/name");
    let org = Org::init(registry, &format!("{parent}/tuf")).await;
    let mut pushed = Vec::new();
    for (tag, content) in images {
        pushed.push(registry.push_image(app, tag, content).await);
    }
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo(app), "../tuf")
        .await
        .unwrap();
    let references: Vec<_> = images
        .iter()
        .map(|(tag, _)| registry.image(&format!("{app}:{tag}")))
        .collect();
    org.editor(registry)
        .await
        .sign(
            &references,
            "targets",
            &org.targets_key().await,
            expiries().targets,
        )
        .await
        .expect("sign");
    org.publish(registry).await;
    (org, pushed)
}

/// A new organisation signing `repository:v1`, an image of four layers of `layer_bytes`
/// each (one letter repeated), in single-repository mode, published.
pub(crate) async fn four_layer_image(
    registry: &TestRegistry,
    repository: &str,
    layer_bytes: usize,
) -> Org {
    let org = Org::init(registry, repository).await;
    let fills: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|f| f.repeat(layer_bytes))
        .collect();
    let contents: Vec<&str> = fills.iter().map(String::as_str).collect();
    registry
        .push_image_layers(repository, "v1", &contents)
        .await;
    org.sign_in_targets(registry, &format!("{repository}:v1"))
        .await;
    org.publish(registry).await;
    org
}

/// A descriptor for a manifest that does not exist (only its metadata matters here).
pub(crate) fn fake_entry(i: usize) -> Entry {
    Entry::of(
        tuf_oci::layout::MANIFEST_MEDIA_TYPE,
        format!("fake manifest {i}").as_bytes(),
    )
}

pub(crate) fn descriptor(entry: &Entry) -> oci_spec::image::Descriptor {
    serde_json::from_value(serde_json::to_value(entry).unwrap()).unwrap()
}
