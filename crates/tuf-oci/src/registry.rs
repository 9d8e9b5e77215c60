//! Registry access: credentials from the usual docker `config.json`, sent only as a registry
//! asks for them, plain HTTP only for hosts the user marks insecure, a deadline on every
//! request, size caps on every download, and "not found" told apart from every other failure
//! (TUF 5.3.3 ends the root chain on a missing file, not on a broken one). Reads (manifests,
//! tag listings, blobs) are the project's own requests (`registry/reads.rs`), cut at their
//! limits as they arrive, and so is the token exchange; oci-client writes.

mod reads;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::token_cache::{RegistryToken, RegistryTokenType};
use oci_client::{Client, Reference, RegistryOperation};

use crate::error::{Error, Result, causes};
use crate::grammar;
use crate::layout::{
    Entry, MANIFEST_MEDIA_TYPES, NO_MEDIA_TYPE, manifest_media_type, sha256_digest,
};
use crate::location::Repository;
use reads::{Authorization, Challenge, Exceeded, Reads, TagPageAt};

/// Most tags read from one repository. Every role version is a tag of the metadata repository,
/// so years of hourly timestamps stay far below this; a registry inventing tags page after
/// page is cut here.
const MAX_TAGS: usize = 1_000_000;

/// Most bytes of one answer to a tag listing: a million tags of the metadata repository's
/// names fit in it.
const TAG_PAGE_LIMIT: u64 = 64 * 1024 * 1024;

/// Most bytes of a whole tag listing, all its pages together.
const MAX_LISTING_BYTES: u64 = 2 * TAG_PAGE_LIMIT;

/// Most pages of one tag listing: a million tags in pages of a hundred.
const MAX_TAG_PAGES: usize = MAX_TAGS / 100;

/// Pauses before trying a request again after a server error.
const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(250)];

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
        self.received(bytes);
    }
    /// Body bytes of a response still arriving (a streamed blob).
    fn received(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// The least average throughput of a streamed blob beyond the request deadline: a blob of
/// `n` bytes must arrive within the deadline plus a second per 64 KiB, so a registry that
/// trickles bytes just inside the read timeout cannot hold a pull or a copy open for ever.
const MIN_BYTES_PER_SECOND: u64 = 64 * 1024;

/// Blob content as it arrives, chunk by chunk.
pub type BlobStream = Pin<Box<dyn futures_util::Stream<Item = Result<Bytes>> + Send>>;

/// Ends `inner` with an error naming `reference` when it has not ended by `deadline`
/// (`allowed` after its request started).
fn within(
    inner: BlobStream,
    reference: String,
    deadline: tokio::time::Instant,
    allowed: Duration,
) -> BlobStream {
    Box::pin(futures_util::stream::unfold(Some(inner), move |inner| {
        let reference = reference.clone();
        async move {
            let mut inner = inner?;
            match tokio::time::timeout_at(deadline, inner.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(inner))),
                Ok(None) => None,
                Err(_) => {
                    let message = format!(
                        "timed out after {} s (the request deadline and a second per 64 KiB)",
                        allowed.as_secs()
                    );
                    Some((Err(Error::Registry { reference, message }), None))
                }
            }
        }
    }))
}

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
    /// Its media type ([`manifest_media_type`]).
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
    /// oci-client, for writes, set up at its first use ([`Registry::oci`]).
    client: Arc<tokio::sync::OnceCell<Client>>,
    insecure_hosts: Vec<String>,
    /// Manifests, tag listings and blobs, read against their limits (oci-client reads
    /// manifests and tag listings whole), and the token exchange.
    reads: Arc<Reads>,
    timeout: Duration,
    traffic: Arc<Traffic>,
    /// How requests are authorized, per registry and scope.
    access: Arc<std::sync::Mutex<Access>>,
    /// Where credentials come from: the docker configuration ([`auth_for`]); tests give a
    /// reader of their own.
    credential_source: CredentialSource,
}

/// Reads a registry's credentials (may block, for as long as a credential helper runs).
type CredentialSource = Arc<dyn Fn(&str) -> Credentials + Send + Sync>;

/// What reading a registry's credentials found: none is `Anonymous`; a configuration that
/// names credentials but cannot give them (a helper failing, a `config.json` that is no JSON)
/// is the reason, so that requests fail saying so rather than go anonymous and meet a 401.
type Credentials = std::result::Result<RegistryAuth, String>;

/// How long credentials read from the docker configuration are used before it is read again:
/// a credential helper it names is a process started for each read.
const CREDENTIALS_REUSE: Duration = Duration::from_secs(60);

/// How long a credential helper that has not answered is left to run before another is
/// started for its registry: one waiting for ever (for a passphrase no one types) is not
/// started again for every request, and one the user fixed is asked again in time.
const HELPER_PATIENCE: Duration = Duration::from_secs(600);

/// How long a token is used before another is asked for. The token specification's default
/// lifetime is 60 s (`expires_in`); most registries give 300 s. Asked for again in time, a
/// token never dies in the middle of a streamed upload, which cannot be sent twice.
const TOKEN_REUSE: Duration = Duration::from_secs(45);

