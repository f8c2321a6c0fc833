//! `berth pause` / `berth resume`: freeze and thaw every process of the container's
//! cgroup (v1 freezer.state, v2 cgroup.freeze); `state` then says `paused`.

use super::Ctx;
use crate::state::{State, Status};
use crate::{Error, Result};

pub fn pause(ctx: &Ctx, id: &str) -> Result<()> {
    let st = State::load(&ctx.root, id)?;
    match st.status(&ctx.root) {
        Status::Running => crate::cgroups::open(&st.cgroup_paths).set_frozen(true),
        s => Err(Error::Container(format!("container {id} is {}, not running: cannot pause it", s.as_str()))),
    }
}

pub fn resume(ctx: &Ctx, id: &str) -> Result<()> {
    let st = State::load(&ctx.root, id)?;
    match st.status(&ctx.root) {
        Status::Paused => crate::cgroups::open(&st.cgroup_paths).set_frozen(false),
        s => Err(Error::Container(format!("container {id} is {}, not paused: cannot resume it", s.as_str()))),
    }
}
