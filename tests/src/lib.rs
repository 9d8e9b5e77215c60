//! Shared fixtures for the integration tests: a real `docker-registry` (CNCF distribution) on a
//! free loopback port with its storage in a temp dir, images built in code, and a TUF
//! organisation (keys, metadata repository) created through the real library.

pub mod containerd;
pub mod craft;
pub mod hostile;
pub mod https_store;
pub mod relay;

use std::net::TcpListener;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;
use tuf_oci::editor::{self, Editor, Expiries, NewDelegation, TopLevelKeys};
use tuf_oci::keys::SigningKey;
use tuf_oci::layout::{DOCKER_MANIFEST_MEDIA_TYPE, Entry, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use tuf_oci::{ImageRef, Registry, RegistryConfig, Repository, TrustConfig, Verifier};

/// A running registry, stopped and deleted on drop.
pub struct TestRegistry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    /// A client for it (plain HTTP).
    pub client: Registry,
    process: Child,
    /// Configuration and storage.
    dir: TempDir,
}

impl TestRegistry {
    /// Starts `docker-registry` (or `$REGISTRY_BIN`) and waits until it answers.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts a registry whose configuration ends with `extra` (YAML, e.g. an `auth:` section).
    pub fn start_with(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{extra}",
                dir.path().join("data").display()
            ),
        )
        .expect("registry config");
        let bin = std::env::var("REGISTRY_BIN").unwrap_or_else(|_| "docker-registry".into());
        let process = Command::new(&bin)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} (apt-get install docker-registry): {e}")
            });
        for _ in 0..200 {
            if std::net::TcpStream::connect(&host).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let client = Registry::new(&RegistryConfig {
            insecure_hosts: vec![host.clone()],
            timeout: Duration::from_secs(10),
        })
        .expect("registry client");
        TestRegistry {
            host,
            client,
            process,
            dir,
        }
    }

    /// `host/path` as a repository.
    pub fn repo(&self, path: &str) -> Repository {
        Repository::parse(&format!("{}/{path}", self.host)).expect("repository")
    }

    /// `host/reference` as an image reference.
    pub fn image(&self, reference: &str) -> ImageRef {
        ImageRef::parse(&format!("{}/{reference}", self.host)).expect("image reference")
    }

    /// The manifest `digest` of repository `path`, as JSON (to read its layers).
    pub async fn manifest_json(&self, path: &str, digest: &str) -> serde_json::Value {
        let manifest = self
            .client
            .manifest(&self.repo(path).digested(digest), 1 << 20)
            .await
            .expect("manifest")
            .expect("manifest exists");
        serde_json::from_slice(&manifest.bytes).expect("manifest JSON")
    }

    /// Pushes a one-layer image whose layer holds `content`, tagged `tag`. Returns its
    /// manifest descriptor.
    pub async fn push_image(&self, path: &str, tag: &str, content: &str) -> Entry {
        let repo = self.repo(path);
        let manifest = self.image_manifest(&repo, content, None).await;
        self.client
            .push_manifest(&repo.tagged(tag), &manifest, MANIFEST_MEDIA_TYPE)
            .await
            .expect("push manifest")
    }

    /// Pushes an image as `docker push` stores one (Docker's schema 2 manifest, its config and
    /// gzipped layer typed as Docker's), tagged `tag`.
    pub async fn push_docker_image(&self, path: &str, tag: &str, content: &str) -> Entry {
        let repo = self.repo(path);
        let manifest = self
            .manifest_of(&repo, &[content], None, Flavor::Docker)
            .await;
        self.client
            .push_manifest(&repo.tagged(tag), &manifest, DOCKER_MANIFEST_MEDIA_TYPE)
            .await
            .expect("push manifest")
    }

    /// Pushes a multi-platform index (linux/amd64 and linux/arm64 images) tagged `tag`.
    pub async fn push_index(&self, path: &str, tag: &str, content: &str) -> Entry {
        let repo = self.repo(path);
        let mut manifests = Vec::new();
        for arch in ["amd64", "arm64"] {
            let bytes = self
                .image_manifest(&repo, &format!("{content}-{arch}"), Some(arch))
                .await;
            let entry = self
                .client
                .push_manifest(
                    &repo.digested(&tuf_oci::layout::sha256_digest(&bytes)),
                    &bytes,
                    MANIFEST_MEDIA_TYPE,
                )
                .await
                .expect("push platform manifest");
            let mut value = serde_json::to_value(entry).unwrap();
            value["platform"] = json!({"architecture": arch, "os": "linux"});
            manifests.push(value);
        }
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": manifests,
        }))
        .unwrap();
        self.client
            .push_manifest(&repo.tagged(tag), &index, INDEX_MEDIA_TYPE)
            .await
            .expect("push index")
    }

    async fn image_manifest(
        &self,
        repo: &Repository,
        content: &str,
        arch: Option<&str>,
    ) -> Vec<u8> {
        self.image_manifest_layers(repo, &[content], arch).await
    }

    /// Pushes an image with one layer per entry of `contents`, tagged `tag`.
    pub async fn push_image_layers(&self, path: &str, tag: &str, contents: &[&str]) -> Entry {
        let repo = self.repo(path);
        let manifest = self.image_manifest_layers(&repo, contents, None).await;
        self.client
            .push_manifest(&repo.tagged(tag), &manifest, MANIFEST_MEDIA_TYPE)
            .await
            .expect("push manifest")
    }

    async fn image_manifest_layers(
        &self,
        repo: &Repository,
        contents: &[&str],
        arch: Option<&str>,
    ) -> Vec<u8> {
        self.manifest_of(repo, contents, arch, Flavor::Oci).await
    }

    /// An image manifest of `flavor` whose layers hold `contents`, its blobs pushed.
    async fn manifest_of(
        &self,
        repo: &Repository,
        contents: &[&str],
        arch: Option<&str>,
        flavor: Flavor,
    ) -> Vec<u8> {
        let layers: Vec<Vec<u8>> = contents.iter().map(|c| layer_tar(c)).collect();
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|l| tuf_oci::layout::sha256_digest(l))
            .collect();
        let config = serde_json::to_vec(&json!({
            "architecture": arch.unwrap_or("amd64"),
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let (manifest_type, config_type, layer_type) = match flavor {
            Flavor::Oci => (
                MANIFEST_MEDIA_TYPE,
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar",
            ),
            Flavor::Docker => (
                DOCKER_MANIFEST_MEDIA_TYPE,
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
        };
        let config = self
            .client
            .push_blob(repo, config_type, &config)
            .await
            .expect("push config");
        let mut entries = Vec::new();
        for layer in &layers {
            let blob = match flavor {
                Flavor::Oci => layer.clone(),
                Flavor::Docker => {
                    use std::io::Write as _;
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                    gz.write_all(layer).expect("gzip");
                    gz.finish().expect("gzip")
                }
            };
            entries.push(
                self.client
                    .push_blob(repo, layer_type, &blob)
                    .await
                    .expect("push layer"),
            );
        }
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config,
            "layers": entries,
        }))
        .unwrap()
    }
}

