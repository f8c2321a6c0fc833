//! CNI versions: which ones exist here and what each allows.

use super::error::{code, Error};

/// The versions Berth's plugins speak, oldest first.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version: used when the caller gave none we can trust (e.g. errors before
/// the config is parsed).
pub const CURRENT: &str = "1.1.0";

/// A parsed `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub const V0_4_0: Version = Version(0, 4, 0);
    pub const V1_0_0: Version = Version(1, 0, 0);
    pub const V1_1_0: Version = Version(1, 1, 0);

    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.split('.').map(|p| if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) { None } else { p.parse().ok() });
        let v = Version(it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(v)
    }

    /// CHECK exists from 0.4.0.
    pub fn has_check(self) -> bool {
        self >= Self::V0_4_0
    }

    /// GC and STATUS exist from 1.1.0.
    pub fn has_gc_status(self) -> bool {
        self >= Self::V1_1_0
    }

    /// Results before 1.0.0 carry `"version"` in each ip.
    pub fn ips_carry_version(self) -> bool {
        self < Self::V1_0_0
    }
}

/// Checks `v` is one of `supported`; code 1 with the details otherwise.
pub fn check_supported(v: &str, supported: &[&str]) -> Result<Version, Error> {
    if supported.contains(&v) {
        if let Some(p) = Version::parse(v) {
            return Ok(p);
        }
    }
    let shown = if v.is_empty() { "(none)" } else { v };
    Err(Error::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions")
        .details(format!("config is {shown:?}, plugin supports {supported:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!(Version::parse("1.1.0"), Some(Version(1, 1, 0)));
        assert_eq!(Version::parse("0.3.1"), Some(Version(0, 3, 1)));
        for bad in ["", "1", "1.0", "1.0.0.0", "a.b.c", "1.-1.0", "1..0", "+1.0.0"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert!(Version(0, 4, 0) < Version(1, 0, 0));
        assert!(Version(0, 10, 0) > Version(0, 4, 0));
    }

    #[test]
    fn capabilities() {
        assert!(!Version(0, 3, 1).has_check());
        assert!(Version(0, 4, 0).has_check());
        assert!(!Version(1, 0, 0).has_gc_status());
        assert!(Version(1, 1, 0).has_gc_status());
        assert!(Version(0, 4, 0).ips_carry_version());
        assert!(!Version(1, 0, 0).ips_carry_version());
    }

    #[test]
    fn unsupported_is_code_1_with_details() {
        let e = check_supported("0.2.0", SUPPORTED).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.details.contains("0.2.0") && e.details.contains("1.1.0"), "{}", e.details);
        assert!(check_supported("1.0.0", SUPPORTED).is_ok());
        assert_eq!(check_supported("", SUPPORTED).unwrap_err().code, 1);
    }
}
