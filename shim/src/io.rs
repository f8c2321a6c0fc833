//! The CRI log writer: each record is
//! `<RFC3339Nano> <stdout|stderr> <P|F> <content>\n`, written with one
//! `write` to a file opened `O_APPEND`, so records never interleave. A line
//! longer than the buffer becomes `P` records of `line_max` bytes and a final
//! `F` record. Rotation by size keeps `max_files` old files (`<log>.1` newest).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::protocol::rfc3339_nano;
use crate::{io_err, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The log file with rotation.
pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    /// 0: never rotate.
    max_size: u64,
    /// Old files kept on rotation (0: the current file is truncated instead).
    max_files: u32,
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(format!("open log {}", path.display())))
}

impl LogFile {
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> Result<LogFile> {
        let file = open_append(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogFile { path: path.to_path_buf(), file, size, max_size, max_files })
    }

    /// Closes and reopens the path (after the daemon moved the file away).
    pub fn reopen(&mut self) -> Result<()> {
        self.file = open_append(&self.path)?;
        self.size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    /// `<log>.{max-1}` → `<log>.{max}`, ..., `<log>` → `<log>.1`, then a fresh `<log>`.
    pub fn rotate(&mut self) -> Result<()> {
        if self.max_files == 0 {
            self.file.set_len(0).map_err(io_err(format!("truncate {}", self.path.display())))?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(self.rotated(self.max_files));
        for n in (1..self.max_files).rev() {
            let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
        }
        std::fs::rename(&self.path, self.rotated(1))
            .map_err(io_err(format!("rotate {}", self.path.display())))?;
        self.reopen()
    }

    /// Writes one whole record, rotating first when it would cross the limit.
    fn write_record(&mut self, rec: &[u8]) -> Result<()> {
        if self.max_size > 0 && self.size > 0 && self.size + rec.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(rec).map_err(io_err(format!("write {}", self.path.display())))?;
        self.size += rec.len() as u64;
        Ok(())
    }
}

/// Turns a stream's bytes into records; holds the unfinished line of each stream.
pub struct CriWriter {
    pub log: LogFile,
    line_max: usize,
    pending: [Vec<u8>; 2],
}

fn idx(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl CriWriter {
    pub fn new(log: LogFile, line_max: usize) -> CriWriter {
        CriWriter { log, line_max: line_max.max(1), pending: [vec![], vec![]] }
    }

    fn record(&mut self, stream: Stream, partial: bool, content: &[u8]) -> Result<()> {
        let ts = rfc3339_nano(SystemTime::now());
        let mut rec = Vec::with_capacity(ts.len() + content.len() + 12);
        rec.extend_from_slice(ts.as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.name().as_bytes());
        rec.extend_from_slice(if partial { b" P " } else { b" F " });
        rec.extend_from_slice(content);
        rec.push(b'\n');
        self.log.write_record(&rec)
    }

    /// Feeds bytes read from a stream: complete lines become `F` records, a
    /// buffer-full of an unfinished line becomes a `P` record.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> Result<()> {
        let i = idx(stream);
        while !data.is_empty() {
            let room = self.line_max - self.pending[i].len();
            let take = data.len().min(room);
            if let Some(nl) = data[..take].iter().position(|&b| b == b'\n') {
                let mut line = std::mem::take(&mut self.pending[i]);
                line.extend_from_slice(&data[..nl]);
                self.record(stream, false, &line)?;
                data = &data[nl + 1..];
                continue;
            }
            self.pending[i].extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending[i].len() == self.line_max {
                // A newline right after a full buffer still ends this line: peek.
                if data.first() == Some(&b'\n') {
                    let line = std::mem::take(&mut self.pending[i]);
                    self.record(stream, false, &line)?;
                    data = &data[1..];
                } else {
                    let part = std::mem::take(&mut self.pending[i]);
                    self.record(stream, true, &part)?;
                }
            }
        }
        Ok(())
    }

    /// At end of stream: an unfinished last line is written as `F` (nothing follows).
    pub fn finish(&mut self, stream: Stream) -> Result<()> {
        let i = idx(stream);
        if !self.pending[i].is_empty() {
            let line = std::mem::take(&mut self.pending[i]);
            self.record(stream, false, &line)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-shim-io-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// (stream, tag, content) of each record; checks the timestamp shape.
    fn records(p: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| {
                let mut f = l.splitn(4, ' ');
                let ts = f.next().unwrap();
                assert!(ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "timestamp {ts:?}");
                (f.next().unwrap().into(), f.next().unwrap().into(), f.next().unwrap_or("").into())
            })
            .collect()
    }

    fn r(s: &str, t: &str, c: &str) -> (String, String, String) {
        (s.into(), t.into(), c.into())
    }

    #[test]
    fn lines_partials_and_streams() {
        let d = tmpdir("lines");
        let p = d.join("log");
        let mut w = CriWriter::new(LogFile::open(&p, 0, 1).unwrap(), 4);
        w.write(Stream::Stdout, b"ab\ncd").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        w.write(Stream::Stdout, b"ef\n123456789\n\nabcd\nxy").unwrap();
        w.finish(Stream::Stdout).unwrap();
        w.finish(Stream::Stderr).unwrap();
        assert_eq!(
            records(&p),
            vec![
                r("stdout", "F", "ab"),
                r("stderr", "F", "err"),
                r("stdout", "F", "cdef"),
                r("stdout", "P", "1234"),
                r("stdout", "P", "5678"),
                r("stdout", "F", "9"),
                r("stdout", "F", ""),
                r("stdout", "F", "abcd"),
                r("stdout", "F", "xy"),
            ]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rotation_keeps_n_files_and_reopen_follows_the_path() {
        let d = tmpdir("rotate");
        let p = d.join("log");
        let mut w = CriWriter::new(LogFile::open(&p, 100, 2).unwrap(), 1024);
        for i in 0..10 {
            w.write(Stream::Stdout, format!("line {i} .............................\n").as_bytes()).unwrap();
        }
        // Each record is ~70 bytes: one per file.
        assert!(p.exists() && d.join("log.1").exists() && d.join("log.2").exists());
        assert!(!d.join("log.3").exists());
        assert_eq!(records(&p)[0].2, "line 9 .............................");
        assert_eq!(records(&d.join("log.1"))[0].2, "line 8 .............................");
        std::fs::rename(&p, d.join("moved")).unwrap();
        w.log.reopen().unwrap();
        w.write(Stream::Stderr, b"after\n").unwrap();
        assert_eq!(records(&p), vec![r("stderr", "F", "after")]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
