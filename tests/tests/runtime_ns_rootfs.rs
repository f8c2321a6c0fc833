//! What the container gets from the runtime: namespaces, the root filesystem,
//! mounts, /dev, masked and read-only paths, sysctls (OCI runtime-spec 1.2,
//! Linux). Every test runs a real busybox container, asserts the effect from
//! inside (or, where only the host can see it, from the host), and relies on
//! the `Runtime` guard to check that nothing leaked.
//!
//! The shared busybox rootfs must never be written: tests that need to write
//! mount a tmpfs on `/tmp` first and put their mount points below it, so
//! the runtime creates them inside that tmpfs.
//!
//! Checks that runc 1.1.5 (the reference peer) does not pass because it
//! predates or ignores a spec feature are berth-only: they print
//! `SKIP: berth-only check ...` when the runtime under test is runc.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use berth_tests::*;

// ---------------------------------------------------------------------------
// Helpers local to this file.

/// `create`, then `f(pid)` while the container is blocked before its
/// program, then `start`, wait for the exit, `delete`; returns stdout.
#[track_caller]
fn create_inspect_start(rt: &Runtime, b: &Bundle, f: impl FnOnce(i32)) -> String {
    rt.create(b).ok();
    let pid = rt.state(b.id())["pid"].as_i64().expect("state has a pid") as i32;
    f(pid);
    rt.start(b.id()).ok();
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(b);
    b.stdout()
}

/// A tmpfs mount entry.
fn tmpfs(dest: &str, opts: &[&str]) -> Value {
    json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts})
}

/// A bind mount entry (`opts` should contain "bind" or "rbind").
fn bind(src: &Path, dest: &str, opts: &[&str]) -> Value {
    json!({"destination": dest, "type": "bind", "source": src.display().to_string(), "options": opts})
}

/// One line of a mountinfo file, with the fields the library's parser
/// leaves out (optional propagation fields, per-superblock options).
#[derive(Debug, Clone)]
struct Mnt {
    root: String,
    point: String,
    opts: Vec<String>,
    optional: Vec<String>,
    fstype: String,
    source: String,
    super_opts: Vec<String>,
}

impl Mnt {
    fn has_opt(&self, o: &str) -> bool {
        self.opts.iter().any(|x| x == o)
    }
    fn has_super_opt(&self, o: &str) -> bool {
        self.super_opts.iter().any(|x| x == o)
    }
    /// The optional field starting with `tag` (`shared:`, `master:`, `unbindable`).
    fn tagged(&self, tag: &str) -> bool {
        self.optional.iter().any(|x| x.starts_with(tag))
    }
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mnt> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let g: Vec<&str> = post.split(' ').collect();
            Some(Mnt {
                root: unescape(f.get(3)?),
                point: unescape(f.get(4)?),
                opts: f.get(5)?.split(',').map(str::to_string).collect(),
                optional: f[6..].iter().map(|s| s.to_string()).collect(),
                fstype: g.first()?.to_string(),
                source: unescape(g.get(1).unwrap_or(&"")),
                super_opts: g.get(2).unwrap_or(&"").split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// The visible (last, i.e. topmost) mount at `point`.
#[track_caller]
fn mount_at<'a>(ms: &'a [Mnt], point: &str) -> &'a Mnt {
    ms.iter()
        .rev()
        .find(|m| m.point == point)
        .unwrap_or_else(|| panic!("no mount at {point} in the container; mountinfo:\n{ms:#?}"))
}

/// Splits container output into the section after `== name ==` markers the
/// test scripts print (`section(out, "mountinfo")`).
#[track_caller]
fn section<'a>(out: &'a str, name: &str) -> &'a str {
    let start_marker = format!("== {name} ==\n");
    let start =
        out.find(&start_marker).unwrap_or_else(|| panic!("no section {name} in output:\n{out}")) + start_marker.len();
    let rest = &out[start..];
    match rest.find("\n== ") {
        Some(end) => &rest[..end + 1],
        None => rest,
    }
}

/// Mounts made on the host by a test (in its temp dir), undone in reverse
/// order when dropped, before the `Runtime` guard looks for leaked mounts.
/// Declare it after the `Runtime` so it is dropped first.
#[derive(Default)]
struct HostMounts(Vec<PathBuf>);

impl HostMounts {
    fn tmpfs(&mut self, at: &Path, name: &str) {
        fs::create_dir_all(at).unwrap();
        nix::mount::mount(Some(name), at, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=4m"))
            .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", at.display()));
        self.0.push(at.to_path_buf());
    }

    fn bind(&mut self, src: &Path, at: &Path) {
        fs::create_dir_all(at).unwrap();
        nix::mount::mount(Some(src), at, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
            .unwrap_or_else(|e| panic!("bind {} on {}: {e}", src.display(), at.display()));
        self.0.push(at.to_path_buf());
    }

    /// Makes `at` shared in a peer group of its own (private first, so it
    /// does not stay a peer of the host's mount it was copied from).
    fn make_shared_alone(&self, at: &Path) {
        use nix::mount::MsFlags;
        for f in [MsFlags::MS_PRIVATE, MsFlags::MS_SHARED] {
            nix::mount::mount(None::<&str>, at, None::<&str>, f, None::<&str>)
                .unwrap_or_else(|e| panic!("change propagation of {}: {e}", at.display()));
        }
    }

    /// Unmounts one mount made with this guard (e.g. before the container exits).
    fn umount(&mut self, at: &Path) {
        nix::mount::umount2(at, nix::mount::MntFlags::MNT_DETACH)
            .unwrap_or_else(|e| panic!("umount {}: {e}", at.display()));
        self.0.retain(|p| p != at);
    }
}

impl Drop for HostMounts {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A helper process on the host, killed and reaped when dropped.
struct HostChild(Child);

impl Drop for HostChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `argv` on the host and waits until its `ns` namespace differs from
/// the test's (the program has unshared it).
fn spawn_unshared(argv: &[&str], ns: &str) -> HostChild {
    let child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
    let pid = child.id();
    let guard = HostChild(child);
    let host = ns_id("self", ns);
    wait_until(&format!("{argv:?} to enter a new {ns} namespace"), || {
        fs::read_link(format!("/proc/{pid}/ns/{ns}")).map(|p| p.display().to_string() != host).unwrap_or(false)
    });
    guard
}

/// Host-side probe: does the container's mount namespace still hold the
/// host's root filesystem? A child process enters the namespace (landing on
/// the container's root), detaches that root, enters the namespace again
/// (now landing on whatever lies beneath) and tests for `marker`, a file
/// that exists only on the host. With pivot_root the old root is gone, so
/// nothing is found; with MS_MOVE + chroot the host's root is still there.
/// Destroys the container's view of its root: call it last.
fn host_root_in_mount_ns(pid: i32, marker: &Path) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let ns = fs::File::open(format!("/proc/{pid}/ns/mnt")).unwrap();
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(format!("test -e '{}'", marker.display())).stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: between fork and exec the closure only makes raw syscalls
    // (setns, umount2) on an fd and a static string: async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let enter = || {
                if libc::setns(fd, libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            enter()?;
            if libc::umount2(c"/".as_ptr(), libc::MNT_DETACH) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            enter()
        });
    }
    match cmd.status() {
        Ok(st) => st.success(),
        // Nothing left beneath, not even /bin/sh: the host root is not there.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => false,
        Err(e) => panic!("probing the mount namespace of pid {pid}: {e}"),
    }
}

