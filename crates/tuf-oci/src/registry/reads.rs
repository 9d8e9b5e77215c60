//! The registry reads: manifests and tag listings, with the body cut at its limit as it
//! arrives, and blobs, streamed to be checked by the caller. oci-client takes a manifest or a
//! tag listing whole before returning it, so a registry sending one without end would grow the
//! process until the request deadline (a few gigabytes a second on loopback); and it builds
//! two TLS clients when set up, each reading the system's CA certificates, which a verification
//! against a registry on plain HTTP need not pay. The token exchange is the project's own
//! too: oci-client's exchange reads the challenge at the API root only (a registry wanting
//! tokens per repository got none) and takes the token service's answer whole. oci-client
//! still writes.
//!
//! The answers are told apart as oci-client tells them (its error type), so [`super::Registry`]
//! retries, re-authorizes and recognises "not found" the same for every request.

use std::time::Duration;

use bytes::Bytes;
use oci_client::Reference;
use oci_client::errors::{OciDistributionError, OciEnvelope};
use oci_client::secrets::RegistryAuth;

/// Most bytes of an error answer kept for its message.
const ERROR_BODY_LIMIT: u64 = 4 * 1024;

/// Most bytes of a token service's answer: a token is a few kilobytes.
const TOKEN_ANSWER_LIMIT: u64 = 64 * 1024;

/// The `client_id` an OAuth 2 token request names (distribution's token specification
/// requires one).
const CLIENT_ID: &str = "tuf-oci";

/// How a request is authorized: what [`super::Registry`]'s log-in found the scope needs.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Authorization {
    /// Nothing: a registry without auth, or one that asks for no credentials there are.
    None,
    /// `Authorization: Bearer …`: a token handed out by the registry's token service.
    Bearer(String),
    /// `Authorization: Basic …`: the docker configuration's user and password.
    Basic(String, String),
}

impl std::fmt::Debug for Authorization {
    /// Names the kind only: tokens and passwords stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Authorization::None => "None",
            Authorization::Bearer(_) => "Bearer(..)",
            Authorization::Basic(..) => "Basic(..)",
        })
    }
}

/// What a registry's `WWW-Authenticate` challenge asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Challenge {
    /// No challenge (the registry wants no credentials), or none of a scheme the project
    /// speaks.
    None,
    /// A token from its token service at `realm`, for `service`.
    Bearer {
        /// Where tokens are asked for.
        realm: String,
        /// The registry's name at the token service, if it gives one.
        service: Option<String>,
    },
    /// User and password, as they are.
    Basic,
}

/// A body that went past its limit.
#[derive(Debug)]
pub(super) struct Exceeded;

/// Most redirects followed for one read (reqwest's own default: an eleventh is an error).
const MAX_REDIRECTS: usize = 10;

/// The HTTP clients for these reads.
pub(super) struct Reads {
    insecure_hosts: Vec<String>,
    timeout: Duration,
    /// For hosts reached over plain HTTP: set up without CA certificates. It follows no
    /// redirect to HTTPS, which the HTTPS client then follows ([`Reads::send`]).
    plain: reqwest::Client,
    /// For HTTPS, set up at its first use: reading the system's CA certificates takes a few
    /// milliseconds, which a verification against a registry on plain HTTP need not pay.
    tls: tokio::sync::OnceCell<reqwest::Client>,
    /// For OAuth 2 token requests (`POST`, [`Reads::token`]), set up at its first use with
    /// the CA certificates: it follows no redirect, since a `307` would send the form,
    /// refresh token and all, on to wherever it names.
    posts: tokio::sync::OnceCell<reqwest::Client>,
}

