//! An OCI distribution client: manifests and blobs from a registry, with auth and TLS.
//!
//! Own code over `reqwest` (rustls, system CAs) rather than the `oci-client` crate.
//! `oci-client` (0.15–0.18) is well kept, but for a node daemon it falls short where
//! it matters here: its root certificates and its plain-HTTP list are per client, not
//! per registry; its platform resolver ignores `variant`; its `pull` buffers whole
//! layers in memory, while we stream each blob into the store's ingest file and must
//! resume a partial file with a `Range` request; and we need typed errors that tell
//! "unknown image" from "auth failed" from "registry unreachable" for the CRI codes.
//! What is left is small: the distribution spec's two GET endpoints, the
//! WWW-Authenticate challenge (Basic and Bearer token), and digest checks.
//!
//! One [`Client`] talks to one registry host; it caches bearer tokens per scope.

mod auth;
pub mod platform;

pub use auth::{challenge_error, parse_challenge, Challenge};
pub use platform::Platform;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest we accept (the distribution spec suggests registries cap at 4 MiB).
const MAX_MANIFEST: usize = 4 << 20;
/// How much of an error page is read (for its message); the rest is not.
const MAX_ERROR_BODY: usize = 64 << 10;
/// Largest token endpoint answer we accept.
pub(crate) const MAX_TOKEN_BODY: usize = 1 << 20;

/// At most `cap` bytes of a response body, and whether there was more (left unread). A
/// registry's manifest, error page or token answer is small: a broken or hostile server
/// must not make the daemon buffer an unbounded body.
pub(crate) async fn body_capped(mut resp: reqwest::Response, cap: usize) -> std::result::Result<(Vec<u8>, bool), reqwest::Error> {
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await? {
        let room = cap - out.len();
        if c.len() > room {
            out.extend_from_slice(&c[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&c);
    }
    Ok((out, false))
}

/// The text of an error page, at most [`MAX_ERROR_BODY`] bytes of it; empty if unreadable.
pub(crate) async fn error_body(resp: reqwest::Response) -> String {
    match body_capped(resp, MAX_ERROR_BODY).await {
        Ok((b, _)) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    }
}

/// Registry settings from the daemon's config (TOML `[registries]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `host:port` entries reached over plain HTTP (never HTTPS).
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Per registry (`host[:port]`, `docker.io` for Docker Hub): credentials and CA files.
    #[serde(default)]
    pub hosts: BTreeMap<String, RegistryHost>,
}

/// Its `Debug` hides the password and token.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryHost {
    pub username: Option<String>,
    pub password: Option<String>,
    /// A bearer token used as is.
    pub token: Option<String>,
    /// PEM files trusted in addition to the system CAs for this registry.
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
    /// Same as listing the host in `insecure`.
    #[serde(default)]
    pub insecure: bool,
}

impl std::fmt::Debug for RegistryHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |o: &Option<String>| o.as_ref().map(|_| "***");
        f.debug_struct("RegistryHost")
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("token", &hidden(&self.token))
            .field("ca_files", &self.ca_files)
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl RegistryConfig {
    pub fn is_insecure(&self, host: &str) -> bool {
        self.insecure.iter().any(|h| h == host) || self.hosts.get(host).is_some_and(|h| h.insecure)
    }

    /// Credentials configured for `host`, if any.
    pub fn auth_for(&self, host: &str) -> Option<Auth> {
        let h = self.hosts.get(host)?;
        if let Some(t) = &h.token {
            return Some(Auth::Token(t.clone()));
        }
        match (&h.username, &h.password) {
            (Some(u), Some(p)) => Some(Auth::Basic { username: u.clone(), password: p.clone() }),
            _ => None,
        }
    }
}

/// Credentials for one pull (CRI `AuthConfig`) or one registry (config).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Auth {
    Basic { username: String, password: String },
    /// A registry bearer token, sent as is.
    Token(String),
    /// An identity token (CRI `AuthConfig.identity_token`, docker's `identitytoken`): an
    /// OAuth2 refresh token, exchanged at the Bearer challenge's realm for an access token.
    IdentityToken(String),
}