/// First line of a host file, with its newline.
fn first_line(p: &Path) -> String {
    let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    format!("{}\n", text.lines().next().unwrap_or(""))
}

/// Host uid/gid of a path.
fn owner(p: &Path) -> (u32, u32) {
    let m = fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    (m.uid(), m.gid())
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

/// Whether the filesystem holding `p` supports idmapped mounts on the
/// running kernel (ext4/xfs/btrfs since 5.12-5.15, tmpfs since 6.3); `None`
/// when it does, else the reason to skip.
fn idmap_unsupported(p: &Path) -> Option<String> {
    let st = nix::sys::statfs::statfs(p).unwrap();
    let magic = st.filesystem_type().0 as i64;
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim().to_string();
    let mut v = release.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse::<u32>().ok());
    let kernel = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    let ok = match magic {
        0xEF53 | 0x5846_5342 | 0x9123_683E => kernel >= (5, 15),
        0x0102_1994 => kernel >= (6, 3),
        _ => false,
    };
    (!ok).then(|| {
        format!("{} is on a filesystem (magic {magic:#x}) without idmapped mounts on kernel {release}", p.display())
    })
}

fn host_sysctl(name: &str) -> String {
    fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/"))).unwrap().trim().to_string()
}

// ---------------------------------------------------------------------------
// Namespaces

#[test]
fn ns_pid_program_is_pid_1() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("echo pid=$$; echo ns=$(readlink /proc/self/ns/pid); echo cmd=$(tr '\\0' ' ' </proc/1/cmdline)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "pid"), "1", "the container's program is pid 1 in its pid namespace");
    assert_ne!(kv(&out, "ns"), ns_id("self", "pid"), "new pid namespace");
    assert!(kv(&out, "cmd").starts_with("sh -c echo pid"), "pid 1 is the configured program:\n{out}");
}

#[test]
fn ns_net_only_loopback() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("echo ns=$(readlink /proc/self/ns/net); echo '== dev =='; tail -n +3 /proc/net/dev");
    let out = run_ok(&rt, &b);
    assert_ne!(kv(&out, "ns"), ns_id("self", "net"), "new network namespace");
    let links: Vec<&str> = section(&out, "dev").lines().filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(links, ["lo"], "a new network namespace has only the loopback device:\n{out}");
}

#[test]
fn ns_mount_is_private_to_container() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    // A tmpfs with a source name unique to this container.
    let probe = format!("probe-{}", b.id());
    b.push("mounts", json!({"destination": "/tmp", "type": "tmpfs", "source": probe, "options": ["size=1m"]}));
    b.sh("echo ns=$(readlink /proc/self/ns/mnt); grep -c ' /tmp ' /proc/self/mountinfo");
    let out = create_inspect_start(&rt, &b, |pid| {
        let inside = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        assert!(inside.contains(&probe), "the container's mount table has its tmpfs:\n{inside}");
        let host = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!host.contains(&probe), "the container's mounts must not show up on the host:\n{host}");
    });
    assert_ne!(kv(&out, "ns"), ns_id("self", "mnt"), "new mount namespace");
}

#[test]
fn ns_ipc_private() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("echo ns=$(readlink /proc/self/ns/ipc); touch /dev/mqueue/berth-q; ls /dev/mqueue");
    let out = run_ok(&rt, &b);
    assert_ne!(kv(&out, "ns"), ns_id("self", "ipc"), "new ipc namespace");
    // The queue was created in the container's own mqueue instance.
    assert!(out.contains("berth-q"), "{out}");
}

#[test]
fn ns_uts_hostname() {
    let Some(rt) = Runtime::for_test() else { return };
    let host_name = host_sysctl("kernel.hostname");
    let mut b = rt.bundle();
    b.set("hostname", json!("berth-uts-test"));
    b.sh(
        "echo ns=$(readlink /proc/self/ns/uts); echo hostname=$(hostname); echo proc=$(cat /proc/sys/kernel/hostname)",
    );
    let out = run_ok(&rt, &b);
    assert_ne!(kv(&out, "ns"), ns_id("self", "uts"), "new uts namespace");
    assert_eq!(kv(&out, "hostname"), "berth-uts-test");
    assert_eq!(kv(&out, "proc"), "berth-uts-test");
    assert_eq!(host_sysctl("kernel.hostname"), host_name, "host hostname unchanged");
}

#[test]
fn ns_uts_domainname() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1.5 ignores `domainname` (the container keeps \"(none)\")") {
        return;
    }
    let host_domain = host_sysctl("kernel.domainname");
    let mut b = rt.bundle();
    b.set("hostname", json!("berth-uts-test")).set("domainname", json!("berth.test"));
    b.sh("echo domain=$(cat /proc/sys/kernel/domainname); echo hostname=$(hostname)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "domain"), "berth.test");
    assert_eq!(kv(&out, "hostname"), "berth-uts-test");
    assert_eq!(host_sysctl("kernel.domainname"), host_domain, "host domainname unchanged");
}

#[test]
fn ns_uts_shared_with_host_when_not_listed() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    // No uts namespace: no hostname either (only settable in a new one).
    b.without_namespace("uts").remove("hostname");
    b.sh("echo ns=$(readlink /proc/self/ns/uts); echo hostname=$(cat /proc/sys/kernel/hostname)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "ns"), ns_id("self", "uts"), "no uts entry: the host's uts namespace is shared");
    assert_eq!(kv(&out, "hostname"), host_sysctl("kernel.hostname"));
}

