//! Requests, bytes and time of one verification: cold and warm, many targets in one role,
//! many delegated roles.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tough::TargetName;
use tough::schema::{DelegatedRole, Delegations, PathPattern, PathSet, Root, Signed, Targets};
use tuf_oci::{Registry, RegistryConfig, Verifier};
use tuf_oci_tests::craft::{self, parse};
use tuf_oci_tests::{Org, TestRegistry, expiries};

use crate::fixtures::{delegating_org, descriptor, fake_entry};
use crate::measure::{Measured, client, client_with, measure, measured, median_run, row};

pub(crate) async fn requests_per_verification(registry: &TestRegistry, runs: usize) {
    let (org, team) = delegating_org(registry, "bench/tuf", "team-a").await;
    registry.push_image("team-a/app", "v1", "bench").await;
    tuf_oci::editor::set_pointer(
        &registry.client,
        &registry.repo("team-a/app"),
        "../../bench/tuf",
    )
    .await
    .unwrap();
    org.sign(
        registry,
        &registry.image("team-a/app:v1"),
        "team-a",
        &[team],
    )
    .await;
    org.publish(registry).await;

    let image = registry.image("team-a/app:v1");
    // [cold, warm, cold location known, warm location known, warm session], each a new client
    // (warm: on the cache the cold one filled) with an empty cache in every run.
    let mut cases: [Vec<Measured>; 5] = Default::default();
    for _ in 0..runs {
        let cache = tempfile::tempdir().unwrap();
        for case in &mut cases[..2] {
            let (client, verifier) = client(registry, &org, cache.path());
            case.push(measure(&client, &verifier, &image).await);
        }
        // Bootstrapped with the metadata location (no pointer read), resolving through TUF
        // only (the image verifier's case: containerd hands it the descriptor).
        let located = tempfile::tempdir().unwrap();
        for case in &mut cases[2..4] {
            let client = Registry::new(&RegistryConfig {
                insecure_hosts: vec![registry.host.clone()],
                timeout: Duration::from_secs(30),
            })
            .expect("registry client");
            let trust = org.trust(Some(registry.repo("bench/tuf")), Some(located.path()));
            let verifier = Verifier::new(client.clone(), trust).expect("trusted root");
            case.push(
                measured(&client, async {
                    verifier.resolve(&image).await.expect("resolve");
                })
                .await,
            );
        }
        // A long-lived verifier (the plugins' service) reusing its update for a minute,
        // resolving through TUF alone as the containerd verifier does with the descriptor it
        // is given.
        let (client, verifier) = client_with(registry, &org, cache.path(), Duration::from_secs(60));
        verifier.resolve(&image).await.expect("resolve");
        cases[4].push(
            measured(&client, async {
                verifier.resolve(&image).await.expect("resolve");
            })
            .await,
        );
    }
    let [cold, warm, located_cold, located_warm, session] = cases.map(median_run);
    row("one delegated role, cold (empty cache)", &cold);
    row("one delegated role, warm (cache, nothing new)", &warm);
    row(
        "one delegated role, cold, location known, TUF only",
        &located_cold,
    );
    row(
        "one delegated role, warm, location known, TUF only",
        &located_warm,
    );
    row(
        "warm session (refresh interval 60 s), TUF resolve only",
        &session,
    );
    println!(
        "{:<56} {:>10.2} {:>12.2} {:>12.2}",
        "  ratio warm/cold",
        warm.requests as f64 / cold.requests as f64,
        warm.bytes as f64 / cold.bytes as f64,
        warm.time.as_secs_f64() / cold.time.as_secs_f64()
    );
}

pub(crate) async fn many_targets_in_one_role(registry: &TestRegistry, count: usize, runs: usize) {
    let org = Org::init(registry, "bulk/tuf").await;
    let real = registry.push_image("bulk/tuf", "tag-0", "bulk").await;
    let root: Signed<Root> = parse(&org.root);
    let mut targets = Targets::new("1.0.0".into(), 2.try_into().unwrap(), expiries().targets);
    for i in 0..count {
        let entry = if i == 0 { real.clone() } else { fake_entry(i) };
        targets.targets.insert(
            TargetName::new(format!("bulk/tuf:tag-{i}")).unwrap(),
            tuf_oci::descriptor::target_from_descriptor(&descriptor(&entry)).unwrap(),
        );
    }
    let signed = craft::sign_top(targets, &root.signed, &org.targets_key().await).await;
    craft::publish_raw(registry, &org, &[("targets", craft::bytes(&signed))]).await;

    let mut cases: [Vec<Measured>; 2] = Default::default();
    for _ in 0..runs {
        let cache = tempfile::tempdir().unwrap();
        let (client, verifier) = client(registry, &org, cache.path());
        cases[0].push(measure(&client, &verifier, &registry.image("bulk/tuf:tag-0")).await);
        let by_digest = registry.image(&format!("bulk/tuf@{}", real.digest));
        cases[1].push(measure(&client, &verifier, &by_digest).await);
    }
    let [cold, by_digest] = cases.map(median_run);
    row(
        &format!("{count} targets in top-level targets, cold"),
        &cold,
    );
    row(&format!("{count} targets, by digest, warm"), &by_digest);
}

