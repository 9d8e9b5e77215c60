//! Signing throughput: many tags and many images in one role version, then publish.

use std::time::Instant;

use futures_util::StreamExt;
use tuf_oci_tests::{TestRegistry, expiries};

use crate::fixtures::delegating_org;

/// Signing throughput: `count` targets signed into one delegated role (one new role version)
/// and published, once as `count` distinct images (one referrer attached to each) and once as
/// `count` tags of one image (one attachment: the TUF work alone).
pub(crate) async fn signing_throughput(registry: &TestRegistry, count: usize) {
    let (org, key) = delegating_org(registry, "release/tuf", "release").await;
    for (path, distinct) in [("release/app", true), ("release/tags", false)] {
        tuf_oci::editor::set_pointer(&registry.client, &registry.repo(path), "../../release/tuf")
            .await
            .unwrap();
        // Tags of one image: its manifest pushed again under each tag (pushing its blobs
        // concurrently would race in the registry).
        let first = registry.push_image(path, "b0", "one build").await;
        let one = registry
            .client
            .manifest(&registry.repo(path).digested(&first.digest), 1 << 20)
            .await
            .unwrap()
            .expect("pushed");
        let one = &one;
        futures_util::stream::iter(1..count)
            .map(|i| async move {
                let tag = format!("b{i}");
                if distinct {
                    registry.push_image(path, &tag, &format!("build {i}")).await;
                } else {
                    let tagged = registry.repo(path).tagged(&tag);
                    let media_type = &one.media_type;
                    registry
                        .client
                        .push_manifest(&tagged, &one.bytes, media_type)
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        let images: Vec<_> = (0..count)
            .map(|i| registry.image(&format!("{path}:b{i}")))
            .collect();

        let traffic = registry.client.traffic();
        let before = traffic.requests();
        let start = Instant::now();
        org.editor(registry)
            .await
            .sign(
                &images,
                "release",
                std::slice::from_ref(&key),
                expiries().targets,
            )
            .await
            .expect("sign");
        let signed = start.elapsed();
        org.publish(registry).await;
        let total = start.elapsed();
        let what = if distinct {
            format!("{count} distinct images")
        } else {
            format!("{count} tags of one image")
        };
        println!(
            "{:<56} {:>10} {:>12} {:>10.2}ms",
            format!("sign {what} in one role version + publish"),
            traffic.requests() - before,
            "-",
            total.as_secs_f64() * 1000.0
        );
        println!(
            "{:<56} {:>10} {:>12} {:>10.2}ms",
            "  of which signing (attachments included)",
            "-",
            "-",
            signed.as_secs_f64() * 1000.0
        );
        org.verify_fresh(registry, &format!("{path}:b{}", count - 1))
            .await
            .expect("the last image verifies");
    }
}