#[test]
fn ns_user_mappings_and_file_ownership() {
    let Some(rt) = Runtime::for_test() else { return };
    const HOST: u32 = 100000;
    let shared = rt.path("owned");
    fs::create_dir(&shared).unwrap();
    fs::write(shared.join("mine"), "x").unwrap();
    chown(&shared, HOST, HOST);
    chown(&shared.join("mine"), HOST + 7, HOST + 8);
    let mut b = rt.bundle();
    b.with_namespace("user", None);
    b.set("linux.uidMappings", json!([{"containerID": 0, "hostID": HOST, "size": 65536}]));
    b.set("linux.gidMappings", json!([{"containerID": 0, "hostID": HOST, "size": 65536}]));
    with_tmp(&mut b);
    b.push("mounts", bind(&shared, "/tmp/owned", &["rbind"]));
    b.sh("echo '== uid_map =='; cat /proc/self/uid_map; echo '== gid_map =='; cat /proc/self/gid_map; \
         echo '== end =='; echo id=$(id -u):$(id -g); echo ns=$(readlink /proc/self/ns/user); \
         echo dir=$(stat -c %u:%g /tmp/owned); echo mine=$(stat -c %u:%g /tmp/owned/mine); \
         echo rootfs=$(stat -c %u:%g /bin/busybox); touch /tmp/owned/made-inside && echo touched=ok");
    let out = run_ok(&rt, &b);
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(words(section(&out, "uid_map")), ["0", "100000", "65536"], "{out}");
    assert_eq!(words(section(&out, "gid_map")), ["0", "100000", "65536"], "{out}");
    assert_eq!(kv(&out, "id"), "0:0");
    assert_ne!(kv(&out, "ns"), ns_id("self", "user"), "new user namespace");
    assert_eq!(kv(&out, "dir"), "0:0", "host {HOST} is container root");
    assert_eq!(kv(&out, "mine"), "7:8", "host {}:{} maps to 7:8", HOST + 7, HOST + 8);
    assert_eq!(kv(&out, "rootfs"), "65534:65534", "unmapped host root shows as the overflow id");
    assert_eq!(kv(&out, "touched"), "ok");
    assert_eq!(
        owner(&shared.join("made-inside")),
        (HOST, HOST),
        "a file made by container root is owned by host {HOST}"
    );
}

#[test]
fn ns_cgroup_root_is_container_cgroup() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.with_namespace("cgroup", None);
    b.push(
        "mounts",
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    );
    b.sh("echo ns=$(readlink /proc/self/ns/cgroup); echo '== cgroup =='; cat /proc/self/cgroup; \
          echo '== mountinfo =='; cat /proc/self/mountinfo");
    let out = run_ok(&rt, &b);
    assert_ne!(kv(&out, "ns"), ns_id("self", "cgroup"), "new cgroup namespace");
    for line in section(&out, "cgroup").lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        assert_eq!(path, "/", "in its cgroup namespace the container's cgroup is the root: {line}\n{out}");
    }
    let ms = parse_mountinfo(section(&out, "mountinfo"));
    let cg: Vec<&Mnt> = ms.iter().filter(|m| m.fstype.starts_with("cgroup")).collect();
    assert!(!cg.is_empty(), "cgroup filesystems are mounted under /sys/fs/cgroup:\n{ms:#?}");
    for m in cg {
        assert_eq!(m.root, "/", "with a cgroup namespace the mounted cgroup root is `/`: {m:?}");
    }
}

#[test]
fn ns_time_offsets() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1.5 has no time namespace (\"namespace {\\\"time\\\" \\\"\\\"} does not exist\")") {
        return;
    }
    let mut b = rt.bundle();
    b.with_namespace("time", None);
    b.set(
        "linux.timeOffsets",
        json!({
            "monotonic": {"secs": 86400, "nanosecs": 0},
            "boottime": {"secs": 172800, "nanosecs": 0}
        }),
    );
    b.sh("echo ns=$(readlink /proc/self/ns/time); echo '== offsets =='; cat /proc/self/timens_offsets; \
          echo '== end =='; echo uptime=$(cut -d' ' -f1 /proc/uptime)");
    let host_uptime: f64 =
        fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let out = run_ok(&rt, &b);
    assert_ne!(kv(&out, "ns"), ns_id("self", "time"), "new time namespace");
    let offsets: Vec<Vec<&str>> = section(&out, "offsets").lines().map(|l| l.split_whitespace().collect()).collect();
    assert!(offsets.contains(&vec!["monotonic", "86400", "0"]), "{out}");
    assert!(offsets.contains(&vec!["boottime", "172800", "0"]), "{out}");
    let uptime: f64 = kv(&out, "uptime").parse().unwrap();
    assert!(
        uptime >= host_uptime + 172800.0 - 1.0,
        "uptime follows the boottime offset: {uptime} vs host {host_uptime}"
    );
}

