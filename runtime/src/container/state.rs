//! `berth state`: the spec's state JSON.

use super::Ctx;
use crate::state::State;
use crate::Result;

pub fn state(ctx: &Ctx, id: &str) -> Result<String> {
    let st = State::load(&ctx.root, id)?;
    Ok(serde_json::to_string_pretty(&st.to_oci_json(&ctx.root)).expect("json"))
}