/// How an image's manifest and blobs are typed.
#[derive(Debug, Clone, Copy)]
enum Flavor {
    /// OCI's, the layers uncompressed.
    Oci,
    /// Docker's schema 2, as `docker push` stores images, the layers gzipped.
    Docker,
}

/// An uncompressed layer holding `content` as `/hello.txt`, so images unpack for real.
pub fn layer_tar(content: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "hello.txt", content.as_bytes())
        .expect("tar entry");
    builder.into_inner().expect("tar")
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl TestRegistry {
    /// Stores `bytes` as metadata file `name` in `repository`, as the layout does, bypassing
    /// every check: this is what an attacker with registry write access can do.
    pub async fn put_file(&self, repository: &Repository, name: &str, bytes: &[u8]) {
        self.put_file_with_layer(repository, name, bytes, None)
            .await;
    }

    /// Like [`Self::put_file`], with the layer's declared size replaced by `claimed_size`.
    pub async fn put_file_with_layer(
        &self,
        repository: &Repository,
        name: &str,
        bytes: &[u8],
        claimed_size: Option<u64>,
    ) {
        use tuf_oci::layout::{EMPTY_BLOB, EMPTY_MEDIA_TYPE, METADATA_LAYER_MEDIA_TYPE};
        self.client
            .push_blob(repository, EMPTY_MEDIA_TYPE, EMPTY_BLOB)
            .await
            .unwrap();
        let mut layer = self
            .client
            .push_blob(repository, METADATA_LAYER_MEDIA_TYPE, bytes)
            .await
            .unwrap();
        match claimed_size {
            // A manifest made by hand to lie about its layer carries no embedded copy.
            Some(size) => layer.size = size,
            // As writers store it.
            None => layer = tuf_oci::layout::Entry::metadata_layer(bytes),
        }
        let manifest = tuf_oci::layout::metadata_manifest(name, &layer, None);
        self.client
            .push_manifest(&repository.tagged(name), &manifest, MANIFEST_MEDIA_TYPE)
            .await
            .unwrap();
    }

    /// Stores `claim` on version file `file` in `repository`, as a writer about to store that
    /// version does ([`tuf_oci::claim`]).
    pub async fn stake(&self, repository: &Repository, claim: &tuf_oci::claim::Claim, file: &str) {
        use tuf_oci::layout::METADATA_LAYER_MEDIA_TYPE;
        let layer = self
            .client
            .push_blob(repository, METADATA_LAYER_MEDIA_TYPE, b"{}")
            .await
            .unwrap();
        let manifest = tuf_oci::layout::metadata_manifest(file, &layer, None);
        self.client
            .push_manifest(
                &repository.tagged(&claim.tag),
                &manifest,
                MANIFEST_MEDIA_TYPE,
            )
            .await
            .unwrap();
    }

    /// Every blob the registry stores, read from its storage (manifests included: the
    /// registry keeps them as blobs too): what a registry could serve, tagged or not.
    pub fn stored_blobs(&self) -> Vec<Vec<u8>> {
        fn walk(dir: &Path, out: &mut Vec<Vec<u8>>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.file_name().is_some_and(|name| name == "data") {
                    out.push(std::fs::read(&path).expect("a stored blob"));
                }
            }
        }
        let mut out = Vec::new();
        walk(
            &self.dir.path().join("data/docker/registry/v2/blobs"),
            &mut out,
        );
        out
    }

    /// The digest of what `path:tag` tags, if anything.
    pub async fn tagged_digest(&self, path: &str, tag: &str) -> Option<String> {
        self.client
            .manifest(&self.repo(path).tagged(tag), 1 << 20)
            .await
            .unwrap()
            .map(|stored| stored.digest)
    }

    /// Reads metadata file `name` from `repository`.
    pub async fn get_file(&self, repository: &Repository, name: &str) -> Vec<u8> {
        tuf_oci::source::RegistrySource::new(self.client.clone(), repository.clone())
            .fetch_from(repository, name, 64 << 20)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{name} missing in {repository}"))
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    // The kernel may hand a port out again once its listener is gone, before the server it
    // was chosen for binds it: a test process never hands one out twice.
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// Expiries one day (snapshot, timestamp) to a year (root) ahead.
pub fn expiries() -> Expiries {
    let in_days = |days: i64| {
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * days))
            .unwrap()
    };
    Expiries {
        root: in_days(365),
        targets: in_days(90),
        snapshot: in_days(7),
        timestamp: in_days(1),
    }
}

