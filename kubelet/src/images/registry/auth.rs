//! Answering a registry's `WWW-Authenticate` challenge: Basic (credentials on every
//! request) or Bearer (the distribution token flow: GET realm?service=&scope= with the
//! credentials, use the returned token; with an identity token, the OAuth2 refresh-token
//! grant: POST realm with grant_type=refresh_token, service, scope, client_id, refresh_token).

use base64::Engine as _;
use reqwest::header::HeaderValue;
use reqwest::StatusCode;
use serde::Deserialize;

use super::Auth;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic { realm: Option<String> },
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses `Bearer realm="https://auth",service="registry",scope="repository:x:pull"` or `Basic realm="x"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic { realm: get("realm") })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
    } else {
        None
    }
}

/// `k="v", k2=v2` pairs; quoted values may hold commas and `\"`.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n)
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_string(), val.trim().to_string()));
    }
    out
}

/// The `error` parameter of a Bearer challenge (`invalid_token`, `insufficient_scope`), if any.
pub fn challenge_error(header: &str) -> Option<String> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    parse_params(rest).into_iter().find(|(k, _)| k.eq_ignore_ascii_case("error")).map(|(_, v)| v)
}

/// `client_id` of the OAuth2 refresh-token grant.
const CLIENT_ID: &str = "berthlet";

fn basic_header(username: &str, password: &str) -> HeaderValue {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut v = HeaderValue::from_str(&format!("Basic {enc}")).expect("base64 is ascii");
    v.set_sensitive(true);
    v
}

fn bearer_header(token: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "token holds characters not allowed in a header".to_string())?;
    v.set_sensitive(true);
    Ok(v)
}

/// The Authorization header answering `challenge` for `scope`, or why there is none.
pub(super) async fn answer(http: &reqwest::Client, challenge: &Challenge, auth: Option<&Auth>, scope: &str) -> Result<HeaderValue, String> {
    match challenge {
        Challenge::Basic { .. } => match auth {
            Some(Auth::Basic { username, password }) => Ok(basic_header(username, password)),
            Some(Auth::Token(t)) => bearer_header(t),
            Some(Auth::IdentityToken(_)) => Err("registry asks for basic auth; an identity token is only exchanged at a Bearer token endpoint".into()),
            None => Err("registry requires credentials (basic auth) and none were given".into()),
        },
        Challenge::Bearer { realm, service, scope: challenge_scope } => {
            if let Some(Auth::Token(t)) = auth {
                return bearer_header(t);
            }
            let mut url = reqwest::Url::parse(realm).map_err(|e| format!("token realm {realm:?}: {e}"))?;
            let scope = challenge_scope.as_deref().unwrap_or(scope);
            let req = if let Some(Auth::IdentityToken(refresh)) = auth {
                // OAuth2 refresh-token grant (docker's identity token), as containerd does.
                let mut form = vec![("grant_type", "refresh_token"), ("client_id", CLIENT_ID)];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                form.push(("scope", scope));
                form.push(("refresh_token", refresh));
                http.post(url.clone()).form(&form)
            } else {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", scope);
                }
                let mut req = http.get(url.clone());
                if let Some(Auth::Basic { username, password }) = auth {
                    req = req.header(reqwest::header::AUTHORIZATION, basic_header(username, password));
                }
                req
            };
            let origin = url.origin().ascii_serialization();
            let resp = req.send().await.map_err(|e| format!("token endpoint {origin}: {}", super::reqwest_error_text(e)))?;
            let status = resp.status();
            if !status.is_success() {
                let body = super::error_body(resp).await;
                let why = match super::registry_error_text(&body, "") {
                    t if t.is_empty() => String::new(),
                    t => format!(": {t}"),
                };
                return Err(match (status, auth) {
                    (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, Some(_)) => format!("credentials rejected by token endpoint {origin} ({status}{why})"),
                    (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, None) => {
                        format!("token endpoint {origin} requires credentials and none were given ({status}{why})")
                    }
                    _ => format!("token endpoint {origin} answered {status}{why}"),
                });
            }
            #[derive(Deserialize)]
            struct TokenResponse {
                token: Option<String>,
                access_token: Option<String>,
            }
            let body: TokenResponse = resp.json_bytes().await?;
            let token = body.token.or(body.access_token).ok_or("token endpoint returned no token")?;
            bearer_header(&token)
        }
    }
}

trait JsonBytes {
    async fn json_bytes<T: for<'de> Deserialize<'de>>(self) -> Result<T, String>;
}