impl std::fmt::Debug for Auth {
    // Never print secrets into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Auth::Token(_) => write!(f, "Token(***)"),
            Auth::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

#[cfg(test)]
mod debug_tests {
    #[test]
    fn debug_hides_secrets() {
        let h = super::RegistryHost { username: Some("u".into()), password: Some("pw-secret".into()), token: Some("tok-secret".into()), ..Default::default() };
        let e = crate::config::RegistryEntry { username: Some("u".into()), password: Some("pw-secret".into()), token: Some("tok-secret".into()), ..Default::default() };
        for text in [format!("{h:?}"), format!("{e:?}")] {
            assert!(!text.contains("secret") && text.contains("***") && text.contains("\"u\""), "{text}");
        }
    }
}

/// What went wrong talking to a registry; each names the image and, for blobs, the digest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image {image} not found in registry {registry}: {detail}")]
    NotFound { image: String, registry: String, detail: String },
    #[error("blob {digest} of image {image} not found in registry {registry}")]
    BlobNotFound { image: String, registry: String, digest: String },
    #[error("authentication to registry {registry} failed for image {image}: {detail}")]
    Unauthorized { image: String, registry: String, detail: String },
    #[error("registry {registry} unreachable while pulling {image}: {detail}")]
    Unreachable { image: String, registry: String, detail: String },
    #[error("download of blob {digest} of image {image} interrupted after {done} of {total} bytes: {detail}")]
    Interrupted { image: String, digest: String, done: u64, total: u64, detail: String },
    #[error("registry {registry} answered {status} for {url} (image {image}): {body}")]
    Http { image: String, registry: String, url: String, status: u16, body: String },
    #[error("manifest of image {image} has digest {actual}, expected {expected}")]
    ManifestDigestMismatch { image: String, expected: String, actual: String },
    #[error("blob {digest} of image {image}: {detail}")]
    BlobMismatch { image: String, digest: String, detail: String },
    #[error("image {image}: no manifest for platform {platform} (available: {available})")]
    NoMatchingPlatform { image: String, platform: String, available: String },
    #[error("image {image}: unsupported media type {media_type}")]
    UnsupportedMediaType { image: String, media_type: String },
    #[error("image {image}: bad manifest: {detail}")]
    BadManifest { image: String, detail: String },
    #[error("registry {registry}: TLS setup: {detail}")]
    Tls { registry: String, detail: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Coarse classes, for mapping to gRPC codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Unauthenticated,
    Unavailable,
    DataLoss,
    InvalidArgument,
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } | Error::BlobNotFound { .. } | Error::NoMatchingPlatform { .. } => ErrorKind::NotFound,
            Error::Unauthorized { .. } => ErrorKind::Unauthenticated,
            Error::Unreachable { .. } | Error::Interrupted { .. } | Error::Http { .. } => ErrorKind::Unavailable,
            Error::ManifestDigestMismatch { .. } | Error::BlobMismatch { .. } => ErrorKind::DataLoss,
            Error::UnsupportedMediaType { .. } | Error::BadManifest { .. } | Error::Tls { .. } => ErrorKind::InvalidArgument,
            Error::Io { .. } => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A manifest or index as fetched: raw bytes (what the digest covers), media type, digest.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// A client for one registry host.
pub struct Client {
    http: reqwest::Client,
    registry: String,
    base: String,
    auth: Option<Auth>,
    /// Authorization header per scope, learned from challenges.
    tokens: Mutex<BTreeMap<String, HeaderValue>>,
}

impl Client {
    /// `registry` is the reference's registry (`docker.io`, `127.0.0.1:5000`); `api_host`
    /// where to connect. `auth` (from the request) wins over configured credentials.
    pub fn new(config: &RegistryConfig, registry: &str, api_host: &str, auth: Option<Auth>) -> Result<Client> {
        let insecure = config.is_insecure(registry) || config.is_insecure(api_host);
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(true)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("berthlet/", env!("CARGO_PKG_VERSION")))
            // Redirects (blob storage on another host) keep working; auth is not forwarded.
            .redirect(reqwest::redirect::Policy::limited(10));
        let host_cfg = config.hosts.get(registry).or_else(|| config.hosts.get(api_host));
        for ca in host_cfg.map(|h| h.ca_files.as_slice()).unwrap_or(&[]) {
            let pem = std::fs::read(ca).map_err(|e| Error::Tls { registry: registry.into(), detail: format!("read CA file {}: {e}", ca.display()) })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Tls { registry: registry.into(), detail: format!("CA file {}: {e}", ca.display()) })?;
            if certs.is_empty() {
                return Err(Error::Tls { registry: registry.into(), detail: format!("CA file {} holds no certificate", ca.display()) });
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| Error::Tls { registry: registry.into(), detail: e.to_string() })?;
        let scheme = if insecure { "http" } else { "https" };
        Ok(Client {
            http,
            registry: registry.to_string(),
            base: format!("{scheme}://{api_host}"),
            // Same lookup as the CA files and `insecure`: the reference's registry, then the
            // host actually reached (registry-1.docker.io for docker.io).
            auth: auth.or_else(|| config.auth_for(registry)).or_else(|| config.auth_for(api_host)),
            tokens: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// GET a manifest or index by tag or digest; when `reference` is a digest, the body is checked against it.
    pub async fn manifest(&self, image: &str, repository: &str, reference: &str) -> Result<Fetched> {
        let url = format!("{}/v2/{}/manifests/{}", self.base, repository, reference);
        let accept = [MEDIA_OCI_MANIFEST, MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_LIST].join(", ");
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(&accept).expect("static header"));
        let resp = self.get(image, repository, &url, headers).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            let body = error_body(resp).await;
            return Err(Error::NotFound { image: image.into(), registry: self.registry.clone(), detail: registry_error_text(&body, "manifest unknown") });
        }
        if !status.is_success() {
            return Err(self.http_error(image, &url, resp).await);
        }
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        if resp.content_length().is_some_and(|n| n as usize > MAX_MANIFEST) {
            return Err(Error::BadManifest { image: image.into(), detail: format!("larger than {MAX_MANIFEST} bytes") });
        }
        let (bytes, over) = body_capped(resp, MAX_MANIFEST).await.map_err(|e| self.unreachable(image, e))?;
        if over {
            return Err(Error::BadManifest { image: image.into(), detail: format!("larger than {MAX_MANIFEST} bytes") });
        }
        let digest = sha256_digest(&bytes);
        if reference.contains(':') && reference != digest {
            return Err(Error::ManifestDigestMismatch { image: image.into(), expected: reference.into(), actual: digest });
        }
        // Some registries omit or generalise Content-Type; the body's own mediaType decides then.
        let media_type = match media_type.as_str() {
            MEDIA_OCI_MANIFEST | MEDIA_OCI_INDEX | MEDIA_DOCKER_MANIFEST | MEDIA_DOCKER_LIST => media_type,
            _ => sniff_media_type(&bytes).unwrap_or(media_type),
        };
        Ok(Fetched { bytes, media_type, digest })
    }