impl Reads {
    /// Clients for `insecure_hosts` over plain HTTP and everything else over HTTPS, each
    /// request's connection and reads bounded by `timeout`.
    pub(super) fn new(
        insecure_hosts: Vec<String>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let plain = builder(timeout)
            .tls_certs_only([])
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if attempt.url().scheme() == "http" {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()?;
        Ok(Reads {
            insecure_hosts,
            timeout,
            plain,
            tls: tokio::sync::OnceCell::new(),
            posts: tokio::sync::OnceCell::new(),
        })
    }

    /// `GET /v2/`: what the registry's challenge asks for, as registries tell it (OCI
    /// distribution spec, "Determining Support").
    pub(super) async fn root_challenge(
        &self,
        reference: &Reference,
    ) -> Result<Challenge, OciDistributionError> {
        self.challenge_at(self.base(reference)?, "the registry's API root")
            .await
    }

    /// `GET /v2/<repository>/tags/list`: what the repository's challenge asks for, for a
    /// registry that answers its API root to anyone and wants credentials per repository.
    pub(super) async fn repository_challenge(
        &self,
        reference: &Reference,
    ) -> Result<Challenge, OciDistributionError> {
        self.challenge_at(
            self.url(reference, "tags/list")?,
            "the repository's tag listing",
        )
        .await
    }

    /// The challenge of a 401 to `GET url` (`what` it is). A server error or a redirect is an
    /// error, not "no challenge": a registry failing for a moment, or sending the client
    /// elsewhere, is not taken for one that wants no credentials. Any other answer but 401
    /// asks for nothing. The answer's body is not read.
    async fn challenge_at(
        &self,
        url: reqwest::Url,
        what: &str,
    ) -> Result<Challenge, OciDistributionError> {
        let response = self.client(&url).await?.get(url.clone()).send().await?;
        match response.status() {
            // Only the registry's own challenge names where its credentials go.
            reqwest::StatusCode::UNAUTHORIZED if response.url().origin() != url.origin() => {
                Err(OciDistributionError::GenericError(Some(format!(
                    "{what}: {}, where the registry sent the request, answered 401 Unauthorized",
                    response.url()
                ))))
            }
            reqwest::StatusCode::UNAUTHORIZED => Ok(challenge_of(response.headers())),
            status if status.is_server_error() || status.is_redirection() => {
                Err(OciDistributionError::ServerError {
                    code: status.as_u16(),
                    url: url.to_string(),
                    message: format!("{what} did not say what it asks for"),
                })
            }
            _ => Ok(Challenge::None),
        }
    }

    /// A token for `scope` (`repository:<name>:pull`) from the token service at `realm`
    /// (distribution's token authentication), asked with the credentials of `auth`: a user
    /// and password with `GET`, an identity token as the refresh token of an OAuth 2 `POST`
    /// (what `docker login` stores for registries that hand one out, such as Azure's, which
    /// do not take it as an access token). Credentials go over plain HTTP only to a host the
    /// user marked insecure; the answer is read up to [`TOKEN_ANSWER_LIMIT`].
    pub(super) async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[&str],
        auth: &RegistryAuth,
    ) -> Result<String, OciDistributionError> {
        let url = reqwest::Url::parse(realm).map_err(|e| {
            OciDistributionError::AuthenticationFailure(format!(
                "the registry names a token service at {realm:?}, which is no URL: {e}"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OciDistributionError::AuthenticationFailure(format!(
                "the registry names a token service at {realm}, which is not reached over HTTP"
            )));
        }
        let anonymous = matches!(auth, RegistryAuth::Anonymous);
        if url.scheme() == "http" && !anonymous && !self.is_insecure(&url) {
            return Err(OciDistributionError::AuthenticationFailure(format!(
                "the registry names a token service on plain HTTP ({realm}), which is not \
                 given credentials unless its host is marked insecure"
            )));
        }
        let fetch = |authorization: Authorization| {
            let mut url = url.clone();
            for scope in scopes {
                url.query_pairs_mut().append_pair("scope", scope);
            }
            if let Some(service) = service {
                url.query_pairs_mut().append_pair("service", service);
            }
            async move { self.send(url, None, &authorization).await }
        };
        // An OAuth 2 refusal the fallback follows: said too, should the fallback fail (an
        // identity token that expired is the OAuth 2 answer's to tell).
        let mut refused_first = None;
        let mut response = match auth {
            RegistryAuth::Bearer(refresh_token) => {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.as_str()),
                    ("client_id", CLIENT_ID),
                    // OAuth 2 scopes are one parameter, separated by spaces.
                    ("scope", &scopes.join(" ")),
                    ("service", service.unwrap_or_default()),
                ];
                let mut posted = self
                    .posts()
                    .await?
                    .post(url.clone())
                    .form(&form)
                    .send()
                    .await?;
                // A token service without OAuth 2 (GCR answered 404, JFrog 401): the token
                // as a password, with `GET`, as containerd falls back.
                if matches!(posted.status().as_u16(), 400 | 401 | 404 | 405) {
                    let status = posted.status();
                    refused_first = Some(format!("{status}: {}", error_body(&mut posted).await));
                    fetch(Authorization::Basic(String::new(), refresh_token.clone())).await?
                } else {
                    posted
                }
            }
            RegistryAuth::Basic(user, password) => {
                fetch(Authorization::Basic(user.clone(), password.clone())).await?
            }
            RegistryAuth::Anonymous => fetch(Authorization::None).await?,
        };
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            // The service's reason (a wrong password, say) is in the body, whatever the
            // status.
            let mut reason = error_body(&mut response).await;
            if let Some(first) = refused_first {
                reason.push_str(&format!(
                    " (after its OAuth 2 answer to the identity token: {first})"
                ));
            }
            return Err(if status.is_server_error() {
                OciDistributionError::ServerError {
                    code: status.as_u16(),
                    url: realm.to_string(),
                    message: reason,
                }
            } else {
                OciDistributionError::AuthenticationFailure(format!(
                    "the token service at {realm} answered {status}: {reason}"
                ))
            });
        }
        let Ok(answer) = body(&mut response, TOKEN_ANSWER_LIMIT).await? else {
            return Err(OciDistributionError::AuthenticationFailure(format!(
                "the token service at {realm} answered past {TOKEN_ANSWER_LIMIT} bytes"
            )));
        };
        token_of(&answer).map_err(|reason| {
            OciDistributionError::RegistryTokenDecodeError(format!(
                "the token service at {realm} answered no token: {reason}"
            ))
        })
    }

    /// `POST /v2/<repository>/blobs/uploads/?mount=<digest>&from=<from>`: whether the
    /// registry mounted the blob (201). Any other answer (202: an upload started instead,
    /// left to expire) is no mount.
    pub(super) async fn mount(
        &self,
        reference: &Reference,
        from: &str,
        digest: &str,
        authorization: &Authorization,
    ) -> Result<bool, OciDistributionError> {
        let mut url = self.url(reference, "blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from);
        let client = self.client(&url).await?;
        let response = authorized(client.post(url), authorization)?.send().await?;
        Ok(response.status() == reqwest::StatusCode::CREATED)
    }

    /// `GET /v2/<repository>/manifests/<digest or tag>`, accepting `media_types`.
    pub(super) async fn manifest(
        &self,
        reference: &Reference,
        media_types: &[&str],
        authorization: &Authorization,
        limit: u64,
    ) -> Result<Result<Bytes, Exceeded>, OciDistributionError> {
        let target = reference.digest().or(reference.tag()).unwrap_or("latest");
        let url = self.url(reference, &format!("manifests/{target}"))?;
        let accept = media_types.join(", ");
        let mut response = self.get(url, Some(&accept), authorization).await?;
        body(&mut response, limit).await
    }

    /// `GET /v2/<repository>/blobs/<digest>`: the answer, its body still to be read.
    pub(super) async fn blob(
        &self,
        reference: &Reference,
        digest: &str,
        authorization: &Authorization,
    ) -> Result<reqwest::Response, OciDistributionError> {
        let url = self.url(reference, &format!("blobs/{digest}"))?;
        self.get(url, None, authorization).await
    }

    /// A page of `GET /v2/<repository>/tags/list` ([`TagPageAt`]): its body, and the next
    /// page's URL when the answer's `Link` header names one (OCI distribution spec, "Listing
    /// Tags"), which must be on the registry.
    pub(super) async fn tags(
        &self,
        reference: &Reference,
        at: &TagPageAt,
        authorization: &Authorization,
        limit: u64,
    ) -> Result<Result<(Bytes, Option<reqwest::Url>), Exceeded>, OciDistributionError> {
        let listing = self.url(reference, "tags/list")?;
        let url = match at {
            TagPageAt::First => listing.clone(),
            TagPageAt::After(last) => {
                let mut url = listing.clone();
                url.query_pairs_mut().append_pair("last", last);
                url
            }
            TagPageAt::Link(url) => url.clone(),
        };
        let mut response = self.get(url, None, authorization).await?;
        let next = next_link(response.headers(), response.url());
        if let Some(next) = next
            .as_ref()
            .filter(|next| next.origin() != listing.origin())
        {
            return Err(OciDistributionError::GenericError(Some(format!(
                "the tag listing names its next page at {next}, elsewhere than the registry"
            ))));
        }
        Ok(body(&mut response, limit).await?.map(|body| (body, next)))
    }

    /// Sends a `GET` and returns a 200 answer, its body still to be read; any other answer
    /// is the error oci-client would have made of it.
    async fn get(
        &self,
        url: reqwest::Url,
        accept: Option<&str>,
        authorization: &Authorization,
    ) -> Result<reqwest::Response, OciDistributionError> {
        let origin = url.clone();
        let mut response = self.send(url, accept, authorization).await?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(failure(&mut response, &origin).await);
        }
        Ok(response)
    }

    /// Sends a `GET` and returns the answer, whatever its status. A host on plain HTTP may
    /// send a request on to HTTPS (distribution storing blobs in S3 redirects there; a token
    /// service moved to HTTPS): that hop and what follows go through the HTTPS client,
    /// without the credentials.
    async fn send(
        &self,
        url: reqwest::Url,
        accept: Option<&str>,
        authorization: &Authorization,
    ) -> Result<reqwest::Response, OciDistributionError> {
        let with_accept = |mut request: reqwest::RequestBuilder| {
            if let Some(accept) = accept {
                request = request.header(http::header::ACCEPT, accept);
            }
            request
        };
        let plain = url.scheme() == "http";
        let client = self.client(&url).await?;
        let request = authorized(with_accept(client.get(url)), authorization)?;
        let mut response = request.send().await?;
        if plain
            && response.status().is_redirection()
            && let Some(location) = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|location| location.to_str().ok())
                .and_then(|location| response.url().join(location).ok())
            && location.scheme() == "https"
        {
            response = with_accept(self.tls().await?.get(location)).send().await?;
        }
        Ok(response)
    }

    /// Whether `url`'s host is one the user marked insecure ([`is_insecure`]).
    fn is_insecure(&self, url: &reqwest::Url) -> bool {
        is_insecure(&self.insecure_hosts, url)
    }

    /// The registry's API root, `/v2/`, over plain HTTP for the insecure hosts.
    fn base(&self, reference: &Reference) -> Result<reqwest::Url, OciDistributionError> {
        let registry = reference.resolve_registry();
        let scheme = if self
            .insecure_hosts
            .iter()
            .any(|host| host.eq_ignore_ascii_case(registry))
        {
            "http"
        } else {
            "https"
        };
        reqwest::Url::parse(&format!("{scheme}://{registry}/v2/"))
            .map_err(|e| OciDistributionError::UrlParseError(e.to_string()))
    }

    /// The URL of `path` under the reference's repository.
    fn url(&self, reference: &Reference, path: &str) -> Result<reqwest::Url, OciDistributionError> {
        self.base(reference)?
            .join(&format!("{}/{path}", reference.repository()))
            .map_err(|e| OciDistributionError::UrlParseError(e.to_string()))
    }

    /// The client for `url`: the plain one over HTTP, the HTTPS one otherwise.
    async fn client(&self, url: &reqwest::Url) -> Result<&reqwest::Client, OciDistributionError> {
        if url.scheme() == "http" {
            Ok(&self.plain)
        } else {
            self.tls().await
        }
    }

    /// The client for OAuth 2 token requests: one that follows no redirect.
    async fn posts(&self) -> Result<&reqwest::Client, OciDistributionError> {
        let no_redirect = || builder(self.timeout).redirect(reqwest::redirect::Policy::none());
        set_up(&self.posts, no_redirect).await
    }

    /// The HTTPS client. It follows redirects to HTTPS, and to plain HTTP only at a host the
    /// user marked insecure: what a registry reached over HTTPS serves (blobs, manifests, a
    /// challenge naming the token service the credentials go to) never comes over plain HTTP
    /// from elsewhere.
    async fn tls(&self) -> Result<&reqwest::Client, OciDistributionError> {
        let insecure_hosts = self.insecure_hosts.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if attempt.url().scheme() == "https"
                || is_insecure(&insecure_hosts, attempt.url())
            {
                attempt.follow()
            } else {
                let refused = format!(
                    "a redirect from HTTPS to {}, a host not marked insecure, is not followed",
                    attempt.url()
                );
                attempt.error(refused)
            }
        });
        set_up(&self.tls, || builder(self.timeout).redirect(policy)).await
    }
}

