//! Image references, parsed and normalised the way docker and containerd do:
//! `busybox` → `docker.io/library/busybox:latest`, `user/img` →
//! `docker.io/user/img:latest`, `host:port/a/b:tag`, `localhost/x`,
//! `name@sha256:<64 hex>` and `name:tag@sha256:<64 hex>`.
//!
//! Grammar (the distribution project's reference grammar):
//! `[domain[:port]/]path-component(/path-component)*[:tag][@digest]`, where the
//! first component is a domain only if it contains `.` or `:`, is `localhost`,
//! or has an upper-case letter; path components are lower case
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`; a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.

use std::fmt;

/// The registry implied when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Docker Hub's API endpoint for `docker.io`.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// Why a reference string was refused; each names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference {input:?}: empty")]
    Empty { input: String },
    #[error("invalid image reference {input:?}: repository name must be lowercase")]
    Uppercase { input: String },
    #[error("invalid image reference {input:?}: bad registry host {host:?}")]
    Registry { input: String, host: String },
    #[error("invalid image reference {input:?}: bad path component {component:?} (lowercase letters, digits and separators . _ __ -)")]
    Component { input: String, component: String },
    #[error("invalid image reference {input:?}: bad tag {tag:?} (up to 128 of A-Z a-z 0-9 _ . -, not starting with . or -)")]
    Tag { input: String, tag: String },
    #[error("invalid image reference {input:?}: bad digest {digest:?} (expected sha256:<64 lowercase hex>)")]
    Digest { input: String, digest: String },
    #[error("invalid image reference {input:?}: repository name longer than 255 characters")]
    TooLong { input: String },
    #[error("invalid image reference {input:?}: a 64-character hex string is an image id, not a repository name")]
    LooksLikeId { input: String },
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `input`; a reference with neither tag nor digest gets `:latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let err_input = || input.to_string();
        if input.is_empty() {
            return Err(ReferenceError::Empty { input: err_input() });
        }
        // Digest: everything after the first '@'.
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(|_| ReferenceError::Digest { input: err_input(), digest: d.to_string() })?;
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        if rest.is_empty() {
            return Err(ReferenceError::Empty { input: err_input() });
        }
        // Tag: after the last ':' that follows the last '/' (a ':' before that is a port).
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                let tag = &rest[i + 1..];
                if !valid_tag(tag) {
                    return Err(ReferenceError::Tag { input: err_input(), tag: tag.to_string() });
                }
                (&rest[..i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::Empty { input: err_input() });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong { input: err_input() });
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if looks_like_domain(first) => (first.to_string(), path),
            _ => (DEFAULT_REGISTRY.to_string(), name),
        };
        if !valid_domain(&registry) {
            return Err(ReferenceError::Registry { input: err_input(), host: registry });
        }
        let registry = if registry == "index.docker.io" { DEFAULT_REGISTRY.to_string() } else { registry };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase { input: err_input() });
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::Component { input: err_input(), component: component.to_string() });
            }
        }
        if registry == DEFAULT_REGISTRY && path.len() == 64 && path.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::LooksLikeId { input: err_input() });
        }
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// `docker.io`, `127.0.0.1:5000`, ...
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (with port) to talk to: `registry-1.docker.io` for Docker Hub.
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// `library/busybox`, `a/b`, ...
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry's manifest endpoint for: the digest when there is one.
    pub fn manifest_reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// `registry/repository@digest`.
    pub fn digest_reference(&self, digest: &str) -> String {
        format!("{}@{}", self.name(), digest)
    }

    /// `registry/repository:tag`, if tagged.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{}", self.name(), t))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Checks `sha256:<64 lowercase hex>` (the only algorithm registries use for images).
pub fn validate_digest(d: &str) -> Result<(), ()> {
    match d.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {
            Ok(())
        }
        _ => Err(()),
    }
}

fn looks_like_domain(s: &str) -> bool {
    s.contains('.') || s.contains(':') || s == "localhost" || s.chars().any(|c| c.is_ascii_uppercase())
}