    /// Downloads blob `digest` (`size` bytes) into `dest`, continuing a partial file with a
    /// Range request when the registry honours it, else from the start. `progress(done)` is
    /// called as bytes arrive. Does not verify the content (the store's commit does).
    /// Returns true when it continued a partial file.
    pub async fn fetch_blob(
        &self,
        image: &str,
        repository: &str,
        digest: &str,
        size: u64,
        dest: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<bool> {
        let io = |source| Error::Io { path: dest.to_path_buf(), source };
        let have = match tokio::fs::metadata(dest).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(e)),
        };
        if have == size {
            progress(have);
            return Ok(true);
        }
        let url = format!("{}/v2/{}/blobs/{}", self.base, repository, digest);
        let mut headers = HeaderMap::new();
        if have > 0 && have < size {
            headers.insert(RANGE, HeaderValue::from_str(&format!("bytes={have}-")).expect("ascii"));
        }
        let mut resp = self.get(image, repository, &url, headers).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Err(Error::BlobNotFound { image: image.into(), registry: self.registry.clone(), digest: digest.into() });
        }
        if !status.is_success() {
            return Err(self.http_error(image, &url, resp).await);
        }
        let resumed = status == StatusCode::PARTIAL_CONTENT && content_range_start(resp.headers()) == Some(have);
        let mut file = tokio::fs::OpenOptions::new().create(true).write(true).truncate(!resumed).append(resumed).open(dest).await.map_err(io)?;
        let mut done = if resumed { have } else { 0 };
        if resumed {
            tracing::debug!(image, digest, offset = have, "resuming blob download");
        }
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, &mut file);
        let mut last_report = 0u64;
        progress(done);
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    done += c.len() as u64;
                    if done > size {
                        // Never write past the descriptor's size: the content is wrong.
                        drop(out);
                        let _ = tokio::fs::remove_file(dest).await;
                        return Err(Error::BlobMismatch { image: image.into(), digest: digest.into(), detail: format!("registry sent more than the {size} bytes the manifest declares") });
                    }
                    out.write_all(&c).await.map_err(io)?;
                    if done - last_report >= 256 << 10 {
                        last_report = done;
                        progress(done);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = out.flush().await;
                    return Err(Error::Interrupted { image: image.into(), digest: digest.into(), done, total: size, detail: reqwest_error_text(e) });
                }
            }
        }
        out.flush().await.map_err(io)?;
        drop(out);
        file.sync_all().await.map_err(io)?;
        progress(done);
        if done != size {
            return Err(Error::Interrupted { image: image.into(), digest: digest.into(), done, total: size, detail: "connection closed early".into() });
        }
        Ok(resumed)
    }

    /// GET with the auth dance: anonymous (or cached token) first; on 401 answer the challenge once.
    async fn get(&self, image: &str, repository: &str, url: &str, headers: HeaderMap) -> Result<reqwest::Response> {
        let scope = format!("repository:{repository}:pull");
        let cached = self.tokens.lock().expect("token cache").get(&scope).cloned();
        let send = |authz: Option<HeaderValue>| {
            let mut req = self.http.get(url).headers(headers.clone());
            if let Some(a) = authz {
                req = req.header(AUTHORIZATION, a);
            }
            req.send()
        };
        let resp = send(cached.clone()).await.map_err(|e| self.unreachable(image, e))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return self.check_forbidden(image, resp).await;
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.to_string())
            .ok_or_else(|| Error::Unauthorized { image: image.into(), registry: self.registry.clone(), detail: "401 without a WWW-Authenticate challenge".into() })?;
        let challenge = parse_challenge(&challenge).ok_or_else(|| Error::Unauthorized {
            image: image.into(),
            registry: self.registry.clone(),
            detail: format!("unsupported challenge {challenge:?}"),
        })?;
        let authz = auth::answer(&self.http, &challenge, self.auth.as_ref(), &scope)
            .await
            .map_err(|detail| Error::Unauthorized { image: image.into(), registry: self.registry.clone(), detail })?;
        if cached.as_ref() == Some(&authz) {
            return Err(Error::Unauthorized { image: image.into(), registry: self.registry.clone(), detail: "credentials rejected".into() });
        }
        let resp = send(Some(authz.clone())).await.map_err(|e| self.unreachable(image, e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            // A token the registry accepts but that lacks the scope: the token server knew
            // the credentials (or served anonymous) but grants no pull on this repository.
            let insufficient_scope =
                resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(auth::challenge_error).is_some_and(|e| e == "insufficient_scope");
            let detail = match (&self.auth, insufficient_scope) {
                (None, _) => "registry requires credentials and none were given".to_string(),
                (Some(_), true) => format!("access denied: the token issued for these credentials does not grant {scope}"),
                (Some(_), false) => "credentials rejected".to_string(),
            };
            return Err(Error::Unauthorized { image: image.into(), registry: self.registry.clone(), detail });
        }
        self.tokens.lock().expect("token cache").insert(scope, authz);
        self.check_forbidden(image, resp).await
    }

    async fn check_forbidden(&self, image: &str, resp: reqwest::Response) -> Result<reqwest::Response> {
        if resp.status() == StatusCode::FORBIDDEN {
            let body = error_body(resp).await;
            return Err(Error::Unauthorized { image: image.into(), registry: self.registry.clone(), detail: registry_error_text(&body, "access denied") });
        }
        Ok(resp)
    }

    async fn http_error(&self, image: &str, url: &str, resp: reqwest::Response) -> Error {
        let status = resp.status().as_u16();
        let body = error_body(resp).await;
        Error::Http { image: image.into(), registry: self.registry.clone(), url: url.into(), status, body: registry_error_text(&body, "") }
    }

    fn unreachable(&self, image: &str, e: reqwest::Error) -> Error {
        Error::Unreachable { image: image.into(), registry: self.registry.clone(), detail: reqwest_error_text(e) }
    }
}

