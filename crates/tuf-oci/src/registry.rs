//! Registry access through oci-client: credentials from the usual docker `config.json`, plain
//! HTTP only for hosts the user marks insecure, a deadline on every request, size caps on every
//! download, and "not found" told apart from every other failure (TUF 5.3.3 ends the root chain
//! on a missing file, not on a broken one).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::token_cache::RegistryTokenType;
use oci_client::{Client, Reference, RegistryOperation};

use crate::error::{Error, Result};
use crate::layout::{Entry, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, sha256_digest};
use crate::location::Repository;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Hosts (`host:port`) reached over plain HTTP. Everything else uses HTTPS.
    pub insecure_hosts: Vec<String>,
    /// Deadline for each request, so a hanging registry cannot hang a pull.
    pub timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_hosts: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Counts requests and downloaded bytes, for benchmarks and diagnostics.
#[derive(Debug, Default)]
pub struct Traffic {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Traffic {
    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Body bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    fn record(&self, bytes: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Blob content as it arrives, chunk by chunk.
pub type BlobStream = Pin<Box<dyn futures_util::Stream<Item = Result<Bytes>> + Send>>;

/// Wraps `inner` so that more than `limit` bytes, or bytes that do not hash to `digest`, end
/// it with an error naming `what`: nothing unchecked reaches the end of a stream.
pub fn checked(inner: BlobStream, what: String, digest: String, limit: u64) -> BlobStream {
    use sha2::Digest as _;
    struct State {
        inner: BlobStream,
        hasher: sha2::Sha256,
        count: u64,
        what: String,
        digest: String,
        limit: u64,
        finished: bool,
    }
    let state = State {
        inner,
        hasher: sha2::Sha256::new(),
        count: 0,
        what,
        digest,
        limit,
        finished: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        |mut state| async move {
            if state.finished {
                return None;
            }
            match state.inner.next().await {
                Some(Ok(chunk)) => {
                    state.count += chunk.len() as u64;
                    if state.count > state.limit {
                        state.finished = true;
                        let error = Error::TooLarge {
                            what: state.what.clone(),
                            limit: state.limit,
                        };
                        return Some((Err(error), state));
                    }
                    state.hasher.update(&chunk);
                    Some((Ok(chunk), state))
                }
                Some(Err(e)) => {
                    state.finished = true;
                    Some((Err(e), state))
                }
                None => {
                    state.finished = true;
                    let actual = format!("sha256:{}", hex::encode(state.hasher.finalize_reset()));
                    if actual == state.digest {
                        return None;
                    }
                    let error = Error::DigestMismatch {
                        what: state.what.clone(),
                        expected: state.digest.clone(),
                        actual,
                    };
                    Some((Err(error), state))
                }
            }
        },
    ))
}

/// A manifest or index as served, with the digest of its exact bytes.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The bytes as served.
    pub bytes: Vec<u8>,
    /// `sha256:` digest of `bytes`.
    pub digest: String,
    /// The `mediaType` the manifest declares.
    pub media_type: String,
}

impl FetchedManifest {
    /// The descriptor the registry's bytes amount to.
    pub fn entry(&self) -> Entry {
        Entry::of(&self.media_type, &self.bytes)
    }
}

/// A registry client; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    client: Arc<Client>,
    timeout: Duration,
    traffic: Arc<Traffic>,
    /// Where anonymous access needs no token (`GET /v2/` sent no challenge), and the
    /// repositories and operations oci-client has been told so. oci-client caches only
    /// tokens: without this it asks such a registry for one before every request.
    open: Arc<std::sync::Mutex<OpenRegistries>>,
}

