//! Driving `berth-shim` from tests: launching it as a daemon would, reading
//! its CRI log and exit file, and talking to its control socket (JSON lines,
//! then frames: 1 byte kind, 4 bytes big-endian length, payload).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{default_timeout, pid_alive, repo_root, wait_for_file, wait_until, Bundle, Runtime};

/// `$BERTH_BIN_DIR/berth-shim` (else `target/bin/berth-shim`).
pub fn shim_bin() -> PathBuf {
    let dir = std::env::var_os("BERTH_BIN_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/bin"));
    let p = dir.join("berth-shim");
    assert!(p.is_file(), "{} not found: run scripts/build (or set BERTH_BIN_DIR)", p.display());
    p
}

/// One shim's files, under the test's temp dir.
pub struct Shim {
    pub log: PathBuf,
    pub exit_dir: PathBuf,
    pub pid_file: PathBuf,
    pub socket_dir: PathBuf,
}

/// What the caller got back.
pub struct Reported {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Shim {
    pub fn new(rt: &Runtime) -> Shim {
        let d = rt.path("shim");
        std::fs::create_dir_all(&d).unwrap();
        Shim { log: d.join("ctr.log"), exit_dir: d.join("exits"), pid_file: d.join("shim.pid"), socket_dir: d.join("s") }
    }

    pub fn args(&self, rt: &Runtime, b: &Bundle, extra: &[&str]) -> Vec<String> {
        b.write_config();
        let mut a: Vec<String> = [
            "--id", b.id(),
            "--bundle", b.dir().to_str().unwrap(),
            "--runtime", rt.bin().to_str().unwrap(),
            "--runtime-root", rt.root().to_str().unwrap(),
            "--log-path", self.log.to_str().unwrap(),
            "--exit-dir", self.exit_dir.to_str().unwrap(),
            "--pid-file", self.pid_file.to_str().unwrap(),
            "--socket-dir", self.socket_dir.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    /// Runs the shim as its caller would: returns once it reported.
    pub fn launch(&self, rt: &Runtime, b: &Bundle, extra: &[&str]) -> Reported {
        let child = Command::new(shim_bin())
            .args(self.args(rt, b, extra))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Bounded: the report comes once create (and start) returned.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()).ok());
        let out = match rx.recv_timeout(default_timeout()) {
            Ok(o) => o.unwrap(),
            Err(_) => {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                panic!("berth-shim did not report within {:?}", default_timeout());
            }
        };
        Reported {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Launch, expecting a container pid.
    #[track_caller]
    pub fn launch_ok(&self, rt: &Runtime, b: &Bundle, extra: &[&str]) -> i32 {
        let r = self.launch(rt, b, extra);
        assert_eq!(r.code, 0, "shim failed: stdout {:?} stderr {:?}", r.stdout, r.stderr);
        assert!(r.stdout.ends_with('\n') && r.stdout.lines().count() == 1, "report {:?}", r.stdout);
        let pid: i32 = r.stdout.trim().parse().unwrap_or_else(|_| panic!("report is not a pid: {:?}", r.stdout));
        assert!(pid > 1);
        pid
    }

    pub fn exit_file(&self, b: &Bundle) -> PathBuf {
        self.exit_dir.join(format!("{}.json", b.id()))
    }

    /// Waits for the exit file, then for the shim itself to be gone.
    #[track_caller]
    pub fn wait_exit(&self, b: &Bundle) -> Value {
        let text = wait_for_file(&self.exit_file(b));
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("exit file {text:?}: {e}"));
        wait_until("the shim's pid file to go", || !self.pid_file.exists());
        v
    }

    pub fn shim_pid(&self) -> i32 {
        wait_for_file(&self.pid_file).trim().parse().unwrap()
    }

    /// (stream, tag, content) of every record, checking each timestamp.
    pub fn records(&self) -> Vec<(String, String, String)> {
        records(&self.log)
    }

    pub fn control_path(&self) -> PathBuf {
        self.socket_dir.join("control.sock")
    }

    /// A new connection to the control socket.
    #[track_caller]
    pub fn connect(&self) -> Control {
        let p = self.control_path();
        let sock = UnixStream::connect(&p).unwrap_or_else(|e| panic!("connect {}: {e}", p.display()));
        sock.set_read_timeout(Some(default_timeout())).unwrap();
        Control { sock, buf: vec![] }
    }

    /// After the shim exited: it left nothing in its socket dir and no pid file.
    #[track_caller]
    pub fn assert_clean(&self) {
        wait_until("the shim's pid file to go", || !self.pid_file.exists());
        let left: Vec<String> = std::fs::read_dir(&self.socket_dir)
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "the shim left files in its socket dir: {left:?}");
    }
}

/// (stream, tag, content) of every record of a CRI log, checking each timestamp.
pub fn records(p: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let mut last_ts = String::new();
    text.lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let ts = f.next().unwrap().to_string();
            check_timestamp(&ts);
            // Fixed-width UTC timestamps compare as strings.
            assert!(ts >= last_ts, "timestamps go backwards: {last_ts} then {ts}");
            last_ts = ts;
            let stream = f.next().unwrap_or_else(|| panic!("no stream in {l:?}")).to_string();
            let tag = f.next().unwrap_or_else(|| panic!("no tag in {l:?}")).to_string();
            assert!(stream == "stdout" || stream == "stderr", "stream {stream:?} in {l:?}");
            assert!(tag == "P" || tag == "F", "tag {tag:?} in {l:?}");
            (stream, tag, f.next().unwrap_or("").to_string())
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, within a day of now.
#[track_caller]
pub fn check_timestamp(ts: &str) {
    let b = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    assert!(
        b.len() == 30
            && digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10) && b[10] == b'T'
            && digits(11..13) && b[13] == b':' && digits(14..16) && b[16] == b':' && digits(17..19)
            && b[19] == b'.' && digits(20..29) && b[29] == b'Z',
        "not RFC3339Nano UTC: {ts:?}"
    );
    // Asked once per test binary: a log may hold hundreds of thousands of records.
    static TODAY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let today = TODAY.get_or_init(|| {
        let out = Command::new("date").args(["-u", "+%Y-%m-%d"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    });
    assert!(ts.starts_with(today.as_str()) || ts < today.as_str(), "timestamp {ts} is not today ({today})");
}

/// A log record, for comparisons.
pub fn r(s: &str, t: &str, c: &str) -> (String, String, String) {
    (s.into(), t.into(), c.into())
}

#[track_caller]
pub fn assert_shim_gone(shim: &Shim, pid: i32) {
    wait_until("the shim to exit", || !pid_alive(pid));
    assert!(!shim.pid_file.exists());
}

/// Frame kinds of the control socket's streams.
pub mod frame {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    pub const RESIZE: u8 = 3;
    pub const EXIT: u8 = 4;
    pub const CLOSE_STDIN: u8 = 5;
}

/// A connection to a shim's control socket. Every read is bounded by the
/// default timeout.
pub struct Control {
    pub sock: UnixStream,
    buf: Vec<u8>,
}

/// What a stream brought until its exit frame.
#[derive(Debug, Default)]
pub struct Streamed {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Option<Value>,
}

impl Streamed {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).replace("\r\n", "\n")
    }
}

impl Control {
    fn fill(&mut self) -> bool {
        let mut b = [0u8; 65536];
        match self.sock.read(&mut b) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
            Err(e) => panic!("read from the control socket: {e}"),
        }
    }