/// How each scope is authorized, found once and kept until the registry answers 401 (a token
/// for [`TOKEN_REUSE`] at most). Anonymous reads do not ask first: oci-client would ask the
/// registry whether it wants a token (`GET /v2/`) before every request to a scope with no
/// cached token. A registry without auth ignores the absence of a credential; one that wants
/// tokens answers 401, and from then on its scopes get the token exchange (see
/// [`Registry::call`]). Configured credentials are sent only as the registry's challenge asks
/// for them ([`Registry::authorize`]).
#[derive(Debug, Default)]
struct Access {
    /// Registries that answered 401 to anonymous requests.
    refused_anonymous: HashSet<String>,
    /// Scopes (registry, repository, push) set up, with their authorization and when it was
    /// found.
    ready: HashMap<Scope, (Authorization, tokio::time::Instant)>,
    /// Credentials read from the docker configuration, per registry.
    credentials: HashMap<String, Found>,
    /// Registries whose credentials are being read (a credential helper may be running):
    /// another read is started only after [`HELPER_PATIENCE`].
    reading: HashMap<String, CredentialRead>,
    /// One lock per registry, held while a scope's authorization is found (a look at the
    /// registry's challenge, a token exchange): concurrent first requests to a scope share
    /// it, and a registry that hangs there holds up no other.
    finding: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// Credentials read from the docker configuration ([`Registry::credentials_for`]).
#[derive(Debug)]
struct Found {
    auth: Credentials,
    /// When the read ended: they are used for [`CREDENTIALS_REUSE`] from then.
    read_at: tokio::time::Instant,
    /// When the read started: a slow read ending after a later one keeps its answer out.
    started: tokio::time::Instant,
}

/// A read of a registry's credentials under way ([`Registry::credentials_for`]).
#[derive(Debug)]
struct CredentialRead {
    /// When it started.
    started: tokio::time::Instant,
    /// What it found, once it has.
    answer: tokio::sync::watch::Receiver<Option<Credentials>>,
}

/// An authorization scope: registry, repository, and whether it is for pushing.
type Scope = (String, String, bool);

impl Access {
    /// The scope's authorization, unless it is a token past [`TOKEN_REUSE`].
    fn current(&self, scope: &Scope) -> Option<Authorization> {
        let (authorization, found) = self.ready.get(scope)?;
        let stale =
            matches!(authorization, Authorization::Bearer(_)) && found.elapsed() >= TOKEN_REUSE;
        (!stale).then(|| authorization.clone())
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// A client following `config`. The system's CA certificates are read when a registry is
    /// first reached over HTTPS, or oci-client first used ([`Registry::oci`]); a registry
    /// reached over plain HTTP whose manifests are all a verification reads needs none.
    pub fn new(config: &RegistryConfig) -> Result<Self> {
        // A list as typed (`a:5000, b:5000`) means `a:5000` and `b:5000`. Hosts are compared
        // ignoring case; oci-client compares them exactly, so it is given both spellings.
        let mut insecure_hosts: Vec<String> = Vec::new();
        for host in config.insecure_hosts.iter().map(|host| host.trim()) {
            for spelt in [host.to_string(), host.to_ascii_lowercase()] {
                if !spelt.is_empty() && !insecure_hosts.contains(&spelt) {
                    insecure_hosts.push(spelt);
                }
            }
        }
        let reads =
            Reads::new(insecure_hosts.clone(), config.timeout).map_err(|e| Error::ClientSetup {
                message: causes(&e),
            })?;
        Ok(Registry {
            client: Arc::default(),
            insecure_hosts,
            reads: Arc::new(reads),
            timeout: config.timeout,
            traffic: Arc::default(),
            access: Arc::default(),
            credential_source: Arc::new(auth_for),
        })
    }

    /// Requests and bytes this client has used.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// oci-client, set up at its first use: it builds two TLS clients, each reading the
    /// system's CA certificates (milliseconds a verification reading only manifests need not
    /// pay), even for registries reached over plain HTTP. A failure to set it up (no CA
    /// certificates) fails the request that needed it, naming the cause, and the next one
    /// tries again.
    async fn oci(&self) -> std::result::Result<&Client, OciDistributionError> {
        self.client
            .get_or_try_init(|| async {
                // Not `Client::new`: on failure it falls back on a client without this
                // protocol and these timeouts, which it then cannot build either, and panics.
                Client::try_from(ClientConfig {
                    protocol: ClientProtocol::HttpsExcept(self.insecure_hosts.clone()),
                    connect_timeout: Some(self.timeout),
                    read_timeout: Some(self.timeout),
                    // One request per blob: distribution takes a streamed PUT with the length
                    // known.
                    use_monolithic_push: true,
                    ..Default::default()
                })
                .map_err(|e| setup_failed(&message_of(&e)))
            })
            .await
    }

    /// oci-client with the scope's authorization in its token cache, as it is now (not as it
    /// was when the request began: a stale one would overwrite the token a concurrent request
    /// just obtained). A scope that needs no credential is given an empty user and password
    /// (`Authorization: Basic Og==`, which a registry without auth ignores): without it,
    /// oci-client would ask `GET /v2/` before each request.
    async fn oci_for(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
        authorization: &Authorization,
    ) -> std::result::Result<&Client, OciDistributionError> {
        let client = self.oci().await?;
        let current = self
            .access
            .lock()
            .expect("not poisoned")
            .current(&scope(reference, operation))
            .unwrap_or_else(|| authorization.clone());
        let token = match current {
            Authorization::None => RegistryTokenType::Basic(String::new(), String::new()),
            Authorization::Basic(user, password) => RegistryTokenType::Basic(user, password),
            Authorization::Bearer(token) => {
                RegistryTokenType::Bearer(RegistryToken::Token { token })
            }
        };
        // oci-client checks a blob's existence with the pull scope's credentials, also before
        // a push: the push scope's grant pulling too.
        if matches!(operation, RegistryOperation::Push) {
            let pull = RegistryOperation::Pull;
            client.tokens.insert(reference, pull, token.clone()).await;
        }
        client.tokens.insert(reference, operation, token).await;
        // oci-client consults its token cache only for registries it holds a credential for;
        // ours is in the cache, so an anonymous one will do.
        client
            .store_auth_if_needed(reference.resolve_registry(), &RegistryAuth::Anonymous)
            .await;
        Ok(client)
    }

    /// Fetches a manifest or index by tag or digest; `None` when the registry says it does not
    /// exist. More than `limit` bytes are not read: the answer is refused as it arrives.
    pub async fn manifest(
        &self,
        reference: &Reference,
        limit: u64,
    ) -> Result<Option<FetchedManifest>> {
        let media_types = MANIFEST_MEDIA_TYPES;
        let pulled = self
            .call(
                reference,
                RegistryOperation::Pull,
                |authorization| async move {
                    let read = self
                        .reads
                        .manifest(reference, &media_types, &authorization, limit);
                    read.await
                },
            )
            .await;
        let bytes = match pulled {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(Exceeded)) => {
                self.traffic.record(0);
                return Err(Error::TooLarge {
                    what: format!("manifest {}", reference.whole()),
                    limit,
                });
            }
            Err(e) if is_not_found(&e) => {
                self.traffic.record(0);
                return Ok(None);
            }
            Err(e) => return Err(registry_error(reference, &e)),
        };
        self.traffic.record(bytes.len());
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
        let media_type = manifest_media_type(&bytes).ok_or_else(|| Error::Parse {
            role: reference.whole(),
            message: NO_MEDIA_TYPE.into(),
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
        let started = tokio::time::Instant::now();
        let reference = repository.digested(digest);
        let what = format!("blob {digest} in {repository}");
        let stream = self
            .call(&reference, RegistryOperation::Pull, |authorization| {
                let reference = &reference;
                async move { self.reads.blob(reference, digest, &authorization).await }
            })
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    self.traffic.record(0);
                    Error::NotFound { what: what.clone() }
                } else {
                    registry_error(&reference, &e)
                }
            })?;
        self.traffic.record(0);
        if stream.content_length().is_some_and(|len| len > limit) {
            return Err(Error::TooLarge { what, limit });
        }
        let whole = reference.whole();
        let traffic = Arc::clone(&self.traffic);
        let inner = stream.bytes_stream().map(move |chunk| {
            let chunk = chunk.map_err(|e| Error::Registry {
                reference: whole.clone(),
                message: causes(&e),
            })?;
            traffic.received(chunk.len());
            Ok(chunk)
        });
        let allowed = self.timeout + Duration::from_secs(limit / MIN_BYTES_PER_SECOND);
        let inner = match started.checked_add(allowed) {
            Some(deadline) => within(Box::pin(inner), reference.whole(), deadline, allowed),
            None => Box::pin(inner),
        };
        Ok(checked(inner, what, digest.to_string(), limit))
    }

