//! The command line (see `shim/README.md` for each flag).

use std::path::PathBuf;

use crate::{Error, Result};

/// Default size of one CRI log record's content: longer lines are split into
/// `P` records of this many bytes.
pub const DEFAULT_LINE_MAX: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: PathBuf,
    pub runtime_root: Option<PathBuf>,
    pub log_path: PathBuf,
    pub exit_dir: PathBuf,
    pub socket_dir: Option<PathBuf>,
    /// The shim's own pid (written once it has detached).
    pub pid_file: Option<PathBuf>,
    /// Where the runtime writes the container's pid (`<bundle>/init.pid` by default).
    pub container_pid_file: PathBuf,
    /// The runtime's `--log` (JSON): its warnings stay out of the container's stderr.
    /// `<bundle>/log.json` by default (containerd's name).
    pub runtime_log: PathBuf,
    /// 0: no rotation.
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub log_line_max: usize,
    /// The report goes to this inherited descriptor instead of stdout.
    pub sync_fd: Option<i32>,
    pub start: bool,
    pub delete: bool,
    /// The container has a pty (config.json must say `process.terminal: true`).
    pub terminal: bool,
    /// Keep the container's stdin open for `attach`.
    pub stdin: bool,
    /// Run after the exit file is written (and after `--delete`).
    pub exit_command: Option<PathBuf>,
    pub exit_command_args: Vec<String>,
}

fn usage() -> &'static str {
    "usage: berth-shim --id ID --bundle DIR --log-path FILE --exit-dir DIR [--runtime PATH] \
     [--runtime-root DIR] [--socket-dir DIR] [--pid-file F] [--container-pid-file F] [--runtime-log F] \
     [--log-max-size N] [--log-max-files N] [--log-line-max N] [--sync-fd N] [--start] [--delete] \
     [--terminal] [--stdin] [--exit-command PATH [--exit-command-arg ARG]...]"
}