/// A non-terminating delegation of `paths` to `role`, held by `keys` with `threshold`.
pub fn delegation(
    role: &str,
    paths: &[&str],
    keys: &[&SigningKey],
    threshold: u64,
) -> NewDelegation {
    NewDelegation {
        role: role.into(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        keys: keys.iter().map(|k| k.public().clone()).collect(),
        threshold: NonZeroU64::new(threshold).expect("threshold > 0"),
        terminating: false,
    }
}

/// A time in the past, for expired metadata.
pub fn past() -> jiff::Timestamp {
    "2001-01-01T00:00:00Z".parse().unwrap()
}

/// An organisation: top-level keys on disk and a TUF repository in a registry.
pub struct Org {
    /// Where keys live.
    pub dir: TempDir,
    /// The metadata repository.
    pub metadata: Repository,
    /// The trusted root written by init.
    pub root: Vec<u8>,
}

impl Org {
    /// Creates keys and a TUF repository at `metadata`.
    pub async fn init(registry: &TestRegistry, metadata: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = Vec::new();
        for role in ["root", "targets", "snapshot", "timestamp"] {
            keys.push(vec![key(dir.path(), role).await]);
        }
        let mut keys = keys.into_iter();
        let one = NonZeroU64::MIN;
        let top = TopLevelKeys {
            root: (keys.next().unwrap(), one),
            targets: (keys.next().unwrap(), one),
            snapshot: (keys.next().unwrap(), one),
            timestamp: (keys.next().unwrap(), one),
        };
        let metadata = registry.repo(metadata);
        let new = editor::init(&registry.client, &metadata, &top, &expiries())
            .await
            .expect("init");
        let root = new.root().to_vec();
        new.finish(&top, &expiries()).await.expect("init");
        Org {
            dir,
            metadata,
            root,
        }
    }

    /// Loads the key `name` from the organisation's directory (generating it first if new).
    pub async fn key(&self, name: &str) -> SigningKey {
        key(self.dir.path(), name).await
    }

    /// Trust settings: this org's root, the given metadata override, cache in `cache`.
    pub fn trust(
        &self,
        metadata_override: Option<Repository>,
        cache: Option<&Path>,
    ) -> TrustConfig {
        TrustConfig {
            root: self.root.clone(),
            metadata_override,
            cache_dir: cache.map(Path::to_path_buf),
            ..Default::default()
        }
    }

    /// A verifier that follows pointers and keeps trusted metadata in `cache`.
    pub fn verifier(&self, registry: &TestRegistry, cache: &Path) -> Verifier {
        Verifier::new(registry.client.clone(), self.trust(None, Some(cache))).expect("trusted root")
    }

    /// Verifies `reference` (`path:tag` or `path@digest` in `registry`) as a new client would:
    /// following pointers, with an empty trusted-metadata cache.
    pub async fn verify_fresh(
        &self,
        registry: &TestRegistry,
        reference: &str,
    ) -> tuf_oci::Result<tuf_oci::VerifiedTarget> {
        let cache = tempfile::tempdir().expect("temp dir");
        self.verifier(registry, cache.path())
            .verify(&registry.image(reference))
            .await
    }

    /// An editor on the metadata repository (as the administrator).
    pub async fn editor(&self, registry: &TestRegistry) -> Editor {
        self.editor_with(registry.client.clone(), &self.metadata)
            .await
    }

    /// An editor on `metadata` (this org's metadata repository, as `client` reaches it).
    async fn editor_with(&self, client: Registry, metadata: &Repository) -> Editor {
        let admin =
            Verifier::new(client, self.trust(Some(metadata.clone()), None)).expect("trusted root");
        Editor::open(&admin, metadata).await.expect("open editor")
    }

    /// An editor on the metadata repository that reaches its registry at `host`: a proxy in
    /// front of the registry (`crate::hostile`).
    pub async fn editor_through(&self, host: &str) -> Editor {
        let client = Registry::new(&RegistryConfig {
            insecure_hosts: vec![host.to_string()],
            timeout: Duration::from_secs(10),
        })
        .expect("registry client");
        let metadata = Repository {
            registry: host.to_string(),
            path: self.metadata.path.clone(),
        };
        self.editor_with(client, &metadata).await
    }

    /// Adds `delegation` to `parent`, signed with `parent_keys`.
    pub async fn delegate(
        &self,
        registry: &TestRegistry,
        parent: &str,
        parent_keys: &[SigningKey],
        delegation: &NewDelegation,
    ) {
        self.editor(registry)
            .await
            .delegate(parent, delegation, parent_keys, expiries().targets)
            .await
            .expect("delegate");
    }

    /// Signs `image` (a tag) into `role` with `keys`.
    pub async fn sign(
        &self,
        registry: &TestRegistry,
        image: &ImageRef,
        role: &str,
        keys: &[SigningKey],
    ) {
        self.editor(registry)
            .await
            .sign(std::slice::from_ref(image), role, keys, expiries().targets)
            .await
            .expect("sign");
    }

    /// Adds `delegation` to top-level targets, signed with the org's targets key.
    pub async fn delegate_from_targets(&self, registry: &TestRegistry, delegation: &NewDelegation) {
        let keys = self.targets_key().await;
        self.delegate(registry, "targets", &keys, delegation).await;
    }

    /// Signs `reference` (`path:tag` in `registry`) into top-level targets with the org's
    /// targets key.
    pub async fn sign_in_targets(&self, registry: &TestRegistry, reference: &str) {
        let keys = self.targets_key().await;
        self.sign(registry, &registry.image(reference), "targets", &keys)
            .await;
    }

    /// Publishes snapshot and timestamp with the org's online keys and `expires`.
    pub async fn publish_with(&self, registry: &TestRegistry, expires: &Expiries) {
        self.publish_in(&self.editor(registry).await, expires).await;
    }

    /// Publishes with `editor` (one that rotated a role carries on with the new root, as
    /// `tuf-oci rotate` does) and the org's online keys.
    pub async fn publish_in(&self, editor: &Editor, expires: &Expiries) {
        let snapshot = [self.key("snapshot").await];
        let timestamp = [self.key("timestamp").await];
        editor
            .publish(&snapshot, &timestamp, expires)
            .await
            .expect("publish");
    }

    /// Moves the root to a new key, `root-new` (root 2), changing no other role's keys.
    pub async fn rotate_root_keys(&self, registry: &TestRegistry) {
        self.editor(registry)
            .await
            .rotate(
                tough::schema::RoleType::Root,
                &[self.key("root").await],
                &[],
                &[self.key("root-new").await],
                NonZeroU64::MIN,
                &expiries(),
            )
            .await
            .expect("root rotation");
    }

    /// Publishes with default expiries.
    pub async fn publish(&self, registry: &TestRegistry) {
        self.publish_with(registry, &expiries()).await;
    }

    /// The top-level targets key.
    pub async fn targets_key(&self) -> Vec<SigningKey> {
        vec![self.key("targets").await]
    }
}

async fn key(dir: &Path, name: &str) -> SigningKey {
    let stem = dir.join(name);
    if !stem.with_extension("key").exists() {
        tuf_oci::keys::generate(&stem).expect("generate key");
    }
    SigningKey::load(&stem).await.expect("load key")
}

/// A verifier policy protecting `repositories` of `registry` with `org`'s root (written to
/// `dir/root.json`), `unprotected` repositories (if any) let through, everything else denied.
/// `extra` is appended (e.g. `socket = ...`). Returns the policy file.
pub fn write_policy(
    dir: &Path,
    registry: &TestRegistry,
    org: &Org,
    repositories: &[&str],
    unprotected: &[&str],
    extra: &str,
) -> PathBuf {
    write_policy_file(dir, registry, org, repositories, unprotected, extra, "")
}

/// [`write_policy`] for a client given the metadata location together with the root (the
/// scope's `metadata`), the bootstrap of the design: no `tuf-metadata` pointer is read.
pub fn write_bootstrapped_policy(
    dir: &Path,
    registry: &TestRegistry,
    org: &Org,
    repositories: &[&str],
    extra: &str,
) -> PathBuf {
    let metadata = format!(
        "metadata = \"{}/{}\"\n",
        org.metadata.registry, org.metadata.path
    );
    write_policy_file(dir, registry, org, repositories, &[], extra, &metadata)
}

fn write_policy_file(
    dir: &Path,
    registry: &TestRegistry,
    org: &Org,
    repositories: &[&str],
    unprotected: &[&str],
    extra: &str,
    scope_extra: &str,
) -> PathBuf {
    let root = dir.join("root.json");
    std::fs::write(&root, &org.root).expect("root");
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut policy = format!(
        "default = \"deny\"\ncache_dir = \"{cache}\"\ninsecure_registries = [\"{host}\"]\n{extra}\n\
         [[scope]]\nname = \"org\"\nregistries = [\"{host}\"]\nrepositories = [{protected}]\nroot = \"{root}\"\n{scope_extra}",
        cache = dir.join("cache").display(),
        host = registry.host,
        protected = list(repositories),
        root = root.display(),
    );
    // An empty list would unprotect every repository of the registry.
    if !unprotected.is_empty() {
        policy.push_str(&format!(
            "[[unprotected]]\nregistries = [\"{host}\"]\nrepositories = [{unprotected}]\n",
            host = registry.host,
            unprotected = list(unprotected),
        ));
    }
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy).expect("policy");
    path
}