    /// Uploads a blob from a stream of `size` bytes (one monolithic upload). Callers check
    /// first that the repository lacks it ([`Registry::has_blob`]): a stream cannot be sent
    /// twice, so this one request is not retried.
    pub async fn push_blob_stream(
        &self,
        repository: &Repository,
        digest: &str,
        size: u64,
        data: BlobStream,
    ) -> Result<()> {
        let reference = repository.digested(digest);
        let operation = RegistryOperation::Push;
        let client = async {
            let auth = self.credentials_for(&repository.registry).await?;
            let authorization = self.login(&reference, operation, &auth).await?;
            self.oci_for(&reference, operation, &authorization).await
        }
        .await
        .map_err(|e| registry_error(&reference, &e))?;
        let data = data.map(|chunk| {
            chunk.map_err(|e| OciDistributionError::GenericError(Some(e.to_string())))
        });
        // Not under the deadline: a large blob takes as long as it takes.
        guarded(
            &reference,
            client.push_blob_stream(&reference, data, digest, Some(size)),
        )
        .await
        .map_err(|e| registry_error(&reference, &e))?;
        self.traffic.record(0);
        Ok(())
    }

    /// Mounts blob `digest` from repository `from` of the same registry (no data moves).
    /// Returns whether the blob is now there. Where pushing takes a token, with one granting
    /// both repositories ([`Registry::mount_with_token`]): the push scope's token names its
    /// repository alone, and a mount refused with it would have it thrown away and asked for
    /// again, for every blob.
    pub async fn mount(
        &self,
        repository: &Repository,
        from: &Repository,
        digest: &str,
    ) -> Result<bool> {
        let reference = repository.digested(digest);
        let source = from.digested(digest);
        let auth = self
            .credentials_for(reference.registry())
            .await
            .map_err(|e| registry_error(&reference, &e))?;
        let authorization = self
            .login(&reference, RegistryOperation::Push, &auth)
            .await
            .map_err(|e| registry_error(&reference, &e))?;
        if matches!(authorization, Authorization::Bearer(_)) {
            let mounted = self.mount_with_token(&reference, from, digest, &auth).await;
            self.traffic.record(0);
            return match mounted {
                Ok(true) => self.has_blob(repository, digest).await,
                _ => Ok(false),
            };
        }
        let mounted = self
            .call(&reference, RegistryOperation::Push, |authorization| {
                let (reference, source) = (&reference, &source);
                async move {
                    let client = self
                        .oci_for(reference, RegistryOperation::Push, &authorization)
                        .await?;
                    client.mount_blob(reference, source, digest).await
                }
            })
            .await;
        self.traffic.record(0);
        match mounted {
            Ok(()) => self.has_blob(repository, digest).await,
            Err(_) => Ok(false),
        }
    }

    /// Whether the repository has blob `digest`.
    pub async fn has_blob(&self, repository: &Repository, digest: &str) -> Result<bool> {
        self.blob_exists(&repository.digested(digest), RegistryOperation::Pull)
            .await
    }