impl Config {
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Config> {
        let mut id = None;
        let mut bundle = None;
        let mut runtime = PathBuf::from("berth");
        let mut runtime_root = None;
        let mut log_path = None;
        let mut exit_dir = None;
        let mut socket_dir = None;
        let mut pid_file = None;
        let mut container_pid_file = None;
        let mut runtime_log = None;
        let mut log_max_size = 0u64;
        let mut log_max_files = 1u32;
        let mut log_line_max = DEFAULT_LINE_MAX;
        let mut sync_fd = None;
        let mut start = false;
        let mut delete = false;
        let mut terminal = false;
        let mut stdin = false;
        let mut exit_command = None;
        let mut exit_command_args = vec![];

        let mut it = args.iter().map(|s| s.as_ref());
        while let Some(arg) = it.next() {
            // `--flag=value` and `--flag value` both work.
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (arg, None),
            };
            let value = |it: &mut dyn Iterator<Item = &str>| -> Result<String> {
                inline
                    .clone()
                    .or_else(|| it.next().map(str::to_string))
                    .ok_or_else(|| Error::Usage(format!("{flag} needs a value\n{}", usage())))
            };
            let num = |flag: &str, v: String| -> Result<u64> {
                v.parse::<u64>().map_err(|_| Error::Usage(format!("{flag}: not a number: {v:?}")))
            };
            match flag {
                "--id" => id = Some(value(&mut it)?),
                "--bundle" | "-b" => bundle = Some(PathBuf::from(value(&mut it)?)),
                "--runtime" => runtime = PathBuf::from(value(&mut it)?),
                "--runtime-root" => runtime_root = Some(PathBuf::from(value(&mut it)?)),
                "--log-path" => log_path = Some(PathBuf::from(value(&mut it)?)),
                "--exit-dir" => exit_dir = Some(PathBuf::from(value(&mut it)?)),
                "--socket-dir" => socket_dir = Some(PathBuf::from(value(&mut it)?)),
                "--pid-file" => pid_file = Some(PathBuf::from(value(&mut it)?)),
                "--container-pid-file" => container_pid_file = Some(PathBuf::from(value(&mut it)?)),
                "--runtime-log" => runtime_log = Some(PathBuf::from(value(&mut it)?)),
                "--log-max-size" => log_max_size = num(flag, value(&mut it)?)?,
                "--log-max-files" => log_max_files = num(flag, value(&mut it)?)? as u32,
                "--log-line-max" => log_line_max = (num(flag, value(&mut it)?)? as usize).max(1),
                "--sync-fd" => sync_fd = Some(num(flag, value(&mut it)?)? as i32),
                "--start" => start = true,
                "--delete" => delete = true,
                "--terminal" | "-t" => terminal = true,
                "--stdin" | "-i" => stdin = true,
                "--exit-command" => exit_command = Some(PathBuf::from(value(&mut it)?)),
                "--exit-command-arg" => exit_command_args.push(value(&mut it)?),
                "-h" | "--help" => return Err(Error::Usage(usage().into())),
                other => return Err(Error::Usage(format!("unknown argument {other:?}\n{}", usage()))),
            }
        }
        fn need<T>(v: Option<T>, f: &str) -> Result<T> {
            v.ok_or_else(|| Error::Usage(format!("{f} is required\n{}", usage())))
        }
        let id: String = need(id, "--id")?;
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(Error::Usage(format!("invalid container id {id:?}")));
        }
        let bundle: PathBuf = need(bundle, "--bundle")?;
        let container_pid_file = container_pid_file.unwrap_or_else(|| bundle.join("init.pid"));
        let runtime_log = runtime_log.unwrap_or_else(|| bundle.join("log.json"));
        Ok(Config {
            id,
            bundle,
            runtime,
            runtime_root,
            log_path: need(log_path, "--log-path")?,
            exit_dir: need(exit_dir, "--exit-dir")?,
            socket_dir,
            pid_file,
            container_pid_file,
            runtime_log,
            log_max_size,
            log_max_files,
            log_line_max,
            sync_fd,
            start,
            delete,
            terminal,
            stdin,
            exit_command,
            exit_command_args,
        })
    }

    /// `<runtime> [--root R] <args>` as an argument vector (without the program).
    pub fn runtime_args(&self, args: &[&str]) -> Vec<String> {
        self.runtime_args_log(&self.runtime_log, args)
    }

    /// Like [`Config::runtime_args`] with another `--log` (each exec has its own,
    /// so its error is its own).
    pub fn runtime_args_log<S: AsRef<str>>(&self, log: &std::path::Path, args: &[S]) -> Vec<String> {
        let mut a = vec![
            "--log".to_string(),
            log.display().to_string(),
            "--log-format".to_string(),
            "json".to_string(),
        ];
        if let Some(r) = &self.runtime_root {
            a.push("--root".to_string());
            a.push(r.display().to_string());
        }
        a.extend(args.iter().map(|s| s.as_ref().to_string()));
        a
    }

    /// `<exit-dir>/<id>.json`.
    pub fn exit_file(&self) -> PathBuf {
        self.exit_dir.join(format!("{}.json", self.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_required_and_defaults() {
        let c = Config::parse(&["--id", "c1", "--bundle", "/b", "--log-path=/l", "--exit-dir", "/e"]).unwrap();
        assert_eq!(c.runtime, PathBuf::from("berth"));
        assert_eq!(c.container_pid_file, PathBuf::from("/b/init.pid"));
        assert_eq!(c.exit_file(), PathBuf::from("/e/c1.json"));
        assert_eq!(c.log_max_size, 0);
        assert!(!c.start && !c.delete && !c.terminal && !c.stdin && c.exit_command.is_none());
        assert_eq!(c.runtime_args(&["create"]), vec!["--log", "/b/log.json", "--log-format", "json", "create"]);
    }

    #[test]
    fn parses_everything() {
        let c = Config::parse(&[
            "--id", "c", "--bundle", "/b", "--log-path", "/l", "--exit-dir", "/e", "--runtime", "/usr/sbin/runc",
            "--runtime-root", "/r", "--log-max-size", "100", "--log-max-files", "3", "--sync-fd", "5", "--start",
            "--delete", "--pid-file", "/p", "--terminal", "--stdin", "--exit-command", "/bin/x",
            "--exit-command-arg", "a", "--exit-command-arg=b c",
        ])
        .unwrap();
        assert!(c.terminal && c.stdin);
        assert_eq!(c.exit_command, Some(PathBuf::from("/bin/x")));
        assert_eq!(c.exit_command_args, ["a", "b c"]);
        assert_eq!(c.runtime_args(&["start", "c"])[4..], ["--root", "/r", "start", "c"]);
        assert_eq!((c.log_max_size, c.log_max_files, c.sync_fd), (100, 3, Some(5)));
        assert!(c.start && c.delete);
        assert_eq!(c.pid_file, Some(PathBuf::from("/p")));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Config::parse(&["--id", "c"]).is_err());
        assert!(Config::parse(&["--id", "../x", "--bundle", "/b", "--log-path", "/l", "--exit-dir", "/e"]).is_err());
        assert!(Config::parse(&["--bogus"]).is_err());
        assert!(Config::parse(&["--id"]).is_err());
    }
}