/// `tuf-oci copy SOURCE DESTINATION`, which must succeed.
pub fn tuf_oci_copy(host: &str, source: &str, destination: &str) {
    let out = std::process::Command::new(cli_binary())
        .args(["--insecure-registry", host, "copy", source, destination])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `tuf-oci` binary built beside the test executables.
pub fn cli_binary() -> PathBuf {
    workspace_binary("tuf-oci")
}

/// A process a fixture started, killed and reaped when dropped: a test or a benchmark that
/// panics leaves none running.
#[derive(Debug)]
pub struct Running(Child);

impl Running {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Whether it has ended.
    pub fn ended(&mut self) -> bool {
        self.0.try_wait().unwrap().is_some()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `command`, its logs dropped, and waits until `socket` exists: at most 30 s, and not
/// past the process's end (a server that cannot start would hold the run up for good).
pub async fn listening(mut command: Command, socket: &Path) -> Running {
    let mut running = Running(command.stderr(Stdio::null()).spawn().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            !running.ended(),
            "{command:?} ended before listening on {}",
            socket.display()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "{command:?} did not listen on {} within 30 s",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running
}

/// Starts the front binary, as a node runs it, on `listen` before `containerd`, checking
/// with `policy`, and waits until it listens.
pub async fn start_front(containerd: &Path, listen: &Path, policy: &Path) -> Running {
    let mut front = Command::new(workspace_binary("containerd-tuf-transfer"));
    front
        .arg("--containerd")
        .arg(containerd)
        .arg("--listen")
        .arg(listen)
        .arg("--policy")
        .arg(policy);
    listening(front, listen).await
}

/// Starts `containerd-tuf-verifier serve` with `policy` and waits until it listens on `socket`
/// (the policy's).
pub async fn serve_verifier(policy: &Path, socket: &Path) -> Running {
    let mut service = Command::new(workspace_binary("containerd-tuf-verifier"));
    service.args(["serve", "--policy"]).arg(policy);
    listening(service, socket).await
}

/// Runs an image verifier as containerd does: `command` (the executable and its environment)
/// with the bindir flags for `name` resolved to `descriptor`, the descriptor on stdin. Returns
/// its exit code and stdout.
pub fn run_image_verifier(
    command: &mut std::process::Command,
    name: &str,
    descriptor: &Entry,
) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = command
        .args(["-name", name, "-digest", &descriptor.digest])
        .args([
            "-stdin-media-type",
            "application/vnd.oci.descriptor.v1+json",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("image verifier");
    let json = serde_json::to_vec(descriptor).expect("descriptor");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&json)
        .expect("descriptor on stdin");
    let out = child.wait_with_output().expect("image verifier");
    (
        out.status.code(),
        String::from_utf8(out.stdout).expect("UTF-8 reason"),
    )
}

/// Asserts an image verifier's answer `(exit code, stdout)` is containerd's refusal: exit 1 and
/// one line naming `reason`.
pub fn assert_refused(out: (Option<i32>, String), reason: &str) {
    assert_eq!(out.0, Some(1), "{}", out.1);
    assert!(out.1.contains(reason), "expected {reason:?} in {:?}", out.1);
    assert_eq!(out.1.trim_end().lines().count(), 1, "one line: {:?}", out.1);
}

/// A binary of this workspace, built beside the test executables.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Test executables live in target/<profile>/deps, binaries in target/<profile>.
    let mut dir = exe.parent().expect("executable dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("profile dir");
    }
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} missing: run cargo build --workspace first",
        bin.display()
    );
    bin
}

/// A static HTTP server (python3 -m http.server) on a free loopback port, stopped on drop.
pub struct HttpServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    process: Child,
}

