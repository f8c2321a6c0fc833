//! The control socket's protocol (`<socket-dir>/control.sock`, documented in
//! `shim/README.md`): one JSON request per line, one JSON response line per
//! request; after a successful `exec` or `attach` response the connection
//! carries frames: 1 byte kind, 4 bytes big-endian payload length, payload.

use serde::Deserialize;

/// Frame kinds.
pub mod kind {
    /// client → shim: bytes for the process's stdin.
    pub const STDIN: u8 = 0;
    /// shim → client: output (with a terminal, all output is `STDOUT`).
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    /// client → shim: `{"width":W,"height":H}`.
    pub const RESIZE: u8 = 3;
    /// shim → client, last frame: how the process ended (JSON).
    pub const EXIT: u8 = 4;
    /// client → shim, empty: no more stdin.
    pub const CLOSE_STDIN: u8 = 5;
}

/// Largest payload a client may send in one frame.
pub const MAX_FRAME: usize = 1 << 20;
/// Longest request line.
pub const MAX_LINE: usize = 1 << 20;

/// What an exec runs (both `exec_sync` and `exec`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ExecSpec {
    pub args: Vec<String>,
    /// `K=V` entries added to the container's environment.
    #[serde(default)]
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// `uid[:gid]`, as the runtime's `exec --user`.
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    ExecSync {
        #[serde(flatten)]
        spec: ExecSpec,
        /// Seconds; 0 or absent: no limit.
        #[serde(default)]
        timeout_s: u64,
    },
    Exec {
        #[serde(flatten)]
        spec: ExecSpec,
        #[serde(default)]
        tty: bool,
        #[serde(default)]
        stdin: bool,
        width: Option<u16>,
        height: Option<u16>,
    },
    Attach,
    Resize {
        width: u16,
        height: u16,
    },
    ReopenLog,
    Stop {
        #[serde(default = "default_stop_timeout")]
        timeout_s: u64,
        /// As `<runtime> kill` takes it (`TERM`, `SIGINT`, `15`); default `TERM`.
        signal: Option<String>,
    },
    State,
}

fn default_stop_timeout() -> u64 {
    10
}

impl Request {
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let r: Request = serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))?;
        match &r {
            Request::ExecSync { spec, .. } | Request::Exec { spec, .. } if spec.args.is_empty() => {
                Err("bad request: args must not be empty".into())
            }
            Request::Stop { signal: Some(s), .. }
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-') =>
            {
                Err(format!("bad request: signal {s:?}"))
            }
            _ => Ok(r),
        }
    }
}

/// `{"width":W,"height":H}` of a resize frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Size {
    pub width: u16,
    pub height: u16,
}

/// A response line: `{"ok":true,...fields}`.
pub fn ok(fields: serde_json::Value) -> Vec<u8> {
    let mut v = serde_json::json!({"ok": true});
    if let (Some(m), serde_json::Value::Object(f)) = (v.as_object_mut(), fields) {
        m.extend(f);
    }
    line(&v)
}

/// A response line: `{"ok":false,"error":"..."}`.
pub fn error(text: &str) -> Vec<u8> {
    line(&serde_json::json!({"ok": false, "error": text}))
}

fn line(v: &serde_json::Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).expect("a JSON value serialises");
    b.push(b'\n');
    b
}