/// Where a page of a tag listing is asked for.
pub(super) enum TagPageAt {
    /// The listing's start.
    First,
    /// After this tag, in lexical order (the `last` query parameter).
    After(String),
    /// Where the previous page's `Link` header said the next one is.
    Link(reqwest::Url),
}

/// The `rel="next"` target of `headers`' `Link` headers (RFC 8288), resolved against `base`,
/// the URL answered; `None` when there is none.
fn next_link(headers: &http::HeaderMap, base: &reqwest::Url) -> Option<reqwest::Url> {
    let is_next = |params: &[&str]| {
        params.iter().any(|param| {
            param.split_once('=').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            })
        })
    };
    headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| split_outside(value, ','))
        .find_map(|link| {
            // `<target>; param; param`: the target may hold `;` and `,`, quoted values too.
            let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
            let params: Vec<&str> = split_outside(params, ';').collect();
            is_next(&params).then(|| base.join(target).ok())?
        })
}

/// `text` split at each `separator` outside a `<…>` target and a quoted string.
fn split_outside(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let (mut start, mut quoted, mut target) = (0, false, false);
    let mut parts = Vec::new();
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if !target => quoted = !quoted,
            '<' if !quoted => target = true,
            '>' if !quoted => target = false,
            c if c == separator && !quoted && !target => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter()
}

