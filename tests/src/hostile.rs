//! A hostile registry: an HTTP proxy in front of a real registry that answers some requests
//! itself (other bytes for a blob, another manifest for a tag, a stall, a demand for a token)
//! and forwards the rest.
//! The code under test talks HTTP to it as to any registry.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the proxy answers a request whose path ends with `path_suffix`.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Answer 200 with these bytes and content type.
    Replace {
        /// Matched against the end of the request path (e.g. `/manifests/tuf-metadata`).
        path_suffix: String,
        /// The body served instead.
        body: Vec<u8>,
        /// The Content-Type served.
        content_type: String,
    },
    /// Answer `status` (`200 OK`, `500 Internal Server Error`) with a body that never ends
    /// (chunked, no length), counting what it sent.
    Endless {
        /// Matched against the end of the request path.
        path_suffix: String,
        /// The status line's code and reason.
        status: &'static str,
        /// Body bytes written so far, over all requests.
        sent: Arc<std::sync::atomic::AtomicU64>,
    },
    /// Answer `status` (`401 Unauthorized`) with this JSON body.
    Refuse {
        /// Matched against the end of the request path.
        path_suffix: String,
        /// Matched against the request method, when given.
        method: Option<&'static str>,
        /// The status line's code and reason.
        status: &'static str,
        /// The body answered.
        body: String,
    },
    /// Answer 307 sending the client to `location`, as registries storing blobs elsewhere do.
    Redirect {
        /// Matched against the end of the request path.
        path_suffix: String,
        /// The `Location` answered.
        location: String,
    },
    /// Answer 404, as a registry without it: a mirror withholding a file.
    Hide {
        /// Matched against the end of the request path.
        path_suffix: String,
    },
    /// Never answer.
    Stall {
        /// Matched against the end of the request path.
        path_suffix: String,
    },
    /// Forward the request, then send the answer's body `bytes` at a time with a `pause`
    /// between: each read comes well within any read timeout, the whole takes long.
    Trickle {
        /// Matched against the end of the request path.
        path_suffix: String,
        /// Body bytes per write.
        bytes: usize,
        /// Pause after each write.
        pause: std::time::Duration,
    },
    /// Forward each request only once the test hands out a permit for it, so a test can
    /// choose what happens while the client waits.
    Hold {
        /// Matched against the end of the request path.
        path_suffix: String,
        /// One permit per request let through.
        permits: Arc<tokio::sync::Semaphore>,
    },
    /// Like [`Rule::Hold`], for writes only (`POST`, `PUT`, `PATCH`, `DELETE`): a test can
    /// hold a writer between reading and writing.
    HoldWrites {
        /// Matched against the end of the request path.
        path_suffix: String,
        /// One permit per write let through.
        permits: Arc<tokio::sync::Semaphore>,
        /// Writes that came so far, held or let through.
        arrived: Arc<std::sync::atomic::AtomicUsize>,
    },
    /// Answer 500 to the next `times` requests with `method` (`PUT`, `GET`, ...), as a
    /// registry under load does; forward the rest.
    Fail {
        /// Matched against the end of the request path.
        path_suffix: String,
        /// The request method.
        method: &'static str,
        /// Failures left to answer.
        times: Arc<std::sync::atomic::AtomicUsize>,
    },
    /// Answer tag listings in pages of `per_page` tags in lexical order, after the `last`
    /// query parameter, as registries that paginate do (OCI distribution spec, "Listing
    /// Tags"); distribution 2.8 itself answers every tag at once.
    PageTags {
        /// Tags per answer.
        per_page: usize,
    },
    /// Answer tag listings in pages of `per_page` tags named by an opaque cursor
    /// (`?page=K`), each naming the next in its `Link` header, as registries paging so do;
    /// `last` is ignored (a request without a cursor gets the first page).
    PageTagsByLink {
        /// Tags per answer.
        per_page: usize,
        /// Pages from this one on are answered 404, as by a registry that lost them.
        lost_from: Option<usize>,
        /// What each page's `Link` names instead of the next page (the first page again:
        /// pages that lead back; another host).
        link_to: Option<String>,
    },
    /// Answer every tag listing with `per_page` tags never listed before (`t00000000`,
    /// `t00000001`, ... after the `last` query parameter): a listing without end.
    InventTags {
        /// Tags per answer.
        per_page: usize,
    },
    /// Want a bearer token on every `/v2/` request, as registries with anonymous tokens do
    /// (Docker Hub, ghcr.io): 401 with a challenge naming `/token`, which hands one out.
    RequireToken,
    /// The same for writes only (`POST`, `PUT`, `PATCH`, `DELETE`) and the `/v2/` ping that
    /// tells clients so, as registries that let anyone pull but not push do.
    RequireTokenToWrite,
    /// The same for every request to a repository, while the `/v2/` ping is answered to
    /// anyone: registries with public and private repositories side by side.
    RequireTokenBeyondRoot,
    /// Want `Authorization: Basic <credential>` on every `/v2/` request (401 with a `Basic`
    /// challenge otherwise), as registries behind a plain password check do.
    RequireBasic {
        /// `user:password`, base64-encoded.
        credential: String,
    },
}