#[test]
fn ns_join_existing_by_path() {
    let Some(rt) = Runtime::for_test() else { return };
    // A host process in fresh net and uts namespaces (no `ip netns`, so
    // nothing to unmount afterwards) with its own hostname.
    let holder = spawn_unshared(
        &[
            "/usr/bin/unshare",
            "--net",
            "--uts",
            "/bin/sh",
            "-c",
            "echo joined-uts >/proc/sys/kernel/hostname && exec sleep 60",
        ],
        "uts",
    );
    let pid = holder.0.id();
    wait_until("the holder to set its hostname", || {
        fs::read_to_string(format!("/proc/{pid}/cmdline")).map(|c| c.starts_with("sleep")).unwrap_or(false)
    });
    let mut b = rt.bundle();
    b.with_namespace("network", Some(&format!("/proc/{pid}/ns/net")));
    b.with_namespace("uts", Some(&format!("/proc/{pid}/ns/uts")));
    b.remove("hostname");
    b.sh("echo net=$(readlink /proc/self/ns/net); echo uts=$(readlink /proc/self/ns/uts); echo hostname=$(hostname)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "net"), ns_id(&pid.to_string(), "net"), "joined the given network namespace");
    assert_eq!(kv(&out, "uts"), ns_id(&pid.to_string(), "uts"), "joined the given uts namespace");
    assert_eq!(kv(&out, "hostname"), "joined-uts");
    drop(holder);
}

// ---------------------------------------------------------------------------
// Root filesystem

#[test]
fn rootfs_pivot_root_leaves_no_host_root() {
    let Some(rt) = Runtime::for_test() else { return };
    let marker = rt.path("host-only-marker");
    fs::write(&marker, "host").unwrap();
    let mut b = rt.bundle();
    b.sh("cat /etc/passwd | head -1; echo root=$(stat -c %i /); exec sleep 1000");
    rt.create_start(&b);
    wait_for_text("container output", "root=", || b.stdout());
    assert!(b.stdout().starts_with(&first_line(&b.rootfs_path("/etc/passwd"))), "the rootfs is `/`: {}", b.stdout());
    let pid = rt.state(b.id())["pid"].as_i64().unwrap() as i32;
    assert!(
        !host_root_in_mount_ns(pid, &marker),
        "after pivot_root the container's mount namespace must not hold the host's root"
    );
    rt.kill(b.id(), "KILL").ok();
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn rootfs_no_pivot_works() {
    let Some(rt) = Runtime::for_test() else { return };
    let marker = rt.path("host-only-marker");
    fs::write(&marker, "host").unwrap();
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.sh("head -1 /etc/passwd; echo pid=$$; echo x >/tmp/f && cat /tmp/f; test -e /proc/self/status && echo proc=ok; \
          exec sleep 1000");
    rt.create_with(&b, &["--no-pivot"]).ok();
    rt.start(b.id()).ok();
    let out = wait_for_text("container output", "proc=ok", || b.stdout());
    assert!(out.starts_with(&first_line(&b.rootfs_path("/etc/passwd"))), "the rootfs is `/`:\n{out}");
    assert_eq!(kv(&out, "pid"), "1");
    assert!(out.contains("\nx\n"), "tmpfs mount works:\n{out}");
    let pid = rt.state(b.id())["pid"].as_i64().unwrap() as i32;
    // Not asserted: MS_MOVE + chroot is expected to keep the host's root in
    // the namespace. Printed for whoever compares runtimes.
    println!("no-pivot: host root still in the container's mount namespace: {}", host_root_in_mount_ns(pid, &marker));
    rt.kill(b.id(), "KILL").ok();
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn rootfs_readonly() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.set("root.readonly", json!(true));
    with_tmp(&mut b);
    b.sh("touch /berth-ro-probe 2>&1; echo root_rc=$?; touch /tmp/ok && echo tmp=ok; echo '== mountinfo =='; cat /proc/self/mountinfo");
    let out = run_ok(&rt, &b);
    assert_ne!(kv(&out, "root_rc"), "0", "writing to a read-only root must fail:\n{out}");
    assert!(out.contains("Read-only file system"), "EROFS expected:\n{out}");
    assert_eq!(kv(&out, "tmp"), "ok", "mounts below a read-only root stay writable");
    let ms = parse_mountinfo(section(&out, "mountinfo"));
    assert!(mount_at(&ms, "/").has_opt("ro"), "{:?}", mount_at(&ms, "/"));
    assert!(!b.rootfs_path("/berth-ro-probe").exists());
}

/// Sets up a rootfs that is a shared mount on the host (its own peer
/// group) so that propagation between host and container can be observed,
/// and points the bundle at it. Returns the host path of the rootfs.
fn shared_rootfs(rt: &Runtime, b: &mut Bundle, hm: &mut HostMounts) -> PathBuf {
    let top = rt.path("prop");
    hm.tmpfs(&top, "berth-prop");
    hm.make_shared_alone(&top);
    let root = top.join("rootfs");
    hm.bind(b.rootfs(), &root);
    hm.make_shared_alone(&root);
    b.set("root.path", json!(root.display().to_string()));
    root
}

/// Runs a container with `rootfsPropagation = prop` on a shared rootfs;
/// between create and start the host mounts a tmpfs on the rootfs's /tmp.
/// Returns the container's root mount and whether it saw the host's mount.
fn root_propagation(rt: &Runtime, prop: &str) -> (Mnt, bool) {
    let mut hm = HostMounts::default();
    let mut b = rt.bundle();
    let root = shared_rootfs(rt, &mut b, &mut hm);
    b.set("linux.rootfsPropagation", json!(prop));
    b.sh("cat /proc/self/mountinfo");
    rt.create(&b).ok();
    let host_tmp = root.join("tmp");
    hm.tmpfs(&host_tmp, "berth-from-host");
    rt.start(b.id()).ok();
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    let ms = parse_mountinfo(&b.stdout());
    hm.umount(&host_tmp);
    drop(hm);
    rt.assert_no_trace(&b);
    let got = ms.iter().any(|m| m.source == "berth-from-host");
    (mount_at(&ms, "/").clone(), got)
}

#[test]
fn rootfs_propagation_private() {
    let Some(rt) = Runtime::for_test() else { return };
    let (root, got) = root_propagation(&rt, "private");
    assert!(!root.tagged("shared:") && !root.tagged("master:"), "private root has no peers or master: {root:?}");
    assert!(!got, "a private root receives no mounts from the host");
}

#[test]
fn rootfs_propagation_slave() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1.5 applies a non-recursive MS_SLAVE to the old `/` before binding the rootfs, so the root ends up private (only \"rslave\" works)") {
        return;
    }
    let (root, got) = root_propagation(&rt, "slave");
    assert!(root.tagged("master:"), "slave root has a master: {root:?}");
    assert!(!root.tagged("shared:"), "{root:?}");
    assert!(got, "a slave root receives the host's new mounts");
}

#[test]
fn rootfs_propagation_shared() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1.5 leaves the root private for rootfsPropagation \"shared\"") {
        return;
    }
    let (root, _) = root_propagation(&rt, "shared");
    assert!(root.tagged("shared:"), "shared root is in a peer group: {root:?}");
}

#[test]
fn rootfs_propagation_unbindable() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1.5 fails: it makes `/` unbindable before bind-mounting the rootfs (EINVAL)") {
        return;
    }
    let (root, _) = root_propagation(&rt, "unbindable");
    assert!(root.tagged("unbindable"), "{root:?}");
}

// ---------------------------------------------------------------------------
// Mounts

/// A host directory with a file, and a submount (tmpfs) holding another file.
fn host_tree(rt: &Runtime, hm: &mut HostMounts) -> PathBuf {
    let d = rt.path("tree");
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("top.txt"), "top\n").unwrap();
    hm.tmpfs(&d.join("sub"), "berth-submount");
    fs::write(d.join("sub/deep.txt"), "deep\n").unwrap();
    d
}

