//! `berth list`: every container under --root, as a table, JSON or ids.

use super::Ctx;
use crate::state::State;
use crate::Result;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

pub fn list(ctx: &Ctx, format: Format, quiet: bool) -> Result<String> {
    let mut states = Vec::new();
    for id in crate::state::list_ids(&ctx.root)? {
        // A container deleted meanwhile is simply not listed.
        if let Ok(st) = State::load(&ctx.root, &id) {
            states.push(st.to_oci_json(&ctx.root));
        }
    }
    if quiet {
        return Ok(states.iter().map(|s| format!("{}\n", s["id"].as_str().unwrap_or(""))).collect());
    }
    if format == Format::Json {
        return Ok(format!("{}\n", serde_json::Value::Array(states)));
    }
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from).to_vec()];
    for s in &states {
        let f = |k: &str| s[k].as_str().map(str::to_string).unwrap_or_else(|| s[k].to_string());
        rows.push(vec![f("id"), f("pid"), f("status"), f("bundle"), f("created"), f("owner")]);
    }
    Ok(table(&rows))
}

/// Columns padded like Go's tabwriter (min width, padding 3).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[i] + 3));
            }
        }
        out.push('\n');
    }
    out
}