pub(crate) async fn many_delegated_roles(
    registry: &TestRegistry,
    roles: usize,
    per_role: usize,
    runs: usize,
) {
    let org = Org::init(registry, "fleet/tuf").await;
    let chosen = roles / 2;
    let path = format!("team-{chosen}/app");
    let real = registry.push_image(&path, "v1", "fleet").await;
    tuf_oci::editor::set_pointer(&registry.client, &registry.repo(&path), "/fleet/tuf")
        .await
        .unwrap();
    let root: Signed<Root> = parse(&org.root);
    let key = org.key("team").await;
    let keyid = key.public().key_id().unwrap();
    let mut delegations = Delegations {
        keys: HashMap::from([(keyid.clone(), key.public().clone())]),
        roles: Vec::new(),
    };
    for i in 0..roles {
        delegations.roles.push(DelegatedRole {
            name: format!("team-{i}"),
            keyids: vec![keyid.clone()],
            threshold: 1.try_into().unwrap(),
            paths: PathSet::Paths(vec![PathPattern::new(format!("team-{i}/*")).unwrap()]),
            terminating: false,
            targets: None,
        });
    }
    let mut files = Vec::new();
    let mut total_role_bytes = 0;
    for i in 0..roles {
        let mut targets = Targets::new("1.0.0".into(), 1.try_into().unwrap(), expiries().targets);
        for j in 0..per_role {
            let entry = if i == chosen && j == 0 {
                real.clone()
            } else {
                fake_entry(i * per_role + j)
            };
            let tag = if i == chosen && j == 0 {
                "v1".to_string()
            } else {
                format!("t{j}")
            };
            targets.targets.insert(
                TargetName::new(format!("team-{i}/app:{tag}")).unwrap(),
                tuf_oci::descriptor::target_from_descriptor(&descriptor(&entry)).unwrap(),
            );
        }
        let signed = craft::sign_delegated(
            &format!("team-{i}"),
            targets,
            &delegations,
            std::slice::from_ref(&key),
        )
        .await;
        let bytes = craft::bytes(&signed);
        total_role_bytes += bytes.len();
        files.push((format!("team-{i}"), bytes));
    }
    let mut top = Targets::new("1.0.0".into(), 2.try_into().unwrap(), expiries().targets);
    top.delegations = Some(delegations);
    let top = craft::sign_top(top, &root.signed, &org.targets_key().await).await;
    files.push(("targets".into(), craft::bytes(&top)));
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    craft::publish_raw(registry, &org, &files).await;
    // Writers' heads (`<role>.json`), as signers leave them.
    let metadata = &org.metadata;
    futures_util::stream::iter(&files)
        .map(|(role, bytes)| async move {
            let head = format!("{role}.json");
            registry.put_file(metadata, &head, bytes).await;
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;

    let mut cold = Vec::new();
    let mut caches = Vec::new();
    for _ in 0..runs {
        let cache = tempfile::tempdir().unwrap();
        let (client, verifier) = client(registry, &org, cache.path());
        cold.push(measure(&client, &verifier, &registry.image(&format!("{path}:v1"))).await);
        caches.push(cache);
    }
    let cold = median_run(cold);
    let cache = caches.pop().expect("at least one run");
    row(
        &format!("{roles} delegated roles x {per_role} targets, cold"),
        &cold,
    );
    let cached = cache
        .path()
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let fetched: Vec<u64> = std::fs::read_dir(cached)
        .unwrap()
        .map(Result::unwrap)
        .filter(|e| e.file_name().to_string_lossy().starts_with("team-"))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    let fetched_roles = fetched.len();
    println!(
        "{:<56} {:>10} of {roles} roles fetched; their bytes / all delegated bytes = {:.4}",
        "  lazy search",
        fetched_roles,
        fetched.iter().sum::<u64>() as f64 / total_role_bytes as f64
    );
    assert_eq!(
        fetched_roles, 1,
        "the search must fetch only the role on the path"
    );

    // One change (a new image signed into one role), then publish: only that role is
    // re-signed and pushed; publish signs snapshot and timestamp over every role's head.
    registry.push_image(&path, "v2", "fleet two").await;
    let traffic = registry.client.traffic();
    let before = traffic.requests();
    let start = Instant::now();
    let editor = org.editor(registry).await;
    editor
        .sign(
            &[registry.image(&format!("{path}:v2"))],
            &format!("team-{chosen}"),
            std::slice::from_ref(&key),
            expiries().targets,
        )
        .await
        .expect("sign");
    let signed = (traffic.requests() - before, start.elapsed());
    let before = traffic.requests();
    let start = Instant::now();
    org.publish(registry).await;
    let published = (traffic.requests() - before, start.elapsed());
    for (case, (requests, time)) in [
        (format!("sign one image into 1 of {roles} roles"), signed),
        (
            format!("publish after that change ({roles} roles)"),
            published,
        ),
    ] {
        println!(
            "{case:<56} {requests:>10} {:>12} {:>10.2}ms",
            "-",
            time.as_secs_f64() * 1000.0
        );
    }
    org.verify_fresh(registry, &format!("{path}:v2"))
        .await
        .expect("the change verifies");
}