#[test]
fn mount_bind_and_rbind() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut hm = HostMounts::default();
    let src = host_tree(&rt, &mut hm);
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.push("mounts", bind(&src, "/tmp/b", &["bind"]));
    b.push("mounts", bind(&src, "/tmp/rb", &["rbind"]));
    b.sh("echo b_top=$(cat /tmp/b/top.txt); echo b_sub=$(ls /tmp/b/sub); echo rb_top=$(cat /tmp/rb/top.txt); \
          echo rb_deep=$(cat /tmp/rb/sub/deep.txt); echo hi >/tmp/b/written; echo '== mountinfo =='; cat /proc/self/mountinfo");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "b_top"), "top");
    assert_eq!(kv(&out, "b_sub"), "", "a non-recursive bind does not carry submounts");
    assert_eq!(kv(&out, "rb_top"), "top");
    assert_eq!(kv(&out, "rb_deep"), "deep", "rbind carries submounts");
    assert_eq!(fs::read_to_string(src.join("written")).unwrap(), "hi\n", "bind mounts write through to the host");
    let ms = parse_mountinfo(section(&out, "mountinfo"));
    let name = src.file_name().unwrap().to_str().unwrap();
    assert!(mount_at(&ms, "/tmp/b").root.ends_with(&format!("/{name}")), "{:?}", mount_at(&ms, "/tmp/b"));
    assert_eq!(mount_at(&ms, "/tmp/rb/sub").source, "berth-submount");
    assert!(!ms.iter().any(|m| m.point == "/tmp/b/sub"), "no submount under the plain bind");
}

#[test]
fn mount_bind_ro_nosuid_nodev_noexec() {
    let Some(rt) = Runtime::for_test() else { return };
    let src = rt.path("bin");
    fs::create_dir(&src).unwrap();
    // busybox runs the applet named by argv[0]: a copy named `true` is `true`.
    fs::copy(rt_rootfs_busybox(), src.join("true")).unwrap();
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.push("mounts", bind(&src, "/tmp/locked", &["bind", "ro", "nosuid", "nodev", "noexec"]));
    b.push("mounts", bind(&src, "/tmp/open", &["bind"]));
    b.sh("touch /tmp/locked/x 2>&1; echo write_rc=$?; /tmp/locked/true 2>&1; echo exec_rc=$?; \
          /tmp/open/true; echo open_rc=$?; echo '== mountinfo =='; cat /proc/self/mountinfo");
    let out = run_ok(&rt, &b);
    assert_ne!(kv(&out, "write_rc"), "0", "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert_eq!(kv(&out, "exec_rc"), "126", "exec from a noexec mount is refused:\n{out}");
    assert_eq!(kv(&out, "open_rc"), "0", "the same file runs from a mount without noexec:\n{out}");
    let ms = parse_mountinfo(section(&out, "mountinfo"));
    let m = mount_at(&ms, "/tmp/locked");
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(m.has_opt(o), "{o} missing: {m:?}");
    }
    let m = mount_at(&ms, "/tmp/open");
    assert!(m.has_opt("rw") && !m.has_opt("noexec"), "{m:?}");
}

/// The busybox binary of the shared rootfs (to copy, never to modify).
fn rt_rootfs_busybox() -> PathBuf {
    rootfs().join("bin/busybox")
}

#[test]
fn mount_tmpfs_size_and_mode() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.push("mounts", tmpfs("/tmp/t", &["size=2m", "mode=0710", "nosuid", "nodev", "noexec"]));
    b.sh("echo mode=$(stat -c %a /tmp/t); echo blocks=$(df -k /tmp/t | tail -1 | awk '{print $2}'); \
          cp /bin/busybox /tmp/t/true && /tmp/t/true 2>&1; echo exec_rc=$?; \
          dd if=/dev/zero of=/tmp/t/fill bs=1k count=4096 2>/dev/null; echo fill=$(( $(stat -c %s /tmp/t/fill) / 1024 )); \
          echo '== mountinfo =='; cat /proc/self/mountinfo");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "mode"), "710");
    assert_eq!(kv(&out, "blocks"), "2048", "size=2m:\n{out}");
    assert_eq!(kv(&out, "exec_rc"), "126", "noexec tmpfs refuses exec:\n{out}");
    let filled: u64 = kv(&out, "fill").parse().unwrap();
    assert!(filled <= 2048, "the tmpfs holds at most 2 MiB, got {filled} KiB");
    let ms = parse_mountinfo(section(&out, "mountinfo"));
    let m = mount_at(&ms, "/tmp/t");
    assert_eq!(m.fstype, "tmpfs");
    assert!(m.has_opt("noexec") && m.has_opt("nosuid") && m.has_opt("nodev"), "{m:?}");
    assert!(m.has_super_opt("size=2048k") && m.has_super_opt("mode=710"), "{m:?}");
}

#[test]
fn mount_propagation_flags() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut hm = HostMounts::default();
    let src = rt.path("shared-src");
    hm.tmpfs(&src, "berth-shared-src");
    hm.make_shared_alone(&src);
    fs::create_dir(src.join("sub")).unwrap();
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.push("mounts", bind(&src, "/tmp/slave", &["rbind", "slave"]));
    b.push("mounts", bind(&src, "/tmp/private", &["rbind", "private"]));
    b.push("mounts", bind(&src, "/tmp/shared", &["rbind", "shared"]));
    b.sh("cat /proc/self/mountinfo");
    rt.create(&b).ok();
    // Mounted on the host after the container's mounts exist.
    hm.tmpfs(&src.join("sub"), "berth-late");
    rt.start(b.id()).ok();
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    let ms = parse_mountinfo(&b.stdout());
    drop(hm);
    rt.assert_no_trace(&b);
    let slave = mount_at(&ms, "/tmp/slave");
    assert!(slave.tagged("master:"), "slave mount has a master: {slave:?}");
    assert!(
        ms.iter().any(|m| m.point == "/tmp/slave/sub" && m.source == "berth-late"),
        "the slave received the host's mount:\n{ms:#?}"
    );
    let private = mount_at(&ms, "/tmp/private");
    assert!(private.optional.is_empty(), "private mount has no propagation: {private:?}");
    assert!(!ms.iter().any(|m| m.point == "/tmp/private/sub"), "the private mount got nothing from the host");
    let shared = mount_at(&ms, "/tmp/shared");
    assert!(shared.tagged("shared:"), "shared mount is in a peer group: {shared:?}");
}

