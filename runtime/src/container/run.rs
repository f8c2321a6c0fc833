//! `berth run`: create + start; in the foreground wait, forward signals, proxy the
//! terminal if the process has one, delete the container and return its exit code.

use super::create::{self, Opts};
use super::Ctx;
use crate::{Error, Result};

pub fn run(ctx: &Ctx, o: &Opts, detach: bool) -> Result<i32> {
    let terminal = crate::spec::load(&o.bundle)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false);
    let proxy = terminal && o.console_socket.is_none();
    if proxy && detach {
        return Err(Error::Config("process.terminal with --detach needs --console-socket".into()));
    }
    let (ours, theirs) = if proxy {
        let (a, b) = super::foreground::console_pair()?;
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    let st = create::create(ctx, o, theirs)?;
    if let Err(e) = super::start::start(ctx, &o.id) {
        let _ = super::delete::destroy(ctx, &st);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let master = match ours.map(|s| super::foreground::receive_master(&s)).transpose() {
        Ok(m) => m,
        Err(e) => {
            let _ = super::delete::destroy(ctx, &st);
            return Err(e);
        }
    };
    let code = super::foreground::wait(st.pid, master);
    let del = super::delete::destroy(ctx, &st);
    let code = code?;
    del?;
    Ok(code)
}
