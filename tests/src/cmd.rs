//! Running a command with a deadline and capturing what it wrote.
//!
//! Output goes to files, never pipes: a runtime hands its own stdio to the
//! container it creates, so a pipe would stay open (and a reader would hang)
//! for as long as the container lives. We wait for the process to exit, not
//! for end-of-file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What a finished (or timed-out) command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    /// The full command line, for messages.
    pub argv: Vec<String>,
    /// Exit code, `None` when killed by a signal or timed out.
    pub code: Option<i32>,
    /// Signal that ended the process, if any.
    pub signal: Option<i32>,
    /// True when the deadline passed and the process was killed.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// Where stdout/stderr went (files that may keep growing if a detached
    /// child inherited them; see [`Output::stdout_now`]).
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    /// Lines the runtime appended to its `--log` file during this command:
    /// parsed JSON objects, or strings for lines that are not JSON.
    pub log: Vec<Value>,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Exit code; panics (with the whole output) if there is none.
    pub fn code(&self) -> i32 {
        match self.code {
            Some(c) => c,
            None => panic!("no exit code:\n{self}"),
        }
    }

    /// Asserts exit code 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "command failed:\n{self}");
        self
    }

    /// Asserts a non-zero exit (not a timeout, not a signal) and returns self.
    #[track_caller]
    pub fn fails(self) -> Self {
        assert!(!self.timed_out, "command timed out:\n{self}");
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "command should have failed with a non-zero exit code:\n{self}"
        );
        self
    }

    /// Asserts the runtime's error contract: non-zero exit, exactly one
    /// non-empty line on stderr, and at least one `{"level":"error","msg":..,
    /// "time":..}` line in the `--log` file. `needles` must appear
    /// (case-insensitively) in the stderr line and in an error log message;
    /// `berth_needles` likewise, but only when the runtime is not runc
    /// (runc 1.1's messages often do not name the object).
    #[track_caller]
    pub fn assert_error(&self, needles: &[&str], berth_needles: &[&str]) -> &Self {
        assert!(!self.timed_out, "command timed out:\n{self}");
        assert!(matches!(self.code, Some(c) if c != 0), "command should fail with a non-zero exit code:\n{self}");
        let lines = self.stderr_lines();
        assert_eq!(lines.len(), 1, "want exactly one error line on stderr:\n{self}");
        let errors = self.log_errors();
        assert!(!errors.is_empty(), "no {{\"level\":\"error\"}} line in the --log file:\n{self}");
        for e in &errors {
            assert!(e.get("msg").and_then(Value::as_str).is_some_and(|m| !m.is_empty()), "log line without msg: {e}\n{self}");
            let time = e.get("time").and_then(Value::as_str).unwrap_or("");
            assert!(time.len() >= 20 && time.as_bytes().get(10) == Some(&b'T'), "log line without an RFC 3339 time: {e}\n{self}");
        }
        let mut all: Vec<&str> = needles.to_vec();
        if !crate::is_runc() {
            all.extend_from_slice(berth_needles);
        }
        let line = lines[0].to_lowercase();
        for n in all {
            let n = n.to_lowercase();
            assert!(line.contains(&n), "stderr line should mention {n:?}:\n{self}");
            assert!(
                errors.iter().any(|e| e["msg"].as_str().unwrap_or("").to_lowercase().contains(&n)),
                "error log message should mention {n:?}:\n{self}"
            );
        }
        self
    }

    /// Current contents of the stdout file (re-read: a detached child may
    /// have written more since the command returned).
    pub fn stdout_now(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    pub fn stderr_now(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }

    /// Log entries with `"level": "error"`.
    pub fn log_errors(&self) -> Vec<&Value> {
        self.log
            .iter()
            .filter(|v| v.get("level").and_then(Value::as_str) == Some("error"))
            .collect()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  command: {}", self.argv.join(" "))?;
        writeln!(
            f,
            "  exit: code={:?} signal={:?} timed_out={} after {:?}",
            self.code, self.signal, self.timed_out, self.elapsed
        )?;
        writeln!(f, "  stdout: {}", indent(&self.stdout))?;
        writeln!(f, "  stderr: {}", indent(&self.stderr))?;
        if !self.log.is_empty() {
            writeln!(f, "  log:")?;
            for l in &self.log {
                writeln!(f, "    {l}")?;
            }
        }
        Ok(())
    }
}

