//! Platforms and picking one manifest out of an image index / manifest list.
//!
//! Matching follows containerd's rules: os and architecture must be equal; for arm64
//! an absent variant means v8; for 32-bit arm an absent variant means v7 and a v7 host
//! accepts v6 and v5 images; for amd64 an absent variant means v1 (the baseline), and
//! a manifest's `v2`..`v4` is accepted only when asked for. Exact variants win.

use std::fmt;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// This host's platform (what the binary was built for).
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform { os: std::env::consts::OS.to_string(), architecture: arch.into(), variant: variant.map(Into::into) }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut it = s.split('/');
        let os = it.next().filter(|x| !x.is_empty())?;
        let arch = it.next().filter(|x| !x.is_empty())?;
        let variant = it.next().filter(|x| !x.is_empty()).map(String::from);
        if it.next().is_some() {
            return None;
        }
        Some(Platform { os: os.into(), architecture: normalize_arch(arch).into(), variant })
    }

    fn normalized_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            ("arm", None) => Some("v7"),
            ("amd64", None) => Some("v1"),
            (_, v) => v,
        }
    }

    /// Can an image built for `other` run here? 0 = no, higher = better match.
    pub fn score(&self, other: &Platform) -> u32 {
        if self.os != other.os || self.architecture != normalize_arch(&other.architecture) {
            return 0;
        }
        let want = self.normalized_variant();
        let have = other.normalized_variant();
        if want == have {
            return 3;
        }
        match (self.architecture.as_str(), want, have) {
            // Older arm variants run on newer cores.
            ("arm", Some(w), Some(h)) if arm_level(h) < arm_level(w) => 2,
            // amd64 v2..v4 builds need a host asked for them; the baseline runs anywhere.
            ("amd64", Some(w), Some(h)) if amd64_level(h) < amd64_level(w) => 2,
            (_, None, _) => 1,
            _ => 0,
        }
    }
}

fn normalize_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "armhf" => "arm",
        "i386" => "386",
        a => a,
    }
}

fn arm_level(v: &str) -> u32 {
    v.trim_start_matches('v').parse().unwrap_or(0)
}

fn amd64_level(v: &str) -> u32 {
    v.trim_start_matches('v').parse().unwrap_or(99)
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An index entry: enough to choose.
#[derive(Debug, Clone, Deserialize)]
pub struct IndexEntry {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    pub manifests: Vec<IndexEntry>,
}

/// The best entry of `index` for `want` (first of the best-scored), or the list of what there is.
pub fn select<'a>(index: &'a Index, want: &Platform) -> Result<&'a IndexEntry, String> {
    let mut best: Option<(&IndexEntry, u32)> = None;
    for e in &index.manifests {
        let Some(p) = &e.platform else { continue };
        let s = want.score(p);
        if s > 0 && best.map_or(true, |(_, b)| s > b) {
            best = Some((e, s));
        }
    }
    best.map(|(e, _)| e).ok_or_else(|| {
        let avail: Vec<String> = index.manifests.iter().filter_map(|e| e.platform.as_ref().map(|p| p.to_string())).collect();
        if avail.is_empty() {
            "none".to_string()
        } else {
            avail.join(", ")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    fn index(platforms: &[&str]) -> Index {
        Index {
            manifests: platforms
                .iter()
                .enumerate()
                .map(|(i, s)| IndexEntry { media_type: String::new(), digest: format!("d{i}"), size: 1, platform: Platform::parse(s) })
                .collect(),
        }
    }

    #[test]
    fn host_is_linux() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        assert!(!h.architecture.is_empty());
    }

    #[test]
    fn picks() {
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            ("linux/amd64", &["linux/arm64", "linux/amd64"], Some("d1")),
            ("linux/amd64", &["linux/arm64/v8", "windows/amd64"], None),
            ("linux/amd64", &["linux/amd64/v3", "linux/amd64"], Some("d1")),
            ("linux/amd64", &["linux/amd64/v3"], None),
            ("linux/amd64/v3", &["linux/amd64/v2", "linux/amd64/v3"], Some("d1")),
            ("linux/amd64/v3", &["linux/amd64"], Some("d0")),
            ("linux/arm64", &["linux/arm/v7", "linux/arm64/v8"], Some("d1")),
            ("linux/arm64/v8", &["linux/arm64"], Some("d0")),
            ("linux/arm/v7", &["linux/arm/v5", "linux/arm/v6", "linux/arm/v7"], Some("d2")),
            ("linux/arm/v7", &["linux/arm/v6"], Some("d0")),
            ("linux/arm/v6", &["linux/arm/v7"], None),
            ("linux/amd64", &["unknown/unknown", "linux/amd64"], Some("d1")),
            ("linux/x86_64", &["linux/amd64"], Some("d0")),
        ];
        for (want, avail, expect) in cases {
            let idx = index(avail);
            let got = select(&idx, &p(want)).ok().map(|e| e.digest.as_str());
            assert_eq!(got, *expect, "want {want} from {avail:?}");
        }
        let err = select(&index(&["linux/arm64", "linux/s390x"]), &p("linux/amd64")).unwrap_err();
        assert_eq!(err, "linux/arm64, linux/s390x");
    }
}