fn valid_domain(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        // IPv6 literal: [addr]:port
        let Some((addr, after)) = rest.split_once(']') else { return false };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u32>().map_or(true, |n| n > 65535) {
            return false;
        }
    }
    if s.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises() {
        let d = D;
        let cases: Vec<(String, String, &str, &str, Option<&str>, bool)> = vec![
            // input, display, registry, repository, tag, has digest
            ("busybox".into(), "docker.io/library/busybox:latest".into(), "docker.io", "library/busybox", Some("latest"), false),
            ("busybox:1.36".into(), "docker.io/library/busybox:1.36".into(), "docker.io", "library/busybox", Some("1.36"), false),
            ("user/img".into(), "docker.io/user/img:latest".into(), "docker.io", "user/img", Some("latest"), false),
            ("docker.io/busybox".into(), "docker.io/library/busybox:latest".into(), "docker.io", "library/busybox", Some("latest"), false),
            ("index.docker.io/library/busybox:x".into(), "docker.io/library/busybox:x".into(), "docker.io", "library/busybox", Some("x"), false),
            ("localhost/x".into(), "localhost/x:latest".into(), "localhost", "x", Some("latest"), false),
            ("localhost:5000/x:v1".into(), "localhost:5000/x:v1".into(), "localhost:5000", "x", Some("v1"), false),
            ("127.0.0.1:5000/a/b:tag".into(), "127.0.0.1:5000/a/b:tag".into(), "127.0.0.1:5000", "a/b", Some("tag"), false),
            ("quay.io/a/b/c".into(), "quay.io/a/b/c:latest".into(), "quay.io", "a/b/c", Some("latest"), false),
            ("Registry/x".into(), "Registry/x:latest".into(), "Registry", "x", Some("latest"), false),
            ("[::1]:5000/x".into(), "[::1]:5000/x:latest".into(), "[::1]:5000", "x", Some("latest"), false),
            ("a_b__c-d--e/g".into(), "docker.io/a_b__c-d--e/g:latest".into(), "docker.io", "a_b__c-d--e/g", Some("latest"), false),
            ("my-registry.local/a_b/c.d:_t.-".into(), "my-registry.local/a_b/c.d:_t.-".into(), "my-registry.local", "a_b/c.d", Some("_t.-"), false),
            (format!("busybox@{d}"), format!("docker.io/library/busybox@{d}"), "docker.io", "library/busybox", None, true),
            (format!("127.0.0.1:5000/x:v1@{d}"), format!("127.0.0.1:5000/x:v1@{d}"), "127.0.0.1:5000", "x", Some("v1"), true),
        ];
        for (input, display, registry, repo, tag, has_digest) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), display, "{input}");
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repo, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(r.digest().is_some(), has_digest, "{input}");
            // Normalisation is idempotent.
            assert_eq!(Reference::parse(&display).unwrap(), r, "{input}");
        }
    }

    #[test]
    fn refuses() {
        let long = format!("a/{}", "b".repeat(300));
        let hex64 = "0123456789abcdef".repeat(4);
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "empty"),
            (":tag".into(), "empty"),
            ("@sha256:00".into(), "digest"),
            ("Busybox".into(), "lowercase"),
            ("docker.io/Busybox".into(), "lowercase"),
            ("busybox:".into(), "tag"),
            ("busybox:-x".into(), "tag"),
            ("busybox:a/b".into(), "registry"),
            (format!("busybox:{}", "t".repeat(129)), "tag"),
            ("busybox@sha256:abc".into(), "digest"),
            ("busybox@md5:0123456789abcdef0123456789abcdef".into(), "digest"),
            (format!("busybox@sha256:{}", "A".repeat(64)), "digest"),
            ("a//b".into(), "component"),
            ("a/b/".into(), "component"),
            ("-a".into(), "component"),
            ("a-".into(), "component"),
            ("a___b".into(), "component"),
            ("a..b".into(), "component"),
            ("a.-b".into(), "component"),
            ("host:99999/x".into(), "registry"),
            ("host:/x".into(), "registry"),
            ("-host.com/x".into(), "registry"),
            ("[zz]:5/x".into(), "registry"),
            (long, "255"),
            (hex64, "image id"),
        ];
        for (input, want) in cases {
            match Reference::parse(&input) {
                Ok(r) => panic!("{input:?} parsed as {r}, want an error mentioning {want}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.to_lowercase().contains(want), "{input:?}: error {msg:?} does not mention {want:?}");
                    assert!(msg.contains(&format!("{input:?}")), "{input:?}: error {msg:?} does not name the input");
                }
            }
        }
    }

    #[test]
    fn helpers() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.tagged_name().as_deref(), Some("docker.io/library/busybox:latest"));
        let r = Reference::parse(&format!("127.0.0.1:5000/x:v@{D}")).unwrap();
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.digest_reference(D), format!("127.0.0.1:5000/x@{D}"));
    }
}