    /// The existence check itself, in the scope of `operation` (a push's check is made with
    /// the push's credentials).
    async fn blob_exists(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
    ) -> Result<bool> {
        let digest = reference.digest().unwrap_or_default();
        let exists = self
            .call(reference, operation, |authorization| async move {
                let client = self.oci_for(reference, operation, &authorization).await?;
                client.blob_exists(reference, digest).await
            })
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
        if !self
            .blob_exists(&reference, RegistryOperation::Push)
            .await?
        {
            self.call(&reference, RegistryOperation::Push, |authorization| {
                let (reference, digest) = (&reference, &entry.digest);
                async move {
                    let client = self
                        .oci_for(reference, RegistryOperation::Push, &authorization)
                        .await?;
                    client.push_blob(reference, bytes.to_vec(), digest).await
                }
            })
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
        let content_type: http::HeaderValue = media_type
            .parse()
            .map_err(|_| Error::Usage(format!("bad media type {media_type}")))?;
        self.call(reference, RegistryOperation::Push, |authorization| {
            let content_type = content_type.clone();
            async move {
                let client = self
                    .oci_for(reference, RegistryOperation::Push, &authorization)
                    .await?;
                client
                    .push_manifest_raw(reference, bytes.to_vec(), content_type)
                    .await
            }
        })
        .await
        .map_err(|e| registry_error(reference, &e))?;
        self.traffic.record(0);
        Ok(Entry::of(media_type, bytes))
    }

    /// Lists a repository's tags (empty when the repository does not exist), sorted. A
    /// registry may answer in pages (OCI distribution spec, "Listing Tags"): the listing
    /// follows each page's `Link` to the next, and after a page without one asks again after
    /// the last tag received, until an answer brings nothing new; a registry that answers
    /// everything at once costs one more request, which finds nothing. A listing that cannot
    /// be read whole (a later page missing, a `Link` that leads back) is an error: writers
    /// rely on it to find what others stored.
    pub async fn tags(&self, repository: &Repository) -> Result<Vec<String>> {
        let reference = repository.tagged("latest");
        let failed = |message: String| Error::Registry {
            reference: reference.whole(),
            message,
        };
        let mut tags = std::collections::BTreeSet::new();
        let (mut at, mut pages, mut bytes) = (TagPageAt::First, 0usize, 0usize);
        loop {
            pages += 1;
            if pages > MAX_TAG_PAGES {
                return Err(failed(format!(
                    "the tag listing goes on past {MAX_TAG_PAGES} pages"
                )));
            }
            let listed = self
                .call(&reference, RegistryOperation::Pull, |authorization| {
                    let (reference, at) = (&reference, &at);
                    async move {
                        let read = self
                            .reads
                            .tags(reference, at, &authorization, TAG_PAGE_LIMIT);
                        read.await
                    }
                })
                .await;
            let (body, next) = match listed {
                Ok(Ok(page)) => page,
                Ok(Err(Exceeded)) => {
                    self.traffic.record(0);
                    return Err(Error::TooLarge {
                        what: format!("a tag listing of {}", reference.repository()),
                        limit: TAG_PAGE_LIMIT,
                    });
                }
                Err(e) if is_not_found(&e) && matches!(at, TagPageAt::First) => {
                    self.traffic.record(0);
                    return Ok(Vec::new());
                }
                Err(e) if is_not_found(&e) => {
                    self.traffic.record(0);
                    return Err(failed(format!(
                        "page {pages} of the tag listing was not found, so the listing \
                         cannot be read whole: {}",
                        causes(&e)
                    )));
                }
                Err(e) => return Err(registry_error(&reference, &e)),
            };
            self.traffic.record(body.len());
            bytes = bytes.saturating_add(body.len());
            if bytes as u64 > MAX_LISTING_BYTES {
                return Err(Error::TooLarge {
                    what: format!("the tag listing of {}", reference.repository()),
                    limit: MAX_LISTING_BYTES,
                });
            }
            let page = tag_page(&reference, &body)?;
            // Listed names go into request paths (copies read and write every tag): a name
            // like `x/../../other/manifests/t` would reach another repository.
            if let Some(bad) = page.iter().find(|tag| grammar::check_tag(tag).is_err()) {
                return Err(failed(format!(
                    "tag listing names {bad:?}, which is not a valid tag"
                )));
            }
            let before = tags.len();
            tags.extend(page);
            // One that keeps inventing new ones is stopped.
            if tags.len() > MAX_TAGS {
                return Err(failed(format!(
                    "the tag listing goes on past {MAX_TAGS} tags"
                )));
            }
            let followed = matches!(at, TagPageAt::Link(_));
            at = match next {
                Some(_) if followed && tags.len() == before => {
                    return Err(failed(
                        "the tag listing's next page brings no tag not listed before: its \
                         pages lead back"
                            .into(),
                    ));
                }
                // The end, or a registry ignoring `last` answering tags already listed.
                _ if tags.len() == before => return Ok(tags.into_iter().collect()),
                Some(next) => TagPageAt::Link(next),
                None => TagPageAt::After(tags.last().cloned().unwrap_or_default()),
            };
        }
    }

    /// Runs `request` under the deadline with its scope's credentials in place. A registry
    /// that answers 401 (taken for one without auth, a token that expired) has the scope's
    /// authorization found again, and the request is sent once more. Requests that meet a
    /// server error are tried again after a pause ([`RETRY_PAUSES`]). oci-client's requests
    /// find the authorization in its token cache, the project's own reads ([`Reads`]) are
    /// handed it.
    async fn call<T, F>(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
        request: impl Fn(Authorization) -> F,
    ) -> std::result::Result<T, OciDistributionError>
    where
        F: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        let auth = self.credentials_for(reference.registry()).await?;
        let mut authorization = self.login(reference, operation, &auth).await?;
        let mut answer = self
            .deadline(reference, request(authorization.clone()))
            .await;
        if answer.as_ref().is_err_and(is_unauthorized) {
            self.unauthorized(reference, operation, &auth, &authorization);
            self.traffic.record(0);
            authorization = self.login(reference, operation, &auth).await?;
            answer = self
                .deadline(reference, request(authorization.clone()))
                .await;
        }
        self.retried(reference, answer, || request(authorization.clone()))
            .await
    }

