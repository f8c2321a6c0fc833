//! `berth ps`: processes of a container (its cgroup), as pids in JSON or as `ps` lines.

use super::Ctx;
use crate::state::{State, Status};
use crate::{Error, Result};

pub fn ps(ctx: &Ctx, id: &str, json: bool, ps_args: &[String]) -> Result<String> {
    let st = State::load(&ctx.root, id)?;
    if st.status(&ctx.root) == Status::Stopped {
        return Err(Error::Container(format!("container {id} is not running")));
    }
    let pids = crate::cgroups::pids(&st.cgroup_paths);
    if json {
        return Ok(format!("{}\n", serde_json::to_string(&pids).expect("json")));
    }
    let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| Error::io(format!("run ps {}", args.join(" ")), e))?;
    if !out.status.success() {
        return Err(Error::Container(format!("ps {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::Container(format!("ps {}: no PID column in its output", args.join(" "))))?;
    let mut res = format!("{header}\n");
    for l in lines {
        if let Some(pid) = l.split_whitespace().nth(col).and_then(|p| p.parse::<i32>().ok()) {
            if pids.contains(&pid) {
                res.push_str(l);
                res.push('\n');
            }
        }
    }
    Ok(res)
}
