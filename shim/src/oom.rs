//! OOM detection: the container's memory cgroup counts OOM kills
//! (`oom_kill` in v1 `memory.oom_control`, v2 `memory.events`). The shim
//! finds that cgroup from `/proc/<init>/cgroup` right after `create`, so it
//! works for any runtime and any `cgroupsPath`, and reads the counter when
//! the init has been reaped (before `delete` removes the cgroup).

use std::path::{Path, PathBuf};

/// The file holding the container's `oom_kill` counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomCounter {
    file: PathBuf,
    at_start: u64,
}

impl OomCounter {
    /// `None` when the init has no memory cgroup we can see.
    pub fn for_process(pid: i32) -> Option<OomCounter> {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let file = counter_file(&cgroups, &mounts)?;
        let at_start = read_oom_kills(&file)?;
        Some(OomCounter { file, at_start })
    }

    /// True when the cgroup saw an OOM kill since `for_process`.
    pub fn fired(&self) -> bool {
        read_oom_kills(&self.file).is_some_and(|n| n > self.at_start)
    }
}

/// The `oom_kill` value of a `memory.oom_control` / `memory.events` file.
pub fn read_oom_kills(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    parse_oom_kills(&text)
}

fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// From a `/proc/<pid>/cgroup` text and a mountinfo text: the v1 memory
/// hierarchy's `memory.oom_control`, else the v2 `memory.events`.
pub fn counter_file(proc_cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    // (mount root, mount point, fs type, super options) of cgroup mounts.
    let mounts: Vec<(&str, &str, &str, &str)> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let g: Vec<&str> = post.split(' ').collect();
            Some((*f.get(3)?, *f.get(4)?, *g.first()?, *g.get(2).unwrap_or(&"")))
        })
        .filter(|m| m.2 == "cgroup" || m.2 == "cgroup2")
        .collect();
    let join = |mount_root: &str, point: &str, path: &str| -> Option<PathBuf> {
        // The process's path is relative to the hierarchy's root; the mount
        // shows it from `mount_root`.
        let rel = path.strip_prefix(mount_root)?.trim_start_matches('/');
        Some(Path::new(point).join(rel))
    };
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            let m = mounts.iter().find(|m| m.2 == "cgroup" && m.3.split(',').any(|o| o == "memory"))?;
            let file = join(m.0, m.1, path)?.join("memory.oom_control");
            return file.exists().then_some(file);
        }
        if controllers.is_empty() {
            v2 = Some(path);
        }
    }
    let path = v2?;
    mounts
        .iter()
        .filter(|m| m.2 == "cgroup2")
        .filter_map(|m| join(m.0, m.1, path))
        .map(|d| d.join("memory.events"))
        .find(|f| f.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters() {
        assert_eq!(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), Some(2));
        assert_eq!(parse_oom_kills("low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\noom_group_kill 0\n"), Some(1));
        assert_eq!(parse_oom_kills("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn finds_the_v1_memory_hierarchy() {
        let mounts = "30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n\
                      31 25 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let cg = "12:pids:/x\n5:memory:/berth-test/c1\n0::/\n";
        // The directory does not exist here: nothing is claimed.
        assert_eq!(counter_file(cg, mounts), None);
        // This process's own memory cgroup does exist.
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let real = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        if let Some(f) = counter_file(&own, &real) {
            assert!(read_oom_kills(&f).is_some(), "{}", f.display());
        }
    }
}