    /// `answer`, or while it is a server error, the answer to `send` after a pause
    /// ([`RETRY_PAUSES`]).
    async fn retried<T, F>(
        &self,
        reference: &Reference,
        mut answer: std::result::Result<T, OciDistributionError>,
        send: impl Fn() -> F,
    ) -> std::result::Result<T, OciDistributionError>
    where
        F: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        for pause in RETRY_PAUSES {
            if !answer.as_ref().is_err_and(is_server_error) {
                break;
            }
            self.traffic.record(0);
            tokio::time::sleep(pause).await;
            answer = self.deadline(reference, send()).await;
        }
        answer
    }

    /// The docker configuration's credentials for `registry` ([`auth_for`]), read again after
    /// [`CREDENTIALS_REUSE`], once for concurrent requests, on a thread of its own. A
    /// credential helper is a process, and one may wait for ever (for a passphrase no one
    /// types): the requests waiting for a read fail, naming it, once it has run for the
    /// request deadline; no other is started for [`HELPER_PATIENCE`], and its answer, when it
    /// comes, is used.
    async fn credentials_for(
        &self,
        registry: &str,
    ) -> std::result::Result<RegistryAuth, OciDistributionError> {
        let fresh = |access: &Access| {
            let found = access.credentials.get(registry)?;
            (found.read_at.elapsed() < CREDENTIALS_REUSE).then(|| found.auth.clone())
        };
        let (started, mut answer, to_start) = {
            let mut access = self.access.lock().expect("not poisoned");
            if let Some(found) = fresh(&access) {
                return found.map_err(|reason| OciDistributionError::GenericError(Some(reason)));
            }
            match access.reading.get(registry) {
                Some(read) if read.started.elapsed() < HELPER_PATIENCE => {
                    (read.started, read.answer.clone(), None)
                }
                _ => {
                    let started = tokio::time::Instant::now();
                    let (sender, answer) = tokio::sync::watch::channel(None);
                    let read = CredentialRead {
                        started,
                        answer: answer.clone(),
                    };
                    access.reading.insert(registry.to_string(), read);
                    (started, answer, Some(sender))
                }
            }
        };
        if let Some(sender) = to_start
            && !self.read_credentials(registry, started, sender)
        {
            // No thread to read them on: as no credentials.
            return Ok(RegistryAuth::Anonymous);
        }
        let answered = answer.wait_for(Option::is_some);
        let found = match tokio::time::timeout_at(started + self.timeout, answered).await {
            Ok(Ok(found)) => found.clone().unwrap_or(Ok(RegistryAuth::Anonymous)),
            // The reading thread ended without an answer (it panicked): as no credentials.
            Ok(Err(_)) => Ok(RegistryAuth::Anonymous),
            Err(_) => {
                // Unless it answered just now.
                let access = self.access.lock().expect("not poisoned");
                fresh(&access).unwrap_or_else(|| {
                    Err(format!(
                        "the credential helper the docker configuration names for {registry} \
                         did not answer within {} s",
                        self.timeout.as_secs()
                    ))
                })
            }
        };
        found.map_err(|reason| OciDistributionError::GenericError(Some(reason)))
    }

    /// Starts the read marked `started` in [`Access::reading`]: [`Registry::credential_source`]
    /// ([`auth_for`]) on a thread of
    /// its own (not a blocking task of the runtime: a runtime shutting down waits for those,
    /// and a process would not end before its hung helper did), which stores what it finds
    /// unless a later read stored first, ends the mark if it is still this read's, and sends
    /// the answer. Whether the thread started (the mark is gone when it did not).
    fn read_credentials(
        &self,
        registry: &str,
        started: tokio::time::Instant,
        sender: tokio::sync::watch::Sender<Option<Credentials>>,
    ) -> bool {
        /// Ends the read's mark however its thread ends (a panic while reading included), if
        /// the mark is still this read's.
        struct Mark {
            access: Arc<std::sync::Mutex<Access>>,
            registry: String,
            started: tokio::time::Instant,
            /// Dropped after the mark is ended: a request woken by a read that ended without
            /// an answer finds no mark, and reads again.
            sender: tokio::sync::watch::Sender<Option<Credentials>>,
        }
        impl Drop for Mark {
            fn drop(&mut self) {
                if let Ok(mut access) = self.access.lock()
                    && access
                        .reading
                        .get(&self.registry)
                        .is_some_and(|read| read.started == self.started)
                {
                    access.reading.remove(&self.registry);
                }
            }
        }
        let source = Arc::clone(&self.credential_source);
        let mark = Mark {
            access: Arc::clone(&self.access),
            registry: registry.to_string(),
            started,
            sender,
        };
        std::thread::Builder::new()
            .name("docker-credentials".into())
            .spawn(move || {
                let auth = source(&mark.registry);
                let read_at = tokio::time::Instant::now();
                let mut access = mark.access.lock().expect("not poisoned");
                if access
                    .credentials
                    .get(&mark.registry)
                    .is_none_or(|found| found.started < started)
                {
                    let found = Found {
                        auth: auth.clone(),
                        read_at,
                        started,
                    };
                    access.credentials.insert(mark.registry.clone(), found);
                }
                drop(access);
                mark.sender.send_replace(Some(auth));
            })
            .is_ok()
    }

    /// The authorization of the reference's scope, found when the scope is first used: for
    /// anonymous access none, or an anonymous token ([`Access`]); for the docker
    /// configuration's credentials what the registry's challenge asks for
    /// ([`Registry::authorize`]). oci-client's requests find it in its token cache
    /// ([`Registry::oci_for`]), the project's own reads are handed it.
    async fn login(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
        auth: &RegistryAuth,
    ) -> std::result::Result<Authorization, OciDistributionError> {
        let scope = scope(reference, operation);
        let ready = || {
            let access = self.access.lock().expect("not poisoned");
            (
                access.current(&scope),
                access.refused_anonymous.contains(&scope.0),
            )
        };
        let (set_up, refused) = ready();
        if let Some(authorization) = set_up {
            return Ok(authorization);
        }
        // Anonymous writes ask first (`GET /v2/`): a registry may let anyone read but want a
        // token to write, and a streamed upload cannot be sent again once a 401 has told us so.
        let asks = match auth {
            RegistryAuth::Anonymous => refused || matches!(operation, RegistryOperation::Push),
            RegistryAuth::Basic(..) | RegistryAuth::Bearer(_) => true,
        };
        let authorization = if asks {
            let finding = self.finding(&scope.0);
            let _finding = finding.lock().await;
            if let Some(authorization) = ready().0 {
                return Ok(authorization);
            }
            self.authorize(reference, operation, auth, refused).await?
        } else {
            Authorization::None
        };
        self.keep(scope, authorization.clone());
        Ok(authorization)
    }

    /// Keeps `authorization` as `scope`'s, found now ([`Access::current`]).
    fn keep(&self, scope: Scope, authorization: Authorization) {
        let found = (authorization, tokio::time::Instant::now());
        self.access
            .lock()
            .expect("not poisoned")
            .ready
            .insert(scope, found);
    }

    /// The lock held while an authorization for `registry` is found ([`Access::finding`]).
    fn finding(&self, registry: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut access = self.access.lock().expect("not poisoned");
        Arc::clone(access.finding.entry(registry.to_string()).or_default())
    }

    /// What the registry's challenge asks of `auth`: a token from its token service (for the
    /// configured user and password or identity token, if any), the user and password as
    /// they are, or nothing (a registry that asks for nothing, or for a scheme the project
    /// does not speak).
    /// The challenge is the API root's (`GET /v2/`); when that asks for nothing, the
    /// repository's own where it may ask for more: at a registry that `refused` an anonymous
    /// request (401), and before credentials the user configured go unused (a signer's
    /// streamed upload cannot be sent again after a 401).
    async fn authorize(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
        auth: &RegistryAuth,
        refused: bool,
    ) -> std::result::Result<Authorization, OciDistributionError> {
        Ok(match self.challenge(reference, auth, refused).await? {
            Challenge::Bearer { realm, service } => {
                let scope = match operation {
                    RegistryOperation::Pull => {
                        format!("repository:{}:pull", reference.repository())
                    }
                    RegistryOperation::Push => {
                        format!("repository:{}:pull,push", reference.repository())
                    }
                };
                let scopes = [scope.as_str()];
                let exchange = || self.reads.token(&realm, service.as_deref(), &scopes, auth);
                Authorization::Bearer(self.ask(reference, exchange).await?)
            }
            Challenge::Basic => match auth {
                RegistryAuth::Basic(user, password) => {
                    Authorization::Basic(user.clone(), password.clone())
                }
                _ => Authorization::None,
            },
            Challenge::None => Authorization::None,
        })
    }

    /// The registry's challenge ([`Registry::authorize`]): the API root's, or where that asks
    /// for nothing, the repository's own at a registry that `refused` an anonymous request
    /// and before credentials the user configured go unused.
    async fn challenge(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        refused: bool,
    ) -> std::result::Result<Challenge, OciDistributionError> {
        let challenge = self
            .ask(reference, || self.reads.root_challenge(reference))
            .await?;
        let configured = !matches!(auth, RegistryAuth::Anonymous);
        if challenge == Challenge::None && (refused || configured) {
            return self
                .ask(reference, || self.reads.repository_challenge(reference))
                .await;
        }
        Ok(challenge)
    }

    /// Mounts blob `digest` of repository `from` into `reference`'s with a token granting
    /// both, as docker asks for one (`repository:<to>:pull,push` and
    /// `repository:<from>:pull`): the push scope's own grants no pull from `from`. The token
    /// is kept as a scope's is ([`TOKEN_REUSE`]). Whether the registry mounted it.
    async fn mount_with_token(
        &self,
        reference: &Reference,
        from: &Repository,
        digest: &str,
        auth: &RegistryAuth,
    ) -> std::result::Result<bool, OciDistributionError> {
        // Keyed apart from every repository's own scope: no repository name holds a space.
        let key: Scope = (
            reference.registry().to_string(),
            format!("{} {}", reference.repository(), from.path),
            true,
        );
        let held = || self.access.lock().expect("not poisoned").current(&key);
        // Blobs are mounted several at once: the first to find the token finds it for all.
        let finding = self.finding(&key.0);
        let finding = finding.lock().await;
        let authorization = match held() {
            Some(authorization) => authorization,
            None => {
                // A registry that hands out no such token is not asked again, blob after blob:
                // its blobs are copied (held as `None` for the mount key).
                let no_mount = || self.keep(key.clone(), Authorization::None);
                let challenge = self.challenge(reference, auth, true).await;
                let Ok(Challenge::Bearer { realm, service }) = challenge else {
                    no_mount();
                    return challenge.map(|_| false);
                };
                let to = format!("repository:{}:pull,push", reference.repository());
                let from = format!("repository:{}:pull", from.path);
                let scopes = [to.as_str(), from.as_str()];
                let exchange = || self.reads.token(&realm, service.as_deref(), &scopes, auth);
                let token = match self.ask(reference, exchange).await {
                    Ok(token) => token,
                    Err(e) => {
                        no_mount();
                        return Err(e);
                    }
                };
                let authorization = Authorization::Bearer(token);
                self.keep(key.clone(), authorization.clone());
                authorization
            }
        };
        drop(finding);
        if authorization == Authorization::None {
            return Ok(false);
        }
        let mounted = self
            .reads
            .mount(reference, &from.path, digest, &authorization);
        self.deadline(reference, mounted).await
    }

    /// What a request of the log-in (a challenge, a token) answers: `send` under the
    /// deadline, sent again after a server error, counted.
    async fn ask<T, F>(
        &self,
        reference: &Reference,
        send: impl Fn() -> F,
    ) -> std::result::Result<T, OciDistributionError>
    where
        F: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        let answer = self.deadline(reference, send()).await;
        let answer = self.retried(reference, answer, send).await?;
        self.traffic.record(0);
        Ok(answer)
    }

    /// After a 401 to a request sent with `failed`, before it is sent once more: the scope's
    /// authorization is to be found again. An anonymous scope now asks for tokens;
    /// credentials are looked at again (a token that expired, a challenge that changed). The
    /// scope's authorization is forgotten only if it is still the one that failed: another
    /// request may have found a new one meanwhile.
    fn unauthorized(
        &self,
        reference: &Reference,
        operation: RegistryOperation,
        auth: &RegistryAuth,
        failed: &Authorization,
    ) {
        let scope = scope(reference, operation);
        let mut access = self.access.lock().expect("not poisoned");
        if matches!(auth, RegistryAuth::Anonymous) {
            access.refused_anonymous.insert(scope.0.clone());
        }
        if access
            .ready
            .get(&scope)
            .is_some_and(|(authorization, _)| authorization == failed)
        {
            access.ready.remove(&scope);
        }
    }

    /// Runs a request under the configured deadline, [`guarded`].
    async fn deadline<T>(
        &self,
        reference: &Reference,
        request: impl Future<Output = Result<T, OciDistributionError>>,
    ) -> Result<T, OciDistributionError> {
        tokio::time::timeout(self.timeout, guarded(reference, request))
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

/// Runs an oci-client request, which panics on some answers (a token that is no valid header
/// value, a push answered without a usable `Location`): such a request fails, naming the
/// reference, instead of taking the caller down.
async fn guarded<T>(
    reference: &Reference,
    request: impl Future<Output = Result<T, OciDistributionError>>,
) -> Result<T, OciDistributionError> {
    // Boxed: oci-client's request futures are large, and each layer around one would hold
    // another copy (a deep copy in debug builds overflowed a test thread's stack).
    std::panic::AssertUnwindSafe(Box::pin(request))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            Err(OciDistributionError::GenericError(Some(format!(
                "{}: the registry client failed on the registry's answer: {}",
                reference.whole(),
                panic_message(panic.as_ref())
            ))))
        })
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic")
}