/// See [`Registry::open`].
#[derive(Debug, Default)]
struct OpenRegistries {
    hosts: HashSet<String>,
    marked: HashSet<(String, String, bool)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// A client following `config`.
    pub fn new(config: &RegistryConfig) -> Self {
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(config.insecure_hosts.clone()),
            connect_timeout: Some(config.timeout),
            read_timeout: Some(config.timeout),
            // One request per blob: distribution takes a streamed PUT with the length known.
            use_monolithic_push: true,
            ..Default::default()
        });
        Registry {
            client: Arc::new(client),
            timeout: config.timeout,
            traffic: Arc::default(),
            open: Arc::default(),
        }
    }

    /// Requests and bytes this client has used.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Fetches a manifest or index by tag or digest; `None` when the registry says it does not
    /// exist. When `reference` has a digest, oci-client checks the bytes against it.
    pub async fn manifest(
        &self,
        reference: &Reference,
        limit: u64,
    ) -> Result<Option<FetchedManifest>> {
        self.login(reference, RegistryOperation::Pull).await?;
        let pulled = self
            .deadline(reference, async {
                self.client
                    .pull_manifest_raw(
                        reference,
                        &auth_for(reference.registry()),
                        &[MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE],
                    )
                    .await
            })
            .await;
        let (bytes, _) = match pulled {
            Ok(found) => found,
            Err(e) if is_not_found(&e) => {
                self.traffic.record(0);
                return Ok(None);
            }
            Err(e) => return Err(registry_error(reference, &e)),
        };
        self.traffic.record(bytes.len());
        if bytes.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: format!("manifest {}", reference.whole()),
                limit,
            });
        }
        let digest = sha256_digest(&bytes);
        if let Some(expected) = reference.digest()
            && expected != digest
        {
            return Err(Error::DigestMismatch {
                what: reference.whole(),
                expected: expected.to_string(),
                actual: digest,
            });
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
            .ok_or_else(|| Error::Parse {
                role: reference.whole(),
                message: "manifest declares no mediaType".into(),
            })?;
        Ok(Some(FetchedManifest {
            bytes: bytes.to_vec(),
            digest,
            media_type,
        }))
    }

    /// Downloads a blob, refusing more than `limit` bytes (whatever the registry says the size
    /// is) and content that does not hash to `digest`. The whole download is under the deadline.
    pub async fn blob(&self, repository: &Repository, digest: &str, limit: u64) -> Result<Vec<u8>> {
        let reference = repository.digested(digest);
        let download = async {
            let mut stream = self.blob_stream(repository, digest, limit).await?;
            let mut body = Vec::new();
            while let Some(chunk) = stream.next().await {
                body.extend_from_slice(&chunk?);
            }
            Ok::<_, Error>(body)
        };
        let body = tokio::time::timeout(self.timeout, download)
            .await
            .map_err(|_| Error::Registry {
                reference: reference.whole(),
                message: format!("timed out after {} s", self.timeout.as_secs()),
            })??;
        self.traffic.record(body.len());
        Ok(body)
    }

    /// Streams a blob, checked as it goes: more than `limit` bytes, or bytes that do not hash
    /// to `digest`, end the stream with an error. Memory stays bounded by the chunk size.
    pub async fn blob_stream(
        &self,
        repository: &Repository,
        digest: &str,
        limit: u64,
    ) -> Result<BlobStream> {
        let reference = repository.digested(digest);
        let what = format!("blob {digest} in {repository}");
        self.login(&reference, RegistryOperation::Pull).await?;
        let stream = self
            .deadline(&reference, self.client.pull_blob_stream(&reference, digest))
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    Error::NotFound { what: what.clone() }
                } else {
                    registry_error(&reference, &e)
                }
            })?;
        if stream.content_length.is_some_and(|len| len > limit) {
            return Err(Error::TooLarge { what, limit });
        }
        let whole = reference.whole();
        let inner = stream.stream.map(move |chunk| {
            chunk.map_err(|e| Error::Registry {
                reference: whole.clone(),
                message: e.to_string(),
            })
        });
        Ok(checked(Box::pin(inner), what, digest.to_string(), limit))
    }

    /// Uploads a blob from a stream of `size` bytes (one monolithic upload) unless the
    /// repository has it.
    pub async fn push_blob_stream(
        &self,
        repository: &Repository,
        digest: &str,
        size: u64,
        data: BlobStream,
    ) -> Result<()> {
        let reference = repository.digested(digest);
        self.login(&reference, RegistryOperation::Push).await?;
        if self.blob_exists(&reference, digest).await? {
            return Ok(());
        }
        let data = data.map(|chunk| {
            chunk.map_err(|e| OciDistributionError::GenericError(Some(e.to_string())))
        });
        self.client
            .push_blob_stream(&reference, data, digest, Some(size))
            .await
            .map_err(|e| registry_error(&reference, &e))?;
        self.traffic.record(0);
        Ok(())
    }

    /// Mounts blob `digest` from repository `from` of the same registry (no data moves).
    /// Returns whether the blob is now there.
    pub async fn mount(
        &self,
        repository: &Repository,
        from: &Repository,
        digest: &str,
    ) -> Result<bool> {
        let reference = repository.digested(digest);
        self.login(&reference, RegistryOperation::Push).await?;
        let mounted = self
            .deadline(
                &reference,
                self.client
                    .mount_blob(&reference, &from.digested(digest), digest),
            )
            .await;
        self.traffic.record(0);
        match mounted {
            Ok(()) => self.has_blob(repository, digest).await,
            Err(_) => Ok(false),
        }
    }

    /// Whether the repository has blob `digest`.
    pub async fn has_blob(&self, repository: &Repository, digest: &str) -> Result<bool> {
        let reference = repository.digested(digest);
        self.login(&reference, RegistryOperation::Pull).await?;
        self.blob_exists(&reference, digest).await
    }

    /// The existence check itself, for callers that already logged in (a push login covers it).
    async fn blob_exists(&self, reference: &Reference, digest: &str) -> Result<bool> {
        let exists = self
            .deadline(reference, self.client.blob_exists(reference, digest))
            .await
            .map_err(|e| registry_error(reference, &e))?;
        self.traffic.record(0);
        Ok(exists)
    }

    /// Uploads `bytes` as a blob unless the repository already has it.
    pub async fn push_blob(
        &self,
        repository: &Repository,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Entry> {
        let entry = Entry::of(media_type, bytes);
        let reference = repository.digested(&entry.digest);
        self.login(&reference, RegistryOperation::Push).await?;
        if !self.blob_exists(&reference, &entry.digest).await? {
            self.deadline(
                &reference,
                self.client
                    .push_blob(&reference, bytes.to_vec(), &entry.digest),
            )
            .await
            .map_err(|e| registry_error(&reference, &e))?;
        }
        self.traffic.record(0);
        Ok(entry)
    }

    /// Uploads a manifest or index under `reference` (a tag or its digest); returns its digest.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Entry> {
        self.login(reference, RegistryOperation::Push).await?;
        let content_type = media_type
            .parse()
            .map_err(|_| Error::Usage(format!("bad media type {media_type}")))?;
        self.deadline(
            reference,
            self.client
                .push_manifest_raw(reference, bytes.to_vec(), content_type),
        )
        .await
        .map_err(|e| registry_error(reference, &e))?;
        self.traffic.record(0);
        Ok(Entry::of(media_type, bytes))
    }

    /// Lists a repository's tags (empty when the repository does not exist).
    pub async fn tags(&self, repository: &Repository) -> Result<Vec<String>> {
        let reference = repository.tagged("latest");
        self.login(&reference, RegistryOperation::Pull).await?;
        let listed = self
            .deadline(&reference, async {
                self.client
                    .list_tags(&reference, &auth_for(&repository.registry), None, None)
                    .await
            })
            .await;
        self.traffic.record(0);
        match listed {
            Ok(response) => Ok(response.tags),
            Err(e) if is_not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(registry_error(&reference, &e)),
        }
    }

    /// Stores credentials for the reference's registry; token exchanges happen here, once.
    async fn login(&self, reference: &Reference, operation: RegistryOperation) -> Result<()> {
        let auth = auth_for(reference.registry());
        if matches!(auth, RegistryAuth::Anonymous) {
            return self.login_anonymous(reference, operation).await;
        }
        self.deadline(reference, self.client.auth(reference, &auth, operation))
            .await
            .map(|_| ())
            .map_err(|e| registry_error(reference, &e))
    }

    /// Anonymous access: the registry is asked once whether it wants a token (`GET /v2/`). If
    /// it does, oci-client fetches and caches tokens as usual. If it does not, oci-client is
    /// given an empty credential for each repository and operation, which such a registry
    /// ignores, so it stops asking before every request.
    async fn login_anonymous(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
    ) -> Result<()> {
        let host = reference.registry().to_string();
        let known_open = self
            .open
            .lock()
            .expect("not poisoned")
            .hosts
            .contains(&host);
        if !known_open {
            let auth = RegistryAuth::Anonymous;
            let token = self
                .deadline(reference, self.client.auth(reference, &auth, operation))
                .await
                .map_err(|e| registry_error(reference, &e))?;
            self.traffic.record(0);
            if token.is_some() {
                return Ok(());
            }
            self.open
                .lock()
                .expect("not poisoned")
                .hosts
                .insert(host.clone());
        }
        let key = (
            host,
            reference.repository().to_string(),
            matches!(operation, RegistryOperation::Push),
        );
        if self.open.lock().expect("not poisoned").marked.insert(key) {
            let none = RegistryTokenType::Basic(String::new(), String::new());
            self.client.tokens.insert(reference, operation, none).await;
        }
        Ok(())
    }

    /// Runs a request under the configured deadline.
    async fn deadline<T>(
        &self,
        reference: &Reference,
        request: impl Future<Output = Result<T, OciDistributionError>>,
    ) -> Result<T, OciDistributionError> {
        tokio::time::timeout(self.timeout, request)
            .await
            .unwrap_or_else(|_| {
                Err(OciDistributionError::GenericError(Some(format!(
                    "{} timed out after {} s",
                    reference.whole(),
                    self.timeout.as_secs()
                ))))
            })
    }
}

/// Credentials for `registry` from docker's `config.json` (or a credential helper it names);
/// anonymous when there are none.
fn auth_for(registry: &str) -> RegistryAuth {
    match docker_credential::get_credential(registry) {
        Ok(docker_credential::DockerCredential::UsernamePassword(user, password)) => {
            RegistryAuth::Basic(user, password)
        }
        Ok(docker_credential::DockerCredential::IdentityToken(token)) => {
            RegistryAuth::Bearer(token)
        }
        Err(_) => RegistryAuth::Anonymous,
    }
}

fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

/// The error with its causes (`error sending request …: operation timed out`): HTTP errors
/// keep the useful part in their sources.
fn registry_error(reference: &Reference, error: &OciDistributionError) -> Error {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    Error::Registry {
        reference: reference.whole(),
        message,
    }
}