/// The token [`Rule::RequireToken`] hands out.
const TOKEN: &str = "anonymous-token";

/// A running hostile proxy; stops when dropped.
pub struct HostileRegistry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    /// The path of every request received, in order.
    pub seen: Arc<std::sync::Mutex<Vec<String>>>,
    /// Every request received, in order: method, path and the credential it carried.
    pub heard: Arc<std::sync::Mutex<Vec<Heard>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Where the proxy notes what it hears: [`HostileRegistry::seen`] and
/// [`HostileRegistry::heard`].
type Log = (
    Arc<std::sync::Mutex<Vec<String>>>,
    Arc<std::sync::Mutex<Vec<Heard>>>,
);

/// A request as the proxy heard it.
#[derive(Debug, Clone)]
pub struct Heard {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, without its `?`.
    pub query: String,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<String>,
    /// The body of a form (`application/x-www-form-urlencoded`), as sent.
    pub form: Option<String>,
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileRegistry {
    /// Proxies to the registry at `upstream` (`host:port`), applying `rules` first.
    pub async fn start(upstream: &str, rules: Vec<Rule>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().expect("address").to_string();
        let own = host.clone();
        let upstream = upstream.to_string();
        let rules = Arc::new(rules);
        let seen = Arc::<std::sync::Mutex<Vec<String>>>::default();
        let heard = Arc::<std::sync::Mutex<Vec<Heard>>>::default();
        let log = (seen.clone(), heard.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, rules, log) = (upstream.clone(), rules.clone(), log.clone());
                let realm = format!("http://{own}/token");
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, &rules, &log, &realm).await;
                });
            }
        });
        HostileRegistry {
            host,
            seen,
            heard,
            task,
        }
    }
}

impl HostileRegistry {
    /// Waits until the proxy has been asked for `count` paths ending with `suffix`.
    pub async fn asked(&self, suffix: &str, count: usize) {
        let times = || {
            let seen = self.seen.lock().expect("not poisoned");
            seen.iter().filter(|path| path.ends_with(suffix)).count()
        };
        for _ in 0..1000 {
            if times() >= count {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "{suffix} was not asked for {count} times: {:?}",
            self.seen.lock().expect("not poisoned")
        );
    }
}

/// Answers `body` as a JSON 200 and closes the connection.
async fn answer_json(client: &mut TcpStream, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body.as_bytes()).await?;
    client.shutdown().await
}