/// Credentials for `registry` from docker's `config.json` (or a credential helper it names);
/// anonymous when there are none, the reason when the configuration names some it cannot give.
fn auth_for(registry: &str) -> Credentials {
    use docker_credential::{CredentialRetrievalError, DockerCredential};
    match docker_credential::get_credential(registry) {
        Ok(DockerCredential::UsernamePassword(user, password)) => {
            Ok(RegistryAuth::Basic(user, password))
        }
        Ok(DockerCredential::IdentityToken(token)) => Ok(RegistryAuth::Bearer(token)),
        Err(
            CredentialRetrievalError::ConfigNotFound
            | CredentialRetrievalError::NoCredentialConfigured,
        ) => Ok(RegistryAuth::Anonymous),
        // What no `config.json` at all reads as, too.
        Err(CredentialRetrievalError::ConfigReadError) if !docker_config_file().is_file() => {
            Ok(RegistryAuth::Anonymous)
        }
        // A store for every registry (`credsStore`) answers so for one with no login, as
        // docker reads it: none.
        Err(CredentialRetrievalError::HelperFailure { stdout, stderr, .. })
            if [&stdout, &stderr]
                .iter()
                .any(|said| said.contains("credentials not found")) =>
        {
            Ok(RegistryAuth::Anonymous)
        }
        Err(e) => Err(format!(
            "the docker configuration's credentials for {registry} cannot be read ({}): {}",
            docker_config_file().display(),
            e.to_string().trim_end()
        )),
    }
}