/// Whether `url`'s host is one of `insecure_hosts`: as `host:port`, or as `host` alone when
/// the URL names no port.
fn is_insecure(insecure_hosts: &[String], url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let with_port = url
        .port_or_known_default()
        .map(|port| format!("{host}:{port}"));
    insecure_hosts.iter().any(|marked| {
        let marked = marked.to_ascii_lowercase();
        (url.port().is_none() && marked == host) || with_port.as_ref() == Some(&marked)
    })
}

/// The client in `cell`, built by `builder` (with the system's CA certificates) at its first
/// use; a failure to set it up (no CA certificates) fails this request, and the next one tries
/// again.
async fn set_up(
    cell: &tokio::sync::OnceCell<reqwest::Client>,
    builder: impl FnOnce() -> reqwest::ClientBuilder,
) -> Result<&reqwest::Client, OciDistributionError> {
    cell.get_or_try_init(|| async {
        builder()
            .build()
            .map_err(|e| super::setup_failed(&crate::error::causes(&e)))
    })
    .await
}

/// What the `WWW-Authenticate` header asks for: a token when a bearer challenge among its
/// challenges names a realm to ask at; otherwise user and password only to an explicit
/// `Basic` challenge. The first header only, as docker's and oci-client's clients read it.
fn challenge_of(headers: &http::HeaderMap) -> Challenge {
    let Some(value) = headers
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
    else {
        return Challenge::None;
    };
    let challenges: Vec<_> = http_auth::parser::ChallengeParser::new(value)
        .filter_map(Result::ok)
        .collect();
    let param = |challenge: &http_auth::ChallengeRef<'_>, wanted: &str| {
        challenge
            .params
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.to_unescaped())
    };
    let bearer = challenges.iter().find_map(|c| {
        let realm = param(c, "realm")?;
        c.scheme.eq_ignore_ascii_case("bearer").then(|| {
            let service = param(c, "service");
            Challenge::Bearer { realm, service }
        })
    });
    if let Some(bearer) = bearer {
        bearer
    } else if challenges
        .iter()
        .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
    {
        Challenge::Basic
    } else {
        Challenge::None
    }
}