    /// Sends one request line, returns the parsed response line.
    #[track_caller]
    pub fn request(&mut self, req: &Value) -> Value {
        let mut line = serde_json::to_vec(req).unwrap();
        line.push(b'\n');
        self.sock.write_all(&line).unwrap();
        self.response()
    }

    /// Reads one response line.
    #[track_caller]
    pub fn response(&mut self) -> Value {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=nl).collect();
                return serde_json::from_slice(&l)
                    .unwrap_or_else(|e| panic!("response is not JSON ({e}): {:?}", String::from_utf8_lossy(&l)));
            }
            assert!(self.fill(), "the shim closed the connection before responding");
        }
    }

    pub fn send_frame(&mut self, kind: u8, payload: &[u8]) {
        let mut f = vec![kind];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        self.sock.write_all(&f).unwrap();
    }

    pub fn stdin(&mut self, data: &str) {
        self.send_frame(frame::STDIN, data.as_bytes());
    }

    pub fn resize(&mut self, width: u16, height: u16) {
        self.send_frame(frame::RESIZE, format!(r#"{{"width":{width},"height":{height}}}"#).as_bytes());
    }

    /// The next frame, or `None` when the shim closed the connection.
    pub fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
                if self.buf.len() >= 5 + len {
                    let k = self.buf[0];
                    let p = self.buf[5..5 + len].to_vec();
                    self.buf.drain(..5 + len);
                    return Some((k, p));
                }
            }
            if !self.fill() {
                assert!(self.buf.is_empty(), "the connection ended inside a frame");
                return None;
            }
        }
    }

    /// Reads frames until stdout (with `\r\n` as `\n`) contains `needle`;
    /// returns that output. Panics on exit or timeout.
    #[track_caller]
    pub fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + default_timeout();
        let mut out = Streamed::default();
        while !out.stdout_text().contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} in {:?}", out.stdout_text());
            match self.frame() {
                Some((frame::STDOUT, p)) => out.stdout.extend(p),
                Some((frame::STDERR, p)) => out.stderr.extend(p),
                Some((frame::EXIT, p)) => panic!("exited ({}) before {needle:?}: {:?}", String::from_utf8_lossy(&p), out),
                Some((k, _)) => panic!("unexpected frame kind {k}"),
                None => panic!("connection closed before {needle:?}: {out:?}"),
            }
        }
        out.stdout_text()
    }

    /// Reads frames until the exit frame; then the shim closes the connection.
    #[track_caller]
    pub fn read_to_exit(&mut self) -> Streamed {
        let mut out = Streamed::default();
        loop {
            match self.frame() {
                Some((frame::STDOUT, p)) => out.stdout.extend(p),
                Some((frame::STDERR, p)) => out.stderr.extend(p),
                Some((frame::EXIT, p)) => {
                    out.exit = Some(serde_json::from_slice(&p).expect("exit frame is JSON"));
                    assert!(self.frame().is_none(), "frames after the exit frame");
                    return out;
                }
                Some((k, _)) => panic!("unexpected frame kind {k}"),
                None => panic!("connection closed without an exit frame: {out:?}"),
            }
        }
    }
}

/// Standard base64 (what `exec_sync` returns), decoded.
#[track_caller]
pub fn b64(text: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {text:?}"),
        }
    };
    assert!(text.len() % 4 == 0, "base64 length: {text:?}");
    let mut out = vec![];
    for q in text.as_bytes().chunks(4) {
        let pad = q.iter().filter(|&&c| c == b'=').count();
        let n = q[..4 - pad].iter().fold(0u32, |n, &c| n << 6 | val(c)) << (6 * pad);
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..3 - pad]);
    }
    out
}

/// `exec_sync` output field as text.
pub fn b64_text(v: &Value) -> String {
    String::from_utf8_lossy(&b64(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))).into_owned()
}

/// How long a test may wait for something slow (generous: the machine is shared).
pub fn patience() -> Duration {
    default_timeout()
}