#[test]
fn mount_special_filesystems() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("echo stat=$(cut -d' ' -f1 /proc/1/stat); echo lo=$(cat /sys/class/net/lo/address); \
          echo ptmx=$(stat -c %t:%T /dev/pts/ptmx); touch /dev/mqueue/q && echo mq=ok; echo x >/dev/shm/f && echo shm=ok; \
          echo '== mountinfo =='; cat /proc/self/mountinfo");
    let out = run_ok(&rt, &b);
    let ms = parse_mountinfo(section(&out, "mountinfo"));
    for (point, ty) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
    ] {
        assert_eq!(mount_at(&ms, point).fstype, ty, "{point}");
    }
    assert!(mount_at(&ms, "/sys").has_opt("ro"), "sysfs mounted ro as configured");
    let pts = mount_at(&ms, "/dev/pts");
    assert!(
        pts.has_super_opt("ptmxmode=666") && pts.has_super_opt("mode=620") && pts.has_super_opt("gid=5"),
        "{pts:?}"
    );
    assert_eq!(kv(&out, "stat"), "1", "proc shows the container's pid namespace");
    assert_eq!(kv(&out, "lo"), "00:00:00:00:00:00", "sysfs shows the container's loopback");
    assert_eq!(kv(&out, "ptmx"), "5:2", "devpts instance has its own ptmx");
    assert_eq!(kv(&out, "mq"), "ok");
    assert_eq!(kv(&out, "shm"), "ok");
}

#[test]
fn mount_cgroup_shows_container_cgroup() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.push(
        "mounts",
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    );
    b.sh("echo '== cgroup =='; cat /proc/self/cgroup; echo '== procs =='; \
          for f in $(find /sys/fs/cgroup -maxdepth 4 -name cgroup.procs); do echo \"$f: $(tr '\\n' ' ' <$f)\"; done; \
          echo '== mountinfo =='; cat /proc/self/mountinfo");
    let out = run_ok(&rt, &b);
    let ms = parse_mountinfo(section(&out, "mountinfo"));
    let cg: Vec<&Mnt> =
        ms.iter().filter(|m| m.fstype.starts_with("cgroup") && m.point.starts_with("/sys/fs/cgroup")).collect();
    assert!(!cg.is_empty(), "cgroup filesystems mounted at /sys/fs/cgroup:\n{ms:#?}");
    for m in &cg {
        assert!(m.has_opt("ro"), "mounted read-only as configured: {m:?}");
    }
    // One hierarchy is enough: cgroup2 if mounted, else v1 pids. The
    // container's cgroup there (from /proc/self/cgroup) must be reachable
    // under the mount, whether the runtime bound just that subtree (v1, root
    // = the cgroup) or mounted the whole hierarchy (v2 without a cgroup
    // namespace, root = `/`), and list the container's pid 1.
    let (m, line_prefix) = match cg.iter().find(|m| m.fstype == "cgroup2") {
        Some(m) => (*m, "0::".to_string()),
        None => {
            let m = cg.iter().find(|m| m.has_super_opt("pids")).expect("a pids or cgroup2 mount");
            let line =
                section(&out, "cgroup").lines().find(|l| l.split(':').nth(1) == Some("pids")).expect("pids line");
            (*m, format!("{}:pids:", line.split(':').next().unwrap()))
        }
    };
    let own = section(&out, "cgroup").lines().find_map(|l| l.strip_prefix(&line_prefix)).expect("own cgroup line");
    assert_eq!(own, b.cgroups_path(), "the container is in its cgroupsPath:\n{out}");
    let rel = own.strip_prefix(m.root.trim_end_matches('/')).unwrap_or_else(|| {
        panic!("the container's cgroup {own} is not below the mounted cgroup root {}:\n{out}", m.root)
    });
    let dir = format!("{}{}", m.point, rel);
    let procs = section(&out, "procs")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{dir}/cgroup.procs: ")))
        .unwrap_or_else(|| panic!("no cgroup.procs for the container's cgroup at {dir}:\n{out}"));
    assert!(procs.split_whitespace().any(|p| p == "1"), "the container's cgroup lists its pid 1:\n{out}");
}

#[test]
fn mount_symlink_destination_stays_in_rootfs() {
    let Some(rt) = Runtime::for_test() else { return };
    // Symlinks in a directory the container mounts early; later mounts use
    // them as destinations. The links point at host paths (absolute, and
    // relative with too many `..`): resolved inside the rootfs they stay
    // under the container's /tmp tmpfs, resolved on the host they would
    // land in these host directories.
    let outside_abs = rt.path("outside-abs");
    let outside_rel = rt.path("outside-rel");
    if !outside_abs.starts_with("/tmp/") {
        // The runtime creates the link target inside the rootfs: only under
        // the container's /tmp tmpfs is that harmless to the shared rootfs.
        berth_tests::skip(format_args!("the test temp dir {} is not below /tmp (TMPDIR?)", rt.tmp().display()));
        return;
    }
    fs::create_dir(&outside_abs).unwrap();
    fs::create_dir(&outside_rel).unwrap();
    let links = rt.path("links");
    fs::create_dir(&links).unwrap();
    std::os::unix::fs::symlink(&outside_abs, links.join("abs")).unwrap();
    let dotdots = "../".repeat(12);
    std::os::unix::fs::symlink(
        format!("{dotdots}{}", outside_rel.display().to_string().trim_start_matches('/')),
        links.join("rel"),
    )
    .unwrap();
    let payload = rt.path("payload");
    fs::create_dir(&payload).unwrap();
    fs::write(payload.join("marker"), "payload\n").unwrap();

    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.push("mounts", bind(&links, "/tmp/links", &["bind"]));
    b.push("mounts", bind(&payload, "/tmp/links/abs", &["bind"]));
    b.push("mounts", bind(&payload, "/tmp/links/rel", &["bind"]));
    let (abs, rel) = (outside_abs.display(), outside_rel.display());
    b.sh(&format!("echo abs=$(cat {abs}/marker); echo rel=$(cat {rel}/marker); echo via=$(cat /tmp/links/abs/marker)"));
    let o = rt.run(&b);
    if o.code == Some(0) {
        // runc's way: the link is resolved inside the rootfs and the mount
        // lands at the (created) target there.
        let out = &o.stdout;
        assert_eq!(kv(out, "abs"), "payload", "the mount landed at the link target inside the rootfs:\n{out}");
        assert_eq!(kv(out, "rel"), "payload", "relative link clamped at the container root:\n{out}");
        assert_eq!(kv(out, "via"), "payload");
    } else {
        // Also safe (crun's way): refusing the mount, with an error naming it.
        assert!(!o.timed_out, "{o}");
        let text = format!("{}{:?}", o.stderr, o.log);
        assert!(text.contains("links/abs") || text.contains("links/rel"), "a refusal must name the mount:\n{o}");
        println!(
            "runtime refused the symlinked destination instead of resolving it in the rootfs:\n{}{:?}",
            o.stderr.trim(),
            o.log_errors()
        );
    }
    rt.assert_no_trace(&b);
    assert!(leaks::dir_is_empty(&outside_abs), "nothing mounted or written on the host target");
    assert!(leaks::dir_is_empty(&outside_rel), "nothing mounted or written on the host target");
    assert!(leaks::mounts_under(&[outside_abs.clone(), outside_rel.clone()]).is_empty());
}