impl JsonBytes for reqwest::Response {
    async fn json_bytes<T: for<'de> Deserialize<'de>>(self) -> Result<T, String> {
        let (b, over) = super::body_capped(self, super::MAX_TOKEN_BODY).await.map_err(|e| format!("token response: {}", super::reqwest_error_text(e)))?;
        if over {
            return Err(format!("token response larger than {} bytes", super::MAX_TOKEN_BODY));
        }
        serde_json::from_slice(&b).map_err(|e| format!("token response: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testhttp::json_response;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into())
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic { realm: Some("Registry Realm".into()) }));
        assert_eq!(parse_challenge("basic"), Some(Challenge::Basic { realm: None }));
        assert_eq!(
            parse_challenge(r#"Bearer realm=https://a/t, scope="repository:a/b:pull,push""#),
            Some(Challenge::Bearer { realm: "https://a/t".into(), service: None, scope: Some("repository:a/b:pull,push".into()) })
        );
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn challenge_errors() {
        let h = r#"Bearer realm="http://t/token",service="reg",scope="repository:a/b:pull",error="insufficient_scope""#;
        assert_eq!(challenge_error(h).as_deref(), Some("insufficient_scope"));
        assert_eq!(challenge_error(r#"Bearer realm="http://t/token",service="reg""#), None);
        assert_eq!(challenge_error(r#"Basic realm="error""#), None);
    }

    /// A one-shot token endpoint on 127.0.0.1: its realm, and a handle giving the request.
    async fn one_shot(response: String) -> (String, tokio::task::JoinHandle<String>) {
        let (addr, h) = crate::testhttp::one_shot(response).await;
        (format!("http://{addr}/token"), h)
    }

    fn bearer(realm: &str) -> Challenge {
        Challenge::Bearer { realm: realm.into(), service: Some("reg svc".into()), scope: Some("repository:a/b:pull".into()) }
    }

    #[tokio::test]
    async fn token_flow_sends_service_scope_and_credentials() {
        let (realm, server) = one_shot(json_response("200 OK", r#"{"access_token":"tok.en.sig","expires_in":300}"#)).await;
        let auth = Auth::Basic { username: "u".into(), password: "p".into() };
        let h = answer(&reqwest::Client::new(), &bearer(&realm), Some(&auth), "repository:x:pull").await.unwrap();
        assert_eq!(h.to_str().unwrap(), "Bearer tok.en.sig");
        let head = server.await.unwrap();
        // The challenge's scope wins over the client's own; the service is form-encoded.
        assert!(head.starts_with("GET /token?service=reg+svc&scope=repository%3Aa%2Fb%3Apull HTTP/1.1\r\n"), "{head}");
        assert!(head.to_lowercase().contains("\r\nauthorization: basic dtpw\r\n"), "{head}");
    }

    #[tokio::test]
    async fn token_endpoint_refusals_are_explained() {
        let refused = || json_response("401 Unauthorized", r#"{"errors":[{"code":"UNAUTHORIZED","message":"incorrect password"}]}"#);
        let http = reqwest::Client::new();
        let (realm, server) = one_shot(refused()).await;
        let auth = Auth::Basic { username: "u".into(), password: "bad".into() };
        let e = answer(&http, &bearer(&realm), Some(&auth), "repository:x:pull").await.unwrap_err();
        assert!(e.starts_with("credentials rejected by token endpoint http://127.0.0.1:"), "{e}");
        assert!(e.ends_with("(401 Unauthorized: UNAUTHORIZED: incorrect password)"), "{e}");
        server.await.unwrap();

        let (realm, server) = one_shot(refused()).await;
        let e = answer(&http, &bearer(&realm), None, "repository:x:pull").await.unwrap_err();
        assert!(e.contains("requires credentials and none were given"), "{e}");
        assert!(!server.await.unwrap().to_lowercase().contains("authorization:"));

        let (realm, server) = one_shot(json_response("503 Service Unavailable", "")).await;
        let e = answer(&http, &bearer(&realm), None, "repository:x:pull").await.unwrap_err();
        assert!(e.ends_with("answered 503 Service Unavailable"), "{e}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn identity_token_is_exchanged_with_the_refresh_token_grant() {
        let (realm, server) = one_shot(json_response("200 OK", r#"{"access_token":"acc.ess","refresh_token":"new","expires_in":300}"#)).await;
        let auth = Auth::IdentityToken("refr/esh".into());
        let h = answer(&reqwest::Client::new(), &bearer(&realm), Some(&auth), "repository:x:pull").await.unwrap();
        assert_eq!(h.to_str().unwrap(), "Bearer acc.ess");
        let req = server.await.unwrap();
        assert!(req.starts_with("POST /token HTTP/1.1\r\n"), "{req}");
        assert!(!req.to_lowercase().contains("\r\nauthorization:"), "{req}");
        let body = req.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(
            body,
            "grant_type=refresh_token&client_id=berthlet&service=reg+svc&scope=repository%3Aa%2Fb%3Apull&refresh_token=refr%2Fesh"
        );
        // A Basic challenge cannot take it.
        let e = answer(&reqwest::Client::new(), &Challenge::Basic { realm: None }, Some(&auth), "s").await.unwrap_err();
        assert!(e.contains("identity token"), "{e}");
    }

    #[test]
    fn basic_is_base64() {
        assert_eq!(basic_header("u", "p").to_str().unwrap(), "Basic dTpw");
    }
}
