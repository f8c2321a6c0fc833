//! Bounded waiting: nothing in a test waits forever.

use std::path::Path;
use std::time::{Duration, Instant};

/// Default bound for waits on container-side effects (on the host; see [`wait_bound`]).
pub const WAIT: Duration = Duration::from_secs(10);

/// The bound the `wait_*` helpers use: [`WAIT`] on the host, six times that in
/// the test VM, which runs container work ~17x slower under emulation (a shim
/// copying 400000 lines takes 2.5 s on the host and over 10 s there).
pub fn wait_bound() -> Duration {
    if crate::in_vm() { WAIT * 6 } else { WAIT }
}

/// Calls `f` until it returns true or `timeout` passes; returns the last
/// result. Sleeps start at 1 ms and grow to 20 ms.
pub fn poll(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut nap = Duration::from_millis(1);
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// Like [`poll`] with [`WAIT`], panicking with `what` on timeout.
#[track_caller]
pub fn wait_until(what: &str, f: impl FnMut() -> bool) {
    let bound = wait_bound();
    assert!(poll(bound, f), "timed out after {bound:?} waiting for {what}");
}

/// Waits for a file to exist and be non-empty; returns its contents.
#[track_caller]
pub fn wait_for_file(p: &Path) -> String {
    wait_until(&format!("file {}", p.display()), || {
        std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false)
    });
    crate::cmd::read_lossy(p)
}

/// Waits until `read()` contains `needle`; returns what was read last.
#[track_caller]
pub fn wait_for_text(what: &str, needle: &str, mut read: impl FnMut() -> String) -> String {
    let mut last = String::new();
    let bound = wait_bound();
    let ok = poll(bound, || {
        last = read();
        last.contains(needle)
    });
    assert!(ok, "timed out after {bound:?} waiting for {needle:?} in {what}; got:\n{last}");
    last
}

/// Waits until process `pid` no longer exists (or is a zombie).
#[track_caller]
pub fn wait_pid_gone(pid: i32) {
    wait_until(&format!("pid {pid} to exit"), || !crate::pid_alive(pid));
}