/// The token of a token service's answer: `token`, or the OAuth 2 name `access_token`
/// (distribution's token specification); an empty one is none.
fn token_of(answer: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(answer).map_err(|e| e.to_string())?;
    [answer.token, answer.access_token]
        .into_iter()
        .flatten()
        .find(|token| !token.is_empty())
        .ok_or_else(|| "neither `token` nor `access_token` holds one".to_string())
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

/// The error an answer other than 200 amounts to, its body read up to [`ERROR_BODY_LIMIT`].
/// A 401 from elsewhere than the registry (`origin`), where a redirect led, asks nothing of
/// the registry's credentials: it is an error like any other.
async fn failure(response: &mut reqwest::Response, origin: &reqwest::Url) -> OciDistributionError {
    let url = response.url().to_string();
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED && response.url().origin() != origin.origin() {
        return OciDistributionError::GenericError(Some(format!(
            "{url}, where the registry sent the request, answered 401 Unauthorized"
        )));
    }
    error(status, error_body(response).await, &url)
}

/// An error answer's body, up to [`ERROR_BODY_LIMIT`], its control characters (line breaks,
/// terminal escapes) made spaces: it is quoted in messages containerd and terminals show. The
/// status is what counts: a body that cannot be read is no reason to lose it.
async fn error_body(response: &mut reqwest::Response) -> String {
    match body(response, ERROR_BODY_LIMIT).await {
        Ok(Ok(body)) => String::from_utf8_lossy(&body)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
        Ok(Err(Exceeded)) => "(an error answer past 4 KiB)".into(),
        Err(_) => "(an error answer that could not be read)".into(),
    }
}

/// Reads the body up to `limit` bytes; one that says it is longer is not read at all.
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
fn error(status: reqwest::StatusCode, body: String, url: &str) -> OciDistributionError {
    let url = url.to_string();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return OciDistributionError::UnauthorizedError { url };
    }
    if status.is_client_error()
        && let Ok(envelope) = serde_json::from_str::<OciEnvelope>(&body)
    {
        return OciDistributionError::RegistryError { envelope, url };
    }
    OciDistributionError::ServerError {
        code: status.as_u16(),
        url,
        message: body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(values: &[&str]) -> Challenge {
        let mut headers = http::HeaderMap::new();
        for value in values {
            headers.append(http::header::WWW_AUTHENTICATE, value.parse().unwrap());
        }
        challenge_of(&headers)
    }

    #[test]
    fn challenges_are_read_as_the_token_exchange_reads_them() {
        let bearer = r#"Bearer realm="https://auth.test/token",service="registry.test""#;
        let token = Challenge::Bearer {
            realm: "https://auth.test/token".into(),
            service: Some("registry.test".into()),
        };
        assert_eq!(challenge(&[bearer]), token);
        assert_eq!(challenge(&[r#"basic realm="r""#]), Challenge::Basic);
        // Several challenges in the header: a token, when the exchange can get one.
        let both = format!(r#"Basic realm="a, Bearer b", {bearer}"#);
        assert_eq!(challenge(&[&both]), token);
        let escaped = r#"Bearer realm="https://auth.test/t\"oken""#;
        let unescaped = Challenge::Bearer {
            realm: r#"https://auth.test/t"oken"#.into(),
            service: None,
        };
        assert_eq!(challenge(&[escaped]), unescaped);
        assert_eq!(
            challenge(&[r#"Basic realm="a, Bearer realm=b""#]),
            Challenge::Basic
        );
        assert_eq!(
            challenge(&[r#"Bearer service="no realm""#]),
            Challenge::None
        );
        // The first header only, as the exchange reads.
        assert_eq!(challenge(&[r#"Basic realm="r""#, bearer]), Challenge::Basic);
        // Schemes the project does not speak get nothing, least of all a password.
        assert_eq!(challenge(&["Negotiate"]), Challenge::None);
        assert_eq!(challenge(&[r#"Digest realm="r""#]), Challenge::None);
        assert_eq!(challenge(&[]), Challenge::None);
    }

    #[tokio::test]
    async fn credentials_go_to_a_token_service_on_plain_http_only_on_an_insecure_host() {
        let reads = Reads::new(vec!["registry.test:5000".into()], Duration::from_secs(1)).unwrap();
        let scope = "repository:a:pull";
        let password = RegistryAuth::Basic("signer".into(), "s3cret".into());
        let identity = RegistryAuth::Bearer("refresh".into());
        for auth in [password, identity] {
            let refused = reads
                .token("http://auth.test/token", None, &[scope], &auth)
                .await
                .unwrap_err();
            assert!(
                matches!(refused, OciDistributionError::AuthenticationFailure(ref m)
                    if m.contains("plain HTTP (http://auth.test/token)")),
                "{refused:?}"
            );
        }
        let url = |text: &str| reqwest::Url::parse(text).unwrap();
        assert!(reads.is_insecure(&url("http://registry.test:5000/token")));
        assert!(reads.is_insecure(&url("http://REGISTRY.test:5000/token")));
        assert!(!reads.is_insecure(&url("http://registry.test/token")));
        assert!(!reads.is_insecure(&url("http://registry.test:5001/token")));
        let reads = Reads::new(
            vec![
                "auth.test".into(),
                "other.test:80".into(),
                "[::1]:5000".into(),
            ],
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(reads.is_insecure(&url("http://auth.test/token")));
        assert!(!reads.is_insecure(&url("http://auth.test:8080/token")));
        assert!(reads.is_insecure(&url("http://other.test/token")));
        assert!(reads.is_insecure(&url("http://[::1]:5000/token")));
    }

    #[test]
    fn hosts_marked_insecure_are_reached_over_http_however_spelt() {
        let reads = Reads::new(vec!["Registry.Test:5000".into()], Duration::from_secs(1)).unwrap();
        let reference: Reference = "registry.test:5000/team-a/app:v1".parse().unwrap();
        assert_eq!(reads.base(&reference).unwrap().scheme(), "http");
        let other: Reference = "registry.test:5001/team-a/app:v1".parse().unwrap();
        assert_eq!(reads.base(&other).unwrap().scheme(), "https");
    }

    #[test]
    fn the_next_page_is_where_a_link_header_says() {
        let base =
            reqwest::Url::parse("https://registry.test/v2/team-a/app/tags/list?n=2").unwrap();
        let next = |values: &[&str]| {
            let mut headers = http::HeaderMap::new();
            for value in values {
                headers.append(http::header::LINK, value.parse().unwrap());
            }
            next_link(&headers, &base).map(|url| url.to_string())
        };
        assert_eq!(
            next(&[r#"</v2/team-a/app/tags/list?n=2&last=b>; rel="next""#]).as_deref(),
            Some("https://registry.test/v2/team-a/app/tags/list?n=2&last=b")
        );
        // Among other links, with several relations, a comma in its target.
        assert_eq!(
            next(&[
                r#"<https://registry.test/a,b>; rel=prev, <?page=2,3>; title="x"; REL="last next""#
            ])
            .as_deref(),
            Some("https://registry.test/v2/team-a/app/tags/list?page=2,3")
        );
        // Commas and semicolons in quoted values; a link cut short does not hide the others.
        assert_eq!(
            next(&[r#"<?page=1>; title="page 2, of 3; or so"; rel="next""#]).as_deref(),
            Some("https://registry.test/v2/team-a/app/tags/list?page=1")
        );
        assert_eq!(
            next(&["<?page=1; rel=prev", "<?page=3>; rel=next"]).as_deref(),
            Some("https://registry.test/v2/team-a/app/tags/list?page=3")
        );
        assert_eq!(
            next(&["</other>; rel=prev", "<?page=2>; rel=next"]).as_deref(),
            Some("https://registry.test/v2/team-a/app/tags/list?page=2")
        );
        assert_eq!(next(&[r#"</v2/x>; rel="prev""#]), None);
        assert_eq!(next(&[]), None);
    }

    #[tokio::test]
    async fn error_answers_are_quoted_without_control_characters() {
        let answer = http::Response::new("denied\n\u{1b}[2Jfor you\r".to_string());
        let mut response = reqwest::Response::from(answer);
        assert_eq!(error_body(&mut response).await, "denied  [2Jfor you ");
    }

    #[test]
    fn a_token_answer_must_hold_a_token() {
        assert_eq!(token_of(br#"{"token":"t","expires_in":60}"#).unwrap(), "t");
        assert_eq!(token_of(br#"{"access_token":"a"}"#).unwrap(), "a");
        assert_eq!(
            token_of(br#"{"token":"","access_token":"a"}"#).unwrap(),
            "a"
        );
        assert!(
            token_of(br#"{"token":""}"#)
                .unwrap_err()
                .contains("neither")
        );
        assert!(token_of(b"<html>").unwrap_err().contains("expected value"));
    }
}