/// Docker's `config.json`, where the docker configuration is looked for.
fn docker_config_file() -> std::path::PathBuf {
    let home = || std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".docker"));
    std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(home)
        .unwrap_or_default()
        .join("config.json")
}

/// The error of a request that needs a client that could not be set up.
fn setup_failed(message: &str) -> OciDistributionError {
    OciDistributionError::GenericError(Some(format!(
        "the registry client cannot be set up: {message}"
    )))
}

/// The tags of one answer to a tag listing (`{"name": …, "tags": […]}`; `null` when there
/// are none). An answer without `tags` is no listing, not an empty one: writers decide on
/// what the listing holds (`claim`).
fn tag_page(reference: &Reference, body: &[u8]) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Page {
        // Required, though it may be `null` (serde lets an `Option` be absent otherwise).
        #[serde(deserialize_with = "bounded_tags")]
        tags: Option<Vec<String>>,
    }
    let page: Page = serde_json::from_slice(body).map_err(|e| Error::Registry {
        reference: reference.whole(),
        message: format!("the tag listing is not one: {e}"),
    })?;
    Ok(page.tags.unwrap_or_default())
}

/// A page's `tags`: a list of at most [`MAX_TAGS`], or `null`. Read up to the bound, not
/// whole first: a page of a million tags is tens of megabytes, one of tiny names repeated
/// would be gigabytes of strings.
fn bounded_tags<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Vec<String>>, D::Error> {
    struct Tags;
    impl<'de> serde::de::Visitor<'de> for Tags {
        type Value = Option<Vec<String>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of tags, or null")
        }

        fn visit_none<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            deserializer.deserialize_seq(self)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut tags = Vec::new();
            while let Some(tag) = seq.next_element::<String>()? {
                if tags.len() == MAX_TAGS {
                    return Err(serde::de::Error::custom(format_args!(
                        "a page of more than {MAX_TAGS} tags"
                    )));
                }
                tags.push(tag);
            }
            Ok(Some(tags))
        }
    }
    deserializer.deserialize_option(Tags)
}

/// The authorization scope of a request.
fn scope(reference: &Reference, operation: RegistryOperation) -> Scope {
    (
        reference.registry().to_string(),
        reference.repository().to_string(),
        matches!(operation, RegistryOperation::Push),
    )
}