impl HttpServer {
    /// Serves `dir`.
    pub fn serve(dir: &Path) -> Self {
        let port = free_port();
        let process = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let address = format!("127.0.0.1:{port}");
        for _ in 0..200 {
            if std::net::TcpStream::connect(&address).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        HttpServer {
            url: format!("http://{address}"),
            process,
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl TestRegistry {
    /// An OCI layout tar (`docker save`-like archive for `ctr images import`) of the image
    /// `reference` (`path:tag`) as stored in this registry, its index naming it `name`.
    pub async fn oci_archive(&self, path: &str, tag: &str, name: &str) -> Vec<u8> {
        let repo = self.repo(path);
        let manifest = self
            .client
            .manifest(&repo.tagged(tag), 1 << 20)
            .await
            .expect("manifest")
            .expect("image exists");
        let parsed: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
        let mut blobs = vec![(manifest.digest.clone(), manifest.bytes.clone())];
        let mut children = vec![parsed["config"].clone()];
        children.extend(parsed["layers"].as_array().unwrap().iter().cloned());
        for child in children {
            let digest = child["digest"].as_str().unwrap().to_string();
            let size = child["size"].as_u64().unwrap();
            blobs.push((
                digest.clone(),
                self.client.blob(&repo, &digest, size).await.unwrap(),
            ));
        }
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [{
                "mediaType": manifest.media_type,
                "digest": manifest.digest,
                "size": manifest.bytes.len(),
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        }))
        .unwrap();
        let mut archive = tar::Builder::new(Vec::new());
        let mut add = |path: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            archive
                .append_data(&mut header, path, bytes)
                .expect("tar entry");
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        add("index.json", &index);
        for (digest, bytes) in &blobs {
            add(
                &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
                bytes,
            );
        }
        archive.into_inner().expect("tar")
    }
}

/// Waits until a file named `name` exists anywhere under `dir`; panics after 10 s.
pub async fn wait_for_file(dir: &Path, name: &str) {
    fn holds(dir: &Path, name: &str) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let path = entry.path();
            path.file_name().is_some_and(|n| n == name) || (path.is_dir() && holds(&path, name))
        })
    }
    let start = std::time::Instant::now();
    while !holds(dir, name) {
        assert!(
            start.elapsed().as_secs() < 10,
            "no {name} under {} after 10 s",
            dir.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The split-mode scenario most tests share: metadata repository `org/tuf` delegating
/// `team-a/*` to role team-a; `team-a/app:v1` signed by team-a, `team-a/app:v2` pushed but
/// unsigned; `team-a/app` pointing at `../../org/tuf`; everything published.
pub struct TeamA {
    /// The organisation.
    pub org: Org,
    /// team-a/app:v1, signed.
    pub signed: Entry,
    /// team-a/app:v2, unsigned.
    pub unsigned: Entry,
}

impl TeamA {
    /// Builds the scenario in `registry`.
    pub async fn create(registry: &TestRegistry) -> Self {
        let org = Org::init(registry, "org/tuf").await;
        let team = org.key("team-a").await;
        let delegation = delegation("team-a", &["team-a/*"], &[&team], 1);
        org.delegate(registry, "targets", &org.targets_key().await, &delegation)
            .await;
        org.publish(registry).await;
        let signed = registry.push_image("team-a/app", "v1", "signed").await;
        let unsigned = registry.push_image("team-a/app", "v2", "unsigned").await;
        editor::set_pointer(
            &registry.client,
            &registry.repo("team-a/app"),
            "../../org/tuf",
        )
        .await
        .expect("pointer");
        org.sign(
            registry,
            &registry.image("team-a/app:v1"),
            "team-a",
            &[team],
        )
        .await;
        org.publish(registry).await;
        TeamA {
            org,
            signed,
            unsigned,
        }
    }
}

/// The single-repository scenario ([`solo`]), published and verified once by a client that
/// keeps its trusted metadata in the directory returned: where tests of its later updates
/// start.
pub async fn solo_trusted() -> (TestRegistry, Org, tempfile::TempDir) {
    let registry = TestRegistry::start();
    let (org, _) = solo(&registry, true).await;
    let cache = tempfile::tempdir().expect("temp dir");
    org.verifier(&registry, cache.path())
        .verify(&registry.image("solo/app:v1"))
        .await
        .expect("the signed image verifies");
    (registry, org, cache)
}

/// The single-repository scenario: `solo/app` is its own metadata repository and top-level
/// targets signs `solo/app:v1` (returned); published unless `publish` is false.
pub async fn solo(registry: &TestRegistry, publish: bool) -> (Org, Entry) {
    let org = Org::init(registry, "solo/app").await;
    let pushed = registry.push_image("solo/app", "v1", "one").await;
    org.sign_in_targets(registry, "solo/app:v1").await;
    if publish {
        org.publish(registry).await;
    }
    (org, pushed)
}