/// The error and its causes on one line (reqwest's own message is terse), without the
/// URL reqwest appends: after a blob redirect it is a signed storage URL whose query
/// (X-Amz-Signature, ...) is a credential, and this text goes to logs and CRI errors.
pub(crate) fn reqwest_error_text(e: reqwest::Error) -> String {
    error_chain(&e.without_url())
}

/// The error and its causes on one line; any URL in it loses its query string.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    strip_url_queries(&s)
}

/// Cuts the `?query` (and `#fragment`) off every http(s) URL in `s`.
pub(crate) fn strip_url_queries(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("http://").into_iter().chain(rest.find("https://")).min() {
        let url_end = rest[i..].find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>')).map(|n| i + n).unwrap_or(rest.len());
        let url = &rest[i..url_end];
        out.push_str(&rest[..i]);
        match url.find(['?', '#']) {
            Some(q) => {
                out.push_str(&url[..q]);
                out.push_str("?<query hidden>");
            }
            None => out.push_str(url),
        }
        rest = &rest[url_end..];
    }
    out.push_str(rest);
    out
}

/// First `errors[].message` of a distribution error body, else the body (trimmed), else `fallback`.
fn registry_error_text(body: &str, fallback: &str) -> String {
    #[derive(Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    #[derive(Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_str::<Errs>(body) {
        if let Some(first) = e.errors.first() {
            return match (&first.code, &first.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => fallback.into(),
            };
        }
    }
    let t = body.trim();
    if t.is_empty() {
        fallback.into()
    } else {
        t.chars().take(300).collect()
    }
}