/// Answers 404 with an error envelope of `code`.
async fn answer_not_found(
    client: &mut TcpStream,
    code: &str,
    message: &str,
) -> std::io::Result<()> {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string();
    let answer = format!(
        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(answer.as_bytes()).await?;
    client.shutdown().await
}

/// One request per connection: read it, answer from the rules or forward it.
async fn serve(
    mut client: TcpStream,
    upstream: &str,
    rules: &[Rule],
    (seen, heard): &Log,
    realm: &str,
) -> std::io::Result<()> {
    let request = read_request(&mut client).await?;
    let request_text = String::from_utf8_lossy(&request);
    let path = request_text
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    let (path, query) = path.split_once('?').unwrap_or((&path, ""));
    let authorization = request_text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    seen.lock().expect("not poisoned").push(path.to_string());
    heard.lock().expect("not poisoned").push(Heard {
        method: request_text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
        path: path.to_string(),
        query: query.to_string(),
        authorization: authorization.clone(),
        form: request_text
            .to_lowercase()
            .contains("content-type: application/x-www-form-urlencoded")
            .then(|| {
                let (_, body) = request_text.split_once("\r\n\r\n").unwrap_or_default();
                body.to_string()
            }),
    });
    for rule in rules {
        match rule {
            Rule::Replace {
                path_suffix,
                body,
                content_type,
            } if path.ends_with(path_suffix.as_str()) => {
                // Lie like a capable attacker: claim the digest that was asked for.
                let digest = match path.rsplit('/').next() {
                    Some(asked) if asked.starts_with("sha256:") => asked.to_string(),
                    _ => tuf_oci::layout::sha256_digest(body),
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                     Docker-Content-Digest: {digest}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                client.write_all(head.as_bytes()).await?;
                if !head_only(&request) {
                    client.write_all(body).await?;
                }
                return client.shutdown().await;
            }
            Rule::Endless {
                path_suffix,
                status,
                sent,
            } if path.ends_with(path_suffix.as_str()) => {
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                     Transfer-Encoding: chunked\r\n\r\n"
                );
                client.write_all(head.as_bytes()).await?;
                let chunk = vec![b' '; 64 * 1024];
                let framed =
                    [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                // Until the client hangs up.
                loop {
                    client.write_all(&framed).await?;
                    sent.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Rule::Redirect {
                path_suffix,
                location,
            } if path.ends_with(path_suffix.as_str()) => {
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                client.write_all(answer.as_bytes()).await?;
                return client.shutdown().await;
            }
            Rule::PageTags { per_page } if path.ends_with("/tags/list") => {
                let last = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("last="))
                    .unwrap_or_default();
                let mut tags = all_tags(upstream, path).await?;
                tags.sort();
                let page: Vec<&String> = tags
                    .iter()
                    .filter(|tag| tag.as_str() > last)
                    .take(*per_page)
                    .collect();
                let name = path
                    .trim_start_matches("/v2/")
                    .trim_end_matches("/tags/list");
                let body = serde_json::json!({ "name": name, "tags": page }).to_string();
                return answer_json(&mut client, &body).await;
            }
            Rule::PageTagsByLink {
                per_page,
                lost_from,
                link_to,
            } if path.ends_with("/tags/list") => {
                let page = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("page="))
                    .and_then(|k| k.parse::<usize>().ok())
                    .unwrap_or(0);
                if lost_from.is_some_and(|lost| page >= lost) {
                    return answer_not_found(&mut client, "NAME_UNKNOWN", "lost").await;
                }
                let mut tags = all_tags(upstream, path).await?;
                tags.sort();
                let listed: Vec<&String> =
                    tags.iter().skip(page * per_page).take(*per_page).collect();
                let body = serde_json::json!({ "tags": listed }).to_string();
                let next = link_to
                    .clone()
                    .unwrap_or_else(|| format!("{path}?n={per_page}&page={}", page + 1));
                let link = if (page + 1) * per_page < tags.len() {
                    format!("Link: <{next}>; rel=\"next\"\r\n")
                } else {
                    String::new()
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{link}\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                client.write_all(head.as_bytes()).await?;
                client.write_all(body.as_bytes()).await?;
                return client.shutdown().await;
            }
            Rule::InventTags { per_page } if path.ends_with("/tags/list") => {
                let after = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("last=t"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .map_or(0, |n| n + 1);
                let tags: Vec<String> = (after..after + *per_page as u64)
                    .map(|n| format!("t{n:08}"))
                    .collect();
                let body = serde_json::json!({ "name": "invented", "tags": tags }).to_string();
                return answer_json(&mut client, &body).await;
            }
            Rule::Hide { path_suffix } if path.ends_with(path_suffix.as_str()) => {
                return answer_not_found(&mut client, "MANIFEST_UNKNOWN", "withheld").await;
            }
            Rule::Stall { path_suffix } if path.ends_with(path_suffix.as_str()) => {
                std::future::pending::<()>().await;
            }
            Rule::Hold {
                path_suffix,
                permits,
            } if path.ends_with(path_suffix.as_str()) => {
                permits
                    .acquire()
                    .await
                    .map_err(std::io::Error::other)?
                    .forget();
            }
            Rule::HoldWrites {
                path_suffix,
                permits,
                arrived,
            } if path.ends_with(path_suffix.as_str()) && writes(&request) => {
                arrived.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                permits
                    .acquire()
                    .await
                    .map_err(std::io::Error::other)?
                    .forget();
            }
            Rule::Fail {
                path_suffix,
                method,
                times,
            } if path.ends_with(path_suffix.as_str())
                && request.starts_with(format!("{method} ").as_bytes())
                && times
                    .fetch_update(
                        std::sync::atomic::Ordering::SeqCst,
                        std::sync::atomic::Ordering::SeqCst,
                        |left| left.checked_sub(1),
                    )
                    .is_ok() =>
            {
                let body = r#"{"errors":[{"code":"UNKNOWN","message":"failed on purpose"}]}"#;
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                client.write_all(answer.as_bytes()).await?;
                return client.shutdown().await;
            }
            Rule::RequireToken | Rule::RequireTokenToWrite | Rule::RequireTokenBeyondRoot
                if path == "/token" =>
            {
                let body = format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                client.write_all(head.as_bytes()).await?;
                return client.shutdown().await;
            }
            Rule::RequireToken | Rule::RequireTokenToWrite | Rule::RequireTokenBeyondRoot
                if match rule {
                    Rule::RequireToken => true,
                    Rule::RequireTokenBeyondRoot => path != "/v2/",
                    _ => path == "/v2/" || writes(&request),
                } && !request_text
                    .to_lowercase()
                    .contains(&format!("authorization: bearer {TOKEN}")) =>
            {
                let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}"#;
                let mut answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n\
                     WWW-Authenticate: Bearer realm=\"{realm}\",service=\"hostile\"\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if !head_only(&request) {
                    answer.push_str(body);
                }
                client.write_all(answer.as_bytes()).await?;
                return client.shutdown().await;
            }
            Rule::Refuse {
                path_suffix,
                method,
                status,
                body,
            } if path.ends_with(path_suffix.as_str())
                && method
                    .is_none_or(|method| request.starts_with(format!("{method} ").as_bytes())) =>
            {
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                client.write_all(answer.as_bytes()).await?;
                return client.shutdown().await;
            }
            Rule::RequireBasic { credential }
                if authorization.as_deref() != Some(format!("Basic {credential}").as_str()) =>
            {
                let answer = "HTTP/1.1 401 Unauthorized\r\n\
                     WWW-Authenticate: Basic realm=\"hostile\"\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n";
                client.write_all(answer.as_bytes()).await?;
                return client.shutdown().await;
            }
            _ => {}
        }
    }
    let response = forward(&request, upstream).await?;
    for rule in rules {
        if let Rule::Trickle {
            path_suffix,
            bytes,
            pause,
        } = rule
            && path.ends_with(path_suffix.as_str())
        {
            let body = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(0, |end| end + 4);
            client.write_all(&response[..body]).await?;
            for chunk in response[body..].chunks(*bytes) {
                client.write_all(chunk).await?;
                tokio::time::sleep(*pause).await;
            }
            return client.shutdown().await;
        }
    }
    client.write_all(&response).await?;
    client.shutdown().await
}

/// The upstream's whole answer to `request`: a closed connection is asked for, so the answer
/// is everything until EOF.
async fn forward(request: &[u8], upstream: &str) -> std::io::Result<Vec<u8>> {
    let mut forwarded =
        String::from_utf8_lossy(request).replacen("\r\n", "\r\nConnection: close\r\n", 1);
    forwarded = forwarded.replace("Connection: keep-alive\r\n", "");
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(forwarded.as_bytes()).await?;
    let mut response = Vec::new();
    server.read_to_end(&mut response).await?;
    Ok(response)
}

/// Every tag of the repository whose listing is at `path`, asked of `upstream` over HTTP/1.0
/// (so the answer is not chunked).
async fn all_tags(upstream: &str, path: &str) -> std::io::Result<Vec<String>> {
    let mut server = TcpStream::connect(upstream).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {upstream}\r\n\r\n");
    server.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    server.read_to_end(&mut response).await?;
    let body = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |end| &response[end + 4..]);
    let listed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    Ok(listed["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tag| tag.as_str().map(str::to_string))
        .collect())
}

fn head_only(request: &[u8]) -> bool {
    request.starts_with(b"HEAD ")
}

fn writes(request: &[u8]) -> bool {
    [&b"POST "[..], b"PUT ", b"PATCH ", b"DELETE "]
        .iter()
        .any(|method| request.starts_with(method))
}

/// Reads a request head and, when it declares one, its body.
async fn read_request(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut request = Vec::new();
    let mut buffer = [0; 8192];
    loop {
        let n = client.read(&mut buffer).await?;
        if n == 0 {
            return Ok(request);
        }
        request.extend_from_slice(&buffer[..n]);
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while request.len() < end + 4 + length {
                let n = client.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..n]);
            }
            return Ok(request);
        }
    }
}