#[test]
fn mount_idmapped_without_userns() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1.5 ignores a mount's uidMappings/gidMappings (no idmapped mounts before 1.2)") {
        return;
    }
    let src = rt.path("idmap-src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("root-owned"), "x").unwrap();
    chown(&src.join("root-owned"), 0, 0);
    if let Some(why) = idmap_unsupported(&src) {
        berth_tests::skip(format_args!("{why}"));
        return;
    }
    let mut b = rt.bundle();
    with_tmp(&mut b);
    let mut m = bind(&src, "/tmp/idm", &["bind", "idmap"]);
    m["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    m["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    b.push("mounts", m);
    b.sh("echo idm=$(stat -c %u:%g /tmp/idm/root-owned)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "idm"), "1000:1000", "file owned by 0 on disk shows as the mapped id:\n{out}");
    assert_eq!(owner(&src.join("root-owned")), (0, 0), "the source is not chowned");
}

#[test]
fn mount_idmapped_with_userns() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1.5 ignores a mount's uidMappings/gidMappings (no idmapped mounts before 1.2)") {
        return;
    }
    const HOST: u32 = 100000;
    let src = rt.path("idmap-src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("root-owned"), "x").unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).unwrap();
    if let Some(why) = idmap_unsupported(&src) {
        berth_tests::skip(format_args!("{why}"));
        return;
    }
    let mut b = rt.bundle();
    b.with_namespace("user", None);
    b.set("linux.uidMappings", json!([{"containerID": 0, "hostID": HOST, "size": 65536}]));
    b.set("linux.gidMappings", json!([{"containerID": 0, "hostID": HOST, "size": 65536}]));
    with_tmp(&mut b);
    let mut m = bind(&src, "/tmp/idm", &["bind", "idmap"]);
    m["uidMappings"] = json!([{"containerID": 0, "hostID": HOST, "size": 65536}]);
    m["gidMappings"] = json!([{"containerID": 0, "hostID": HOST, "size": 65536}]);
    b.push("mounts", m);
    b.sh("echo idm=$(stat -c %u:%g /tmp/idm/root-owned); touch /tmp/idm/made-inside && echo touched=ok");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "idm"), "0:0", "host root's file is root's inside the user namespace:\n{out}");
    assert_eq!(kv(&out, "touched"), "ok", "container root can write through the idmapped mount:\n{out}");
    assert_eq!(owner(&src.join("made-inside")), (0, 0), "written as uid 0 on disk through the idmapped mount");
}

// ---------------------------------------------------------------------------
// /dev

#[test]
fn dev_default_devices_and_links() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("for d in null zero full random urandom tty; do echo $d=$(stat -c '%F|%t:%T|%a' /dev/$d); done; \
          for l in fd stdin stdout stderr ptmx; do echo link_$l=$(readlink /dev/$l); done; \
          echo ptmx_dev=$(stat -L -c '%F|%t:%T' /dev/ptmx); \
          echo read_zero=$(head -c 4 /dev/zero | od -An -tx1 | tr -d ' '); echo read_urandom=$(head -c 16 /dev/urandom | wc -c); \
          echo x >/dev/full 2>/dev/null; echo full_rc=$?; echo x >/dev/null; echo null_rc=$?; \
          echo '== mountinfo =='; cat /proc/self/mountinfo");
    let out = run_ok(&rt, &b);
    for (d, dev) in
        [("null", "1:3"), ("zero", "1:5"), ("full", "1:7"), ("random", "1:8"), ("urandom", "1:9"), ("tty", "5:0")]
    {
        assert_eq!(kv(&out, d), format!("character special file|{dev}|666"), "/dev/{d}:\n{out}");
    }
    assert_eq!(kv(&out, "link_fd"), "/proc/self/fd");
    assert_eq!(kv(&out, "link_stdin"), "/proc/self/fd/0");
    assert_eq!(kv(&out, "link_stdout"), "/proc/self/fd/1");
    assert_eq!(kv(&out, "link_stderr"), "/proc/self/fd/2");
    // /dev/ptmx: a symlink to pts/ptmx (runc) or a bind of it; either way
    // it must be the devpts instance's ptmx (5:2).
    assert_eq!(kv(&out, "ptmx_dev"), "character special file|5:2", "{out}");
    assert_eq!(kv(&out, "read_zero"), "00000000");
    assert_eq!(kv(&out, "read_urandom"), "16");
    assert_ne!(kv(&out, "full_rc"), "0", "/dev/full refuses writes");
    assert_eq!(kv(&out, "null_rc"), "0");
    let ms = parse_mountinfo(section(&out, "mountinfo"));
    assert_eq!(mount_at(&ms, "/dev/pts").fstype, "devpts");
    assert_eq!(mount_at(&ms, "/dev/shm").fstype, "tmpfs");
}

#[test]
fn dev_linux_devices_created() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.set("linux.devices", json!([
        {"path": "/dev/berth-char", "type": "c", "major": 1, "minor": 11, "fileMode": 0o640, "uid": 1000, "gid": 5},
        {"path": "/dev/berth-blk", "type": "b", "major": 7, "minor": 12, "fileMode": 0o600, "uid": 0, "gid": 6},
        {"path": "/dev/berth-fifo", "type": "p", "fileMode": 0o620, "uid": 1000, "gid": 1000},
        {"path": "/dev/berth/nested/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666, "uid": 0, "gid": 0}
    ]));
    b.sh("for d in berth-char berth-blk berth-fifo berth/nested/null; do echo $d=$(stat -c '%F|%t:%T|%a|%u:%g' /dev/$d); done");
    let out = run_ok(&rt, &b);
    // busybox stat prints major/minor in hex.
    assert_eq!(kv(&out, "berth-char"), "character special file|1:b|640|1000:5", "{out}");
    assert_eq!(kv(&out, "berth-blk"), "block special file|7:c|600|0:6", "{out}");
    assert_eq!(kv(&out, "berth-fifo"), "fifo|0:0|620|1000:1000", "{out}");
    assert_eq!(kv(&out, "berth/nested/null"), "character special file|1:3|666|0:0", "{out}");
}