fn indent(s: &str) -> String {
    if s.is_empty() {
        return "(empty)".into();
    }
    let s = s.trim_end_matches('\n');
    if s.contains('\n') {
        format!("\n    {}", s.replace('\n', "\n    "))
    } else {
        s.to_string()
    }
}

pub(crate) fn read_lossy(p: &Path) -> String {
    std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// Where a child's stdin comes from.
#[derive(Debug, Clone, Default)]
pub enum Input {
    #[default]
    Null,
    Data(Vec<u8>),
    File(PathBuf),
}

/// A command with its deadline and the files that receive its output.
pub struct Cmd {
    pub(crate) cmd: Command,
    pub(crate) argv: Vec<String>,
    pub(crate) stdin: Input,
    pub(crate) stdout: PathBuf,
    pub(crate) stderr: PathBuf,
    pub(crate) timeout: Duration,
    pub(crate) log: Option<PathBuf>,
}

impl Cmd {
    /// `program args...`, capturing into `<stdout>` / `<stderr>` (truncated first).
    pub fn new(program: &Path, args: &[String], stdout: PathBuf, stderr: PathBuf) -> Cmd {
        let mut cmd = Command::new(program);
        cmd.args(args);
        let mut argv = vec![program.display().to_string()];
        argv.extend(args.iter().cloned());
        Cmd { cmd, argv, stdin: Input::Null, stdout, stderr, timeout: crate::default_timeout(), log: None }
    }

    pub fn stdin(mut self, input: Input) -> Self {
        self.stdin = input;
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Collect the lines appended to this log file while the command runs.
    pub fn watch_log(mut self, log: &Path) -> Self {
        self.log = Some(log.to_path_buf());
        self
    }

    /// Runs to completion or kills the process (SIGKILL) at the deadline.
    pub fn run(mut self) -> Output {
        let log_start = self.log.as_ref().map(|p| file_len(p)).unwrap_or(0);
        let out = open_out(&self.stdout);
        let err = open_out(&self.stderr);
        let stdin = match &self.stdin {
            Input::Null => Stdio::null(),
            Input::File(p) => Stdio::from(
                File::open(p).unwrap_or_else(|e| panic!("open stdin file {}: {e}", p.display())),
            ),
            Input::Data(d) => {
                let p = self.stdout.with_extension("stdin");
                let mut f = File::create(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
                f.write_all(d).unwrap();
                Stdio::from(File::open(&p).unwrap())
            }
        };
        self.cmd.stdin(stdin).stdout(out).stderr(err);
        let start = Instant::now();
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.argv.join(" ")));
        // Poll with a growing sleep: cheap, and no helper thread to leak.
        let mut nap = Duration::from_micros(500);
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) => {}
                Err(e) => panic!("wait {}: {e}", self.argv.join(" ")),
            }
            if start.elapsed() >= self.timeout {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(10));
        };
        let elapsed = start.elapsed();
        let log = match &self.log {
            Some(p) => read_log_from(p, log_start),
            None => vec![],
        };
        let (code, signal) = match status {
            Some(st) => (st.code(), st.signal()),
            None => (None, None),
        };
        let o = Output {
            argv: self.argv,
            code,
            signal,
            timed_out,
            stdout: read_lossy(&self.stdout),
            stderr: read_lossy(&self.stderr),
            stdout_path: self.stdout,
            stderr_path: self.stderr,
            log,
            elapsed,
        };
        if timed_out {
            eprintln!("TIMEOUT after {:?}, killed:\n{o}", elapsed);
        }
        o
    }
}

fn open_out(p: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(p)
        .unwrap_or_else(|e| panic!("create output file {}: {e}", p.display()))
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Parses the log file from byte `from` on: JSON lines as objects, anything
/// else as a string.
pub fn read_log_from(p: &Path, from: u64) -> Vec<Value> {
    let data = std::fs::read(p).unwrap_or_default();
    let from = (from as usize).min(data.len());
    String::from_utf8_lossy(&data[from..])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_string())))
        .collect()
}