/// A 5xx answer. Distribution 2.8 answers "500 unknown error" to a read of a tag that is being
/// stored at that moment (its link file is written in place). Reads are safe to repeat, and so
/// is every write here (content by digest, tags set to a digest).
fn is_server_error(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ServerError { code, .. } => *code >= 500,
        OciDistributionError::RequestError(e) => e.status().is_some_and(|s| s.is_server_error()),
        _ => false,
    }
}

fn is_unauthorized(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::UnauthorizedError { .. } => true,
        OciDistributionError::ServerError { code, .. } => *code == 401,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized)),
        OciDistributionError::RequestError(e) => {
            e.status().map(|status| status.as_u16()) == Some(401)
        }
        _ => false,
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
    Error::Registry {
        reference: reference.whole(),
        message: message_of(error),
    }
}

/// `error` and its causes, each said once ([`causes`]); the project's own messages (carried
/// as oci-client's `GenericError`) as they are.
fn message_of(error: &OciDistributionError) -> String {
    // Ours (timeouts, caught panics): oci-client would quote it as `Generic error: Some("…")`.
    if let OciDistributionError::GenericError(Some(message)) = error {
        return message.clone();
    }
    causes(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokens_are_used_for_a_while_and_other_credentials_for_good() {
        let mut access = Access::default();
        let scope = |repository: &str| ("r.test".to_string(), repository.to_string(), false);
        let now = tokio::time::Instant::now();
        let token = Authorization::Bearer("t".into());
        let basic = Authorization::Basic("u".into(), "p".into());
        access.ready.insert(scope("a"), (token.clone(), now));
        access.ready.insert(scope("b"), (basic.clone(), now));
        access.ready.insert(scope("c"), (Authorization::None, now));
        tokio::time::advance(TOKEN_REUSE - Duration::from_secs(1)).await;
        assert_eq!(access.current(&scope("a")), Some(token));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(access.current(&scope("a")), None);
        assert_eq!(access.current(&scope("b")), Some(basic));
        assert_eq!(access.current(&scope("c")), Some(Authorization::None));
    }

    /// A client whose credentials come from `source`, with a deadline of one second.
    fn reading_with(source: impl Fn(&str) -> Credentials + Send + Sync + 'static) -> Registry {
        let config = RegistryConfig {
            insecure_hosts: Vec::new(),
            timeout: Duration::from_secs(1),
        };
        let mut registry = Registry::new(&config).unwrap();
        registry.credential_source = Arc::new(source);
        registry
    }

    #[tokio::test]
    async fn a_hung_credential_helper_is_asked_once_and_its_late_answer_used() {
        let (answer, hung) = std::sync::mpsc::channel::<()>();
        let hung = std::sync::Mutex::new(hung);
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&asked);
        let registry = reading_with(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = hung.lock().unwrap().recv();
            Ok(RegistryAuth::Basic("signer".into(), "s3cret".into()))
        });
        // Requests at once share the read, and fail once it has run for the deadline.
        let (first, second) = tokio::join!(
            registry.credentials_for("r.test"),
            registry.credentials_for("r.test")
        );
        for failed in [first, second] {
            let message = message_of(&failed.unwrap_err());
            assert!(message.contains("did not answer within 1 s"), "{message}");
        }
        // The next fails at once, starting no other helper.
        let started = std::time::Instant::now();
        assert!(registry.credentials_for("r.test").await.is_err());
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Its answer, when it comes, is used.
        answer.send(()).unwrap();
        let mut found = registry.credentials_for("r.test").await;
        for _ in 0..100 {
            if found.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            found = registry.credentials_for("r.test").await;
        }
        assert!(matches!(found, Ok(RegistryAuth::Basic(..))), "{found:?}");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_credential_read_that_fails_outright_counts_as_none() {
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&asked);
        let registry = reading_with(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            panic!("the configuration could not be read")
        });
        for _ in 0..2 {
            let found = registry.credentials_for("r.test").await;
            assert!(matches!(found, Ok(RegistryAuth::Anonymous)), "{found:?}");
        }
        // Its mark went with it: the next request read again, as for a helper that answers.
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn insecure_hosts_are_taken_as_a_list_is_typed() {
        let config = RegistryConfig {
            insecure_hosts: vec![" a.test:5000".into(), "B.test:5000 ".into(), " ".into()],
            timeout: Duration::from_secs(1),
        };
        let registry = Registry::new(&config).unwrap();
        assert_eq!(
            registry.insecure_hosts,
            ["a.test:5000", "B.test:5000", "b.test:5000"]
        );
    }

    #[test]
    fn a_tag_listing_must_list_its_tags() {
        let reference: Reference = "registry.test/team-a/app:latest".parse().unwrap();
        let page = |body: &str| tag_page(&reference, body.as_bytes());
        assert_eq!(
            page(r#"{"name":"team-a/app","tags":["v1","v2"]}"#).unwrap(),
            ["v1", "v2"]
        );
        assert!(
            page(r#"{"name":"team-a/app","tags":null}"#)
                .unwrap()
                .is_empty()
        );
        // No listing at all (an error envelope answered with 200, say) is not "no tags".
        for body in ["{}", r#"{"errors":[{"code":"UNKNOWN","message":"x"}]}"#] {
            let error = page(body).unwrap_err();
            assert!(
                matches!(error, Error::Registry { ref message, .. } if message.contains("not one")),
                "{error}"
            );
        }
        // A page is read up to its bound, not whole first.
        let tags = |count: usize| format!(r#"{{"tags":[{}"a"]}}"#, r#""a","#.repeat(count - 1));
        assert_eq!(page(&tags(MAX_TAGS)).unwrap().len(), MAX_TAGS);
        let error = page(&tags(MAX_TAGS + 1)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("a page of more than 1000000 tags"),
            "{error}"
        );
    }
}