// ---------------------------------------------------------------------------
// Masked and read-only paths

#[test]
fn masked_paths() {
    let Some(rt) = Runtime::for_test() else { return };
    let src = rt.path("secrets");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("secret"), "top secret\n").unwrap();
    fs::write(src.join("dir/inner"), "inner\n").unwrap();
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.push("mounts", bind(&src, "/tmp/m", &["bind"]));
    b.push("linux.maskedPaths", json!("/tmp/m/secret"));
    b.push("linux.maskedPaths", json!("/tmp/m/dir"));
    // The base config masks these /proc files; check the ones this kernel has.
    let proc_files: Vec<&str> = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    let mut script = String::from(
        "echo secret=$(wc -c </tmp/m/secret); echo dir=$(ls -A /tmp/m/dir | wc -l); \
         touch /tmp/m/dir/x 2>/dev/null; echo dir_write_rc=$?; ",
    );
    for p in &proc_files {
        script.push_str(&format!("echo '{p}'=$(wc -c <{p}); "));
    }
    b.sh(&script);
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "secret"), "0", "a masked file reads empty:\n{out}");
    assert_eq!(kv(&out, "dir"), "0", "a masked directory is empty:\n{out}");
    assert_ne!(kv(&out, "dir_write_rc"), "0", "a masked directory is read-only");
    for p in &proc_files {
        assert_eq!(kv(&out, p), "0", "{p} is masked:\n{out}");
    }
    assert_eq!(fs::read_to_string(src.join("secret")).unwrap(), "top secret\n", "host file untouched");
}

#[test]
fn readonly_paths() {
    let Some(rt) = Runtime::for_test() else { return };
    let src = rt.path("ro-src");
    fs::create_dir(&src).unwrap();
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.push("mounts", bind(&src, "/tmp/ro", &["bind"]));
    b.push("linux.readonlyPaths", json!("/tmp/ro"));
    b.sh("echo nope >/proc/sys/kernel/hostname 2>&1; echo sys_rc=$?; echo hostname=$(hostname); \
          touch /tmp/ro/x 2>&1; echo ro_rc=$?; touch /tmp/rw && echo tmp=ok; \
          echo '== mountinfo =='; cat /proc/self/mountinfo");
    let out = run_ok(&rt, &b);
    assert_ne!(kv(&out, "sys_rc"), "0", "/proc/sys is read-only:\n{out}");
    assert_eq!(kv(&out, "hostname"), "berth");
    assert_ne!(kv(&out, "ro_rc"), "0", "{out}");
    assert!(out.contains("Read-only file system"), "EROFS expected:\n{out}");
    assert_eq!(kv(&out, "tmp"), "ok", "the parent stays writable");
    let ms = parse_mountinfo(section(&out, "mountinfo"));
    assert!(mount_at(&ms, "/proc/sys").has_opt("ro"));
    assert!(mount_at(&ms, "/tmp/ro").has_opt("ro"));
    assert!(leaks::dir_is_empty(&src));
}

// ---------------------------------------------------------------------------
// sysctl

#[test]
fn sysctl_namespaced_values() {
    let Some(rt) = Runtime::for_test() else { return };
    let host: Vec<(&str, String)> =
        ["net.ipv4.ip_default_ttl", "net.ipv4.ip_forward", "kernel.shmmax", "kernel.msgmax"]
            .into_iter()
            .map(|k| (k, host_sysctl(k)))
            .collect();
    let mut b = rt.bundle();
    b.set(
        "linux.sysctl",
        json!({
            "net.ipv4.ip_default_ttl": "77",
            "net.ipv4.ip_forward": "1",
            "kernel.shmmax": "123456789",
            "kernel.msgmax": "4096"
        }),
    );
    b.sh("echo ttl=$(cat /proc/sys/net/ipv4/ip_default_ttl); echo fwd=$(cat /proc/sys/net/ipv4/ip_forward); \
          echo shmmax=$(cat /proc/sys/kernel/shmmax); echo msgmax=$(cat /proc/sys/kernel/msgmax)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "ttl"), "77", "{out}");
    assert_eq!(kv(&out, "fwd"), "1");
    assert_eq!(kv(&out, "shmmax"), "123456789");
    assert_eq!(kv(&out, "msgmax"), "4096");
    for (k, v) in host {
        assert_eq!(host_sysctl(k), v, "host {k} must not change");
    }
}

/// Runs a bundle that must be refused at create; checks the error names
/// `what` and that nothing is left.
#[track_caller]
fn refused(rt: &Runtime, b: &Bundle, what: &str) {
    let o = rt.run(b);
    assert!(!o.timed_out, "{o}");
    assert_ne!(o.code, Some(0), "must be refused:\n{o}");
    let text = format!("{}{}{:?}", o.stdout, o.stderr, o.log);
    assert!(text.contains(what), "the error should name {what}:\n{o}");
    assert!(!b.stdout().contains("container-ran"), "the program must not run:\n{o}");
    rt.assert_no_trace(b);
}

#[test]
fn sysctl_not_namespaced_refused() {
    let Some(rt) = Runtime::for_test() else { return };
    let before = host_sysctl("kernel.pid_max");
    let mut b = rt.bundle();
    b.set("linux.sysctl", json!({"kernel.pid_max": "40000"}));
    b.sh("echo container-ran");
    refused(&rt, &b, "kernel.pid_max");
    assert_eq!(host_sysctl("kernel.pid_max"), before);
}

#[test]
fn sysctl_without_its_namespace_refused() {
    let Some(rt) = Runtime::for_test() else { return };
    let before = host_sysctl("net.ipv4.ip_default_ttl");
    let mut b = rt.bundle();
    b.without_namespace("network");
    b.set("linux.sysctl", json!({"net.ipv4.ip_default_ttl": "77"}));
    b.sh("echo container-ran");
    refused(&rt, &b, "net.ipv4.ip_default_ttl");
    assert_eq!(host_sysctl("net.ipv4.ip_default_ttl"), before, "host value untouched");

    let before = host_sysctl("kernel.shmmax");
    let mut b = rt.bundle();
    b.without_namespace("ipc");
    b.set("linux.sysctl", json!({"kernel.shmmax": "123456789"}));
    b.sh("echo container-ran");
    refused(&rt, &b, "kernel.shmmax");
    assert_eq!(host_sysctl("kernel.shmmax"), before, "host value untouched");
}