/// Appends one frame to `out`.
pub fn encode(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// Takes the first complete frame off the front of `buf`: `Ok(None)` when
/// more bytes are needed, `Err` when the length exceeds `max`.
pub fn decode(buf: &mut Vec<u8>, max: usize) -> Result<Option<Frame>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > max {
        return Err(format!("frame of {len} bytes (at most {max})"));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    let kind = buf[0];
    let payload = buf[5..5 + len].to_vec();
    buf.drain(..5 + len);
    Ok(Some(Frame { kind, payload }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_request() {
        let r = Request::parse(br#"{"op":"exec_sync","args":["ls","-l"],"env":["A=1"],"cwd":"/tmp","timeout_s":5}"#);
        assert_eq!(
            r.unwrap(),
            Request::ExecSync {
                spec: ExecSpec { args: vec!["ls".into(), "-l".into()], env: vec!["A=1".into()], cwd: Some("/tmp".into()), user: None },
                timeout_s: 5
            }
        );
        let r = Request::parse(br#"{"op":"exec","args":["sh"],"tty":true,"stdin":true,"width":80,"height":24,"user":"1:2"}"#);
        match r.unwrap() {
            Request::Exec { spec, tty, stdin, width, height } => {
                assert_eq!(spec.user.as_deref(), Some("1:2"));
                assert!(tty && stdin);
                assert_eq!((width, height), (Some(80), Some(24)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Request::parse(br#"{"op":"attach"}"#).unwrap(), Request::Attach);
        assert_eq!(Request::parse(br#"{"op":"resize","width":1,"height":2}"#).unwrap(), Request::Resize { width: 1, height: 2 });
        assert_eq!(Request::parse(br#"{"op":"reopen_log"}"#).unwrap(), Request::ReopenLog);
        assert_eq!(Request::parse(br#"{"op":"state"}"#).unwrap(), Request::State);
        assert_eq!(Request::parse(br#"{"op":"stop"}"#).unwrap(), Request::Stop { timeout_s: 10, signal: None });
        assert_eq!(
            Request::parse(br#"{"op":"stop","timeout_s":0,"signal":"SIGINT"}"#).unwrap(),
            Request::Stop { timeout_s: 0, signal: Some("SIGINT".into()) }
        );
        // Defaults for exec_sync.
        match Request::parse(br#"{"op":"exec_sync","args":["true"]}"#).unwrap() {
            Request::ExecSync { timeout_s, spec } => assert_eq!((timeout_s, spec.env.len()), (0, 0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_bad_requests() {
        for bad in [
            &br#"{"op":"exec_sync","args":[]}"#[..],
            br#"{"op":"exec_sync"}"#,
            br#"{"op":"fly"}"#,
            br#"{"args":["x"]}"#,
            br#"not json"#,
            br#"{"op":"resize","width":-1,"height":2}"#,
            br#"{"op":"stop","signal":"TERM; rm"}"#,
        ] {
            let e = Request::parse(bad).unwrap_err();
            assert!(e.starts_with("bad request: "), "{e}");
        }
    }

    #[test]
    fn responses_are_single_json_lines() {
        let l = ok(serde_json::json!({"pid": 7}));
        assert_eq!(l.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v, serde_json::json!({"ok": true, "pid": 7}));
        let e = error("no\nway");
        assert_eq!(e.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"], "no\nway");
    }

    #[test]
    fn frames_round_trip_in_pieces() {
        let mut wire = vec![];
        encode(kind::STDOUT, b"hello", &mut wire);
        encode(kind::CLOSE_STDIN, b"", &mut wire);
        encode(kind::RESIZE, br#"{"width":80,"height":24}"#, &mut wire);
        assert_eq!(&wire[..5], &[1, 0, 0, 0, 5]);
        // Fed one byte at a time, the same frames come out.
        let mut buf = vec![];
        let mut got = vec![];
        for b in wire {
            buf.push(b);
            while let Some(f) = decode(&mut buf, MAX_FRAME).unwrap() {
                got.push(f);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Frame { kind: kind::STDOUT, payload: b"hello".to_vec() });
        assert_eq!(got[1], Frame { kind: kind::CLOSE_STDIN, payload: vec![] });
        let s: Size = serde_json::from_slice(&got[2].payload).unwrap();
        assert_eq!(s, Size { width: 80, height: 24 });
    }

    #[test]
    fn oversized_frame_is_an_error() {
        let mut buf = vec![kind::STDIN, 0, 0x10, 0, 1];
        assert!(decode(&mut buf, MAX_FRAME).is_err());
        let mut buf = vec![kind::STDIN, 0, 0, 0];
        assert_eq!(decode(&mut buf, MAX_FRAME), Ok(None));
    }
}