fn content_range_start(h: &HeaderMap) -> Option<u64> {
    // "bytes 100-199/200"
    let v = h.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    p.media_type.or_else(|| {
        if p.manifests.is_some() {
            Some(MEDIA_OCI_INDEX.into())
        } else if p.layers.is_some() {
            Some(MEDIA_OCI_MANIFEST.into())
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: Vec<u8>) -> reqwest::Response {
        reqwest::Response::from(http::Response::new(body))
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_their_cap() {
        let (b, over) = body_capped(response(b"small".to_vec()), 16).await.unwrap();
        assert_eq!((b.as_slice(), over), (&b"small"[..], false));
        let (b, over) = body_capped(response(vec![b'x'; 16]), 16).await.unwrap();
        assert_eq!((b.len(), over), (16, false), "exactly the cap is not over");
        let (b, over) = body_capped(response(vec![b'x'; 17]), 16).await.unwrap();
        assert_eq!((b.len(), over), (16, true));
        let page = error_body(response(vec![b'e'; 3 * MAX_ERROR_BODY])).await;
        assert_eq!(page.len(), MAX_ERROR_BODY, "an error page is cut at the cap");
    }

    #[test]
    fn urls_in_error_text_lose_their_query() {
        let t = "error sending request for url (https://s3.example/b/x?X-Amz-Signature=abc&X-Amz-Credential=k): connection reset";
        let out = strip_url_queries(t);
        assert_eq!(out, "error sending request for url (https://s3.example/b/x?<query hidden>): connection reset");
        assert_eq!(strip_url_queries("no url here"), "no url here");
        assert_eq!(strip_url_queries("http://a/b and https://c/d#f?x"), "http://a/b and https://c/d?<query hidden>");
    }

    #[tokio::test]
    async fn reqwest_errors_are_reported_without_their_url() {
        // Port 1 on loopback: connection refused, an error that carries the URL.
        let e = reqwest::Client::new().get("http://127.0.0.1:1/blob?X-Amz-Signature=s3cret").send().await.unwrap_err();
        assert!(e.to_string().contains("s3cret"), "reqwest's own text has the url: {e}");
        let t = reqwest_error_text(e);
        assert!(!t.contains("s3cret") && !t.contains("127.0.0.1:1/blob"), "{t}");
    }

    #[test]
    fn error_text_from_distribution_body() {
        let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(registry_error_text(body, "f"), "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(registry_error_text("", "f"), "f");
        assert_eq!(registry_error_text("plain\n", "f"), "plain");
    }

    #[test]
    fn content_range() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::CONTENT_RANGE, HeaderValue::from_static("bytes 100-199/200"));
        assert_eq!(content_range_start(&h), Some(100));
    }

    #[test]
    fn sniff() {
        assert_eq!(sniff_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(), Some(MEDIA_OCI_INDEX));
        assert_eq!(sniff_media_type(br#"{"schemaVersion":2,"layers":[]}"#).as_deref(), Some(MEDIA_OCI_MANIFEST));
        assert_eq!(sniff_media_type(br#"{"mediaType":"x","layers":[]}"#).as_deref(), Some("x"));
    }

    #[test]
    fn config_lookup() {
        let c: RegistryConfig = serde_json::from_str(
            r#"{"insecure":["127.0.0.1:5000"],"hosts":{"r.example:443":{"username":"u","password":"p","ca_files":["/x.pem"]},"t.example":{"token":"tk","insecure":true}}}"#,
        )
        .unwrap();
        assert!(c.is_insecure("127.0.0.1:5000"));
        assert!(c.is_insecure("t.example"));
        assert!(!c.is_insecure("r.example:443"));
        assert_eq!(c.auth_for("r.example:443"), Some(Auth::Basic { username: "u".into(), password: "p".into() }));
        assert_eq!(c.auth_for("t.example"), Some(Auth::Token("tk".into())));
        assert_eq!(c.auth_for("other"), None);
        assert_eq!(format!("{:?}", c.auth_for("r.example:443").unwrap()), "Basic(u, ***)");
    }

    #[test]
    fn credentials_follow_the_same_lookup_as_ca_and_insecure() {
        let c: RegistryConfig = serde_json::from_str(r#"{"hosts":{"registry-1.docker.io":{"username":"u","password":"p"}}}"#).unwrap();
        let client = Client::new(&c, "docker.io", "registry-1.docker.io", None).unwrap();
        assert_eq!(client.auth, Some(Auth::Basic { username: "u".into(), password: "p".into() }));
        let client = Client::new(&c, "docker.io", "registry-1.docker.io", Some(Auth::Token("t".into()))).unwrap();
        assert_eq!(client.auth, Some(Auth::Token("t".into())), "the request's credentials win");
    }

    #[test]
    fn digest_of_bytes() {
        assert_eq!(sha256_digest(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
