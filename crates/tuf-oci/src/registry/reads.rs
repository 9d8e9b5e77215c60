//! Reads of manifests and tag listings, with the body cut at its limit as it arrives.
//! oci-client takes such a response whole before returning it, so a registry sending one
//! without end would grow the process until the request deadline (a few gigabytes a second on
//! loopback); blobs it streams, and those are read through it.
//!
//! The answers are told apart as oci-client tells them (its error type), so [`super::Registry`]
//! retries, re-authorizes and recognises "not found" the same for every request.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use oci_client::Reference;
use oci_client::errors::{OciDistributionError, OciEnvelope};

/// Most bytes of an error answer kept for its message.
const ERROR_BODY_LIMIT: u64 = 4 * 1024;

/// How a read is authorized: what [`super::Registry`]'s log-in found the scope needs.
#[derive(Debug, Clone, Default)]
pub(super) enum Authorization {
    /// Nothing: a registry without auth.
    #[default]
    None,
    /// `Authorization: Bearer …`: a token handed out by the registry's token service, or the
    /// identity token of the docker configuration.
    Bearer(String),
    /// `Authorization: Basic …`: the docker configuration's user and password.
    Basic(String, String),
}

/// A body that went past its limit.
#[derive(Debug)]
pub(super) struct Exceeded;

/// The HTTP clients for these reads.
pub(super) struct Reads {
    insecure_hosts: Vec<String>,
    timeout: Duration,
    /// For hosts reached over plain HTTP: set up without CA certificates.
    plain: reqwest::Client,
    /// For HTTPS, set up at its first use: reading the system's CA certificates takes a few
    /// milliseconds, which a verification against a registry on plain HTTP need not pay.
    tls: OnceLock<Result<reqwest::Client, String>>,
}

impl Reads {
    /// Clients for `insecure_hosts` over plain HTTP and everything else over HTTPS, each
    /// request's connection and reads bounded by `timeout`.
    pub(super) fn new(
        insecure_hosts: Vec<String>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let plain = builder(timeout).tls_certs_only([]).build()?;
        Ok(Reads {
            insecure_hosts,
            timeout,
            plain,
            tls: OnceLock::new(),
        })
    }

    /// `GET /v2/<repository>/manifests/<digest or tag>`, accepting `media_types`.
    pub(super) async fn manifest(
        &self,
        reference: &Reference,
        media_types: &[&str],
        authorization: &Authorization,
        limit: u64,
    ) -> Result<Result<Bytes, Exceeded>, OciDistributionError> {
        let target = reference
            .digest()
            .or(reference.tag())
            .unwrap_or("latest")
            .to_string();
        let url = self.url(reference, &format!("manifests/{target}"));
        let request = self
            .client(reference)?
            .get(&url)
            .header(http::header::ACCEPT, media_types.join(", "));
        read(authorized(request, authorization)?, &url, limit).await
    }

    /// `GET /v2/<repository>/tags/list`, after tag `last` when given.
    pub(super) async fn tags(
        &self,
        reference: &Reference,
        last: Option<&str>,
        authorization: &Authorization,
        limit: u64,
    ) -> Result<Result<Bytes, Exceeded>, OciDistributionError> {
        let url = self.url(reference, "tags/list");
        let mut request = self.client(reference)?.get(&url);
        if let Some(last) = last {
            request = request.query(&[("last", last)]);
        }
        read(authorized(request, authorization)?, &url, limit).await
    }

    fn url(&self, reference: &Reference, path: &str) -> String {
        let registry = reference.resolve_registry();
        let scheme = if self.insecure_hosts.iter().any(|host| host == registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{registry}/v2/{}/{path}", reference.repository())
    }

    fn client(&self, reference: &Reference) -> Result<&reqwest::Client, OciDistributionError> {
        let registry = reference.resolve_registry();
        if self.insecure_hosts.iter().any(|host| host == registry) {
            return Ok(&self.plain);
        }
        self.tls
            .get_or_init(|| builder(self.timeout).build().map_err(|e| super::chain(&e)))
            .as_ref()
            .map_err(|message| {
                OciDistributionError::GenericError(Some(format!(
                    "the registry client cannot be set up: {message}"
                )))
            })
    }
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .user_agent(concat!("tuf-oci/", env!("CARGO_PKG_VERSION")))
}

fn authorized(
    request: reqwest::RequestBuilder,
    authorization: &Authorization,
) -> Result<reqwest::RequestBuilder, OciDistributionError> {
    Ok(match authorization {
        Authorization::None => request,
        Authorization::Bearer(token) => {
            // A token is whatever the registry's token service answered.
            if http::HeaderValue::from_str(token).is_err() {
                return Err(OciDistributionError::GenericError(Some(
                    "the registry handed out a token that no HTTP header can carry".into(),
                )));
            }
            request.bearer_auth(token)
        }
        Authorization::Basic(user, password) => request.basic_auth(user, Some(password)),
    })
}

/// Sends `request` and reads a successful answer's body up to `limit` bytes; an answer that
/// says it is longer is not read at all. Any other answer becomes the error oci-client would
/// have made of it, its body read up to [`ERROR_BODY_LIMIT`].
async fn read(
    request: reqwest::RequestBuilder,
    url: &str,
    limit: u64,
) -> Result<Result<Bytes, Exceeded>, OciDistributionError> {
    let mut response = request.send().await?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        let body = match body(&mut response, ERROR_BODY_LIMIT).await? {
            Ok(body) => body,
            Err(Exceeded) => Bytes::from_static(b"(an error answer past 4 KiB)"),
        };
        return Err(error(status, &body, url));
    }
    body(&mut response, limit).await
}

async fn body(
    response: &mut reqwest::Response,
    limit: u64,
) -> Result<Result<Bytes, Exceeded>, OciDistributionError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Ok(Err(Exceeded));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Ok(Err(Exceeded));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Ok(body.into()))
}

/// The error for an answer other than 200: as oci-client classifies answers, so a 404 is
/// "not found", a 401 asks for authorization and a 5xx is worth another try.
fn error(status: reqwest::StatusCode, body: &[u8], url: &str) -> OciDistributionError {
    let url = url.to_string();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return OciDistributionError::UnauthorizedError { url };
    }
    if status.is_client_error()
        && let Ok(envelope) = serde_json::from_slice::<OciEnvelope>(body)
    {
        return OciDistributionError::RegistryError { envelope, url };
    }
    OciDistributionError::ServerError {
        code: status.as_u16(),
        url,
        message: String::from_utf8_lossy(body).into_owned(),
    }
}
