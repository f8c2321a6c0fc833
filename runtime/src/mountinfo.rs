//! Parsing /proc/<pid>/mountinfo.

use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub id: u32,
    pub parent: u32,
    /// Root of the mount within its filesystem.
    pub root: PathBuf,
    pub mountpoint: PathBuf,
    /// Per-mount options (rw, nosuid, ...).
    pub options: String,
    /// Optional fields (shared:N, master:N, ...).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// Mountinfo escapes space, tab, newline and backslash as \ooo octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() + 0 && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (pre, post) = line.split_once(" - ")?;
    let mut f = pre.split(' ');
    let id = f.next()?.parse().ok()?;
    let parent = f.next()?.parse().ok()?;
    let _dev = f.next()?;
    let root = PathBuf::from(unescape(f.next()?));
    let mountpoint = PathBuf::from(unescape(f.next()?));
    let options = f.next()?.to_string();
    let optional = f.map(str::to_string).collect();
    let mut p = post.split(' ');
    let fstype = p.next()?.to_string();
    let source = unescape(p.next().unwrap_or(""));
    let super_options = p.next().unwrap_or("").to_string();
    Some(Mount { id, parent, root, mountpoint, options, optional, fstype, source, super_options })
}

pub fn read_self() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo").map(|t| parse(&t)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_and_escapes() {
        let t = "35 24 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct\n\
                 40 1 8:1 /a\\040b /mnt/x\\040y rw master:3 - ext4 /dev/vda rw\n";
        let m = parse(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mountpoint, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m[0].super_options, "rw,cpu,cpuacct");
        assert_eq!(m[0].optional, vec!["shared:14"]);
        assert_eq!(m[1].root, PathBuf::from("/a b"));
        assert_eq!(m[1].mountpoint, PathBuf::from("/mnt/x y"));
    }
}
