//! Small helpers shared by the test files that run a container and read what it printed.

use crate::{json, Bundle, Runtime};

/// Foreground `run` that must exit 0; returns the container's stdout and
/// checks that the container left nothing behind.
#[track_caller]
pub fn run_ok(rt: &Runtime, b: &Bundle) -> String {
    let o = rt.run(b);
    assert_eq!(o.code, Some(0), "container should exit 0:\n{o}");
    rt.assert_no_trace(b);
    o.stdout
}

/// A `key=value` line printed by a container script.
#[track_caller]
pub fn kv<'a>(out: &'a str, key: &str) -> &'a str {
    let p = format!("{key}=");
    out.lines().find_map(|l| l.strip_prefix(&p)).unwrap_or_else(|| panic!("no {key}= line in container output:\n{out}"))
}

/// A writable tmpfs at the container's /tmp (the shared rootfs itself is never written).
pub fn with_tmp(b: &mut Bundle) {
    b.push("mounts", json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777", "size=16m"]}));
}
