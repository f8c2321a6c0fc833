//! nftables rules of the Berth CNI plugins: masquerade for berth-bridge's `ipMasq` and the
//! DNAT/SNAT rules of berth-portmap (built in `portmap.rs`, applied here).
//!
//! We drive the `nft` command's JSON interface (`nft -j -f -` to apply, `nft -j list table`
//! to read back) with serde_json; no nftables crate. Why, and the rule layout, are in
//! `cni/README.md` ("nftables"). In short:
//!
//! - Everything lives in one table, `inet berth-cni`, in the network namespace the plugin runs
//!   in (the node's). Its chains are base chains of our own, one per purpose, so that
//!   berth-bridge's masquerade and berth-portmap never touch each other's rules even though
//!   both tag rules of the same attachment alike:
//!   `hostport-dnat` (nat prerouting, dstnat), `hostport-output` (nat output, dstnat),
//!   `hostport-snat` (nat postrouting, srcnat) and `masquerade` (nat postrouting, srcnat).
//!   `inet` nat needs Linux 5.2 or later.
//! - Every rule carries the comment `berth:<network>:<containerid>:<ifname>` ([`Tag`]).
//!   DEL and GC list the table, pick their own rules by tag and chain, and delete them by
//!   handle; nothing else is ever removed, and the table and chains stay (deleting them could
//!   race with a concurrent ADD and lose its rules).
//! - One `nft -f` transaction per operation: ADD is `add table`, `add chain` (both idempotent,
//!   so concurrent plugins can all create them) and its rules, atomically. A delete that
//!   races with another delete of the same rules fails as a whole and is retried on a fresh
//!   listing.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::spec;

/// The table all Berth CNI rules live in (family `inet`).
pub const TABLE: &str = "berth-cni";
pub const FAMILY: &str = "inet";

/// Error code when nft cannot be run or refuses a transaction (CNI: I/O failure).
pub const CODE_NFT: u32 = spec::code::IO;
/// Error code when CHECK finds rules missing (CNI reserves no code for it; the reference
/// plugins report such failures as 999, "internal").
pub const CODE_CHECK: u32 = spec::code::INTERNAL;

/// How many times a transaction is retried when it lost a race (see module docs).
const ATTEMPTS: usize = 5;

/// The chains of [`TABLE`]; each is a base chain and owned by one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Chain {
    /// portmap: DNAT of traffic arriving for a local address (prerouting).
    HostportDnat,
    /// portmap: DNAT of traffic the node itself sends to a local address (output).
    HostportOutput,
    /// portmap: hairpin and localhost masquerade of DNATed traffic (postrouting).
    HostportSnat,
    /// bridge `ipMasq`: masquerade of pod traffic leaving the pod subnet (postrouting).
    Masquerade,
}

impl Chain {
    pub const PORTMAP: [Chain; 3] = [Chain::HostportDnat, Chain::HostportOutput, Chain::HostportSnat];

    pub fn name(self) -> &'static str {
        match self {
            Chain::HostportDnat => "hostport-dnat",
            Chain::HostportOutput => "hostport-output",
            Chain::HostportSnat => "hostport-snat",
            Chain::Masquerade => "masquerade",
        }
    }

    fn hook(self) -> &'static str {
        match self {
            Chain::HostportDnat => "prerouting",
            Chain::HostportOutput => "output",
            Chain::HostportSnat | Chain::Masquerade => "postrouting",
        }
    }

    /// dstnat (-100) for DNAT, srcnat (100) for SNAT, as nft names them.
    fn prio(self) -> i32 {
        match self {
            Chain::HostportDnat | Chain::HostportOutput => -100,
            Chain::HostportSnat | Chain::Masquerade => 100,
        }
    }

    fn from_name(name: &str) -> Option<Chain> {
        [Chain::HostportDnat, Chain::HostportOutput, Chain::HostportSnat, Chain::Masquerade]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// The comment on every rule: `berth:<network>:<containerid>:<ifname>`.
///
/// nft keeps at most 128 bytes of comment, and `:` separates the parts, so a part that is too
/// long or holds anything but `[A-Za-z0-9_.-]` is replaced by `~` and a 64-bit FNV-1a hash of
/// it. The same inputs always give the same tag, so DEL and GC still find their rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag {
    network: String,
    container_id: String,
    ifname: String,
}

const TAG_PREFIX: &str = "berth:";
/// Part limits: 6 + 38 + 1 + 64 + 1 + 17 = 127 bytes at most.
const MAX_NETWORK: usize = 38;
const MAX_CONTAINER_ID: usize = 64;
const MAX_IFNAME: usize = 17;

impl Tag {
    pub fn new(network: &str, container_id: &str, ifname: &str) -> Tag {
        Tag {
            network: tag_part(network, MAX_NETWORK),
            container_id: tag_part(container_id, MAX_CONTAINER_ID),
            ifname: tag_part(ifname, MAX_IFNAME),
        }
    }

    /// Parses a rule comment; `None` for comments that are not Berth tags.
    pub fn parse(comment: &str) -> Option<Tag> {
        let rest = comment.strip_prefix(TAG_PREFIX)?;
        let mut parts = rest.split(':');
        let (network, container_id, ifname) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [network, container_id, ifname].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(Tag { network: network.into(), container_id: container_id.into(), ifname: ifname.into() })
    }

    /// True when this tag belongs to `network` (as given in the config, before sanitising).
    pub fn is_network(&self, network: &str) -> bool {
        self.network == tag_part(network, MAX_NETWORK)
    }

    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{TAG_PREFIX}{}:{}:{}", self.network, self.container_id, self.ifname)
    }
}

fn tag_part(s: &str, max: usize) -> String {
    let plain = !s.is_empty()
        && s.len() <= max
        && !s.starts_with('~')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if plain {
        return s.to_string();
    }
    // FNV-1a, 64 bit: stable across builds and platforms (std's hasher is not).
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    format!("~{h:016x}")
}

/// One rule to add: its chain and its nft JSON expressions (as `nft -j list` prints them back,
/// so that CHECK can compare what it lists with what it would add).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub chain: Chain,
    pub expr: Vec<Value>,
}

/// A rule of [`TABLE`] as listed by nft.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
    pub expr: Value,
}

impl Listed {
    pub fn tag(&self) -> Option<Tag> {
        self.comment.as_deref().and_then(Tag::parse)
    }
}

/// Failures of nft itself.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft not found in PATH, /usr/sbin, /sbin or /usr/bin (install nftables)")]
    NotFound,
    #[error("run {path}: {source}")]
    Spawn { path: String, source: std::io::Error },
    #[error("nft {what} in table {FAMILY} {TABLE}: {stderr}")]
    Failed { what: String, stderr: String },
    #[error("nft {what}: unreadable JSON output: {source}")]
    Output { what: String, source: serde_json::Error },
}

impl From<NftError> for spec::Error {
    fn from(e: NftError) -> spec::Error {
        spec::Error::new(CODE_NFT, e.to_string())
    }
}

/// The `nft` binary.
#[derive(Debug, Clone)]
pub struct Nft {
    path: PathBuf,
}

impl Nft {
    /// Finds `nft` in `PATH`, else in the usual sbin directories (runtimes often call
    /// plugins with a bare environment).
    pub fn locate() -> Result<Nft, NftError> {
        let path_dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
        let fixed = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
        path_dirs
            .iter()
            .chain(fixed.iter())
            .map(|d| d.join("nft"))
            .find(|p| is_executable(p))
            .map(|path| Nft { path })
            .ok_or(NftError::NotFound)
    }

    pub fn at(path: impl Into<PathBuf>) -> Nft {
        Nft { path: path.into() }
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>, what: &str) -> Result<std::process::Output, NftError> {
        let spawn_err = |source| NftError::Spawn { path: self.path.display().to_string(), source };
        let mut child = Command::new(&self.path)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        if let Some(input) = stdin {
            // nft reads its whole input before it answers, so writing first cannot deadlock.
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(input).map_err(spawn_err)?;
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if !out.status.success() && what != "list" {
            return Err(failed(what, &out));
        }
        Ok(out)
    }

    /// Applies `cmds` (nft JSON commands) as one transaction.
    pub fn apply(&self, cmds: &[Value], what: &str) -> Result<(), NftError> {
        let doc = json!({ "nftables": cmds });
        self.run(&["-j", "-f", "-"], Some(doc.to_string().as_bytes()), what).map(|_| ())
    }

    /// Every rule of [`TABLE`]; empty when the table does not exist.
    pub fn list(&self) -> Result<Vec<Listed>, NftError> {
        let out = self.run(&["-j", "list", "table", FAMILY, TABLE], None, "list")?;
        if !out.status.success() {
            if String::from_utf8_lossy(&out.stderr).contains("No such file or directory") {
                return Ok(Vec::new());
            }
            return Err(failed("list", &out));
        }
        parse_listing(&out.stdout).map_err(|source| NftError::Output { what: "list".into(), source })
    }

    /// Adds `rules` tagged with `tag`, creating the table and their chains if needed, in one
    /// transaction.
    pub fn add_rules(&self, tag: &Tag, rules: &[Rule]) -> Result<(), NftError> {
        if rules.is_empty() {
            return Ok(());
        }
        let cmds = add_commands(tag, rules);
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match self.apply(&cmds, "add") {
                Ok(()) => return Ok(()),
                // The kernel answers EBUSY/EAGAIN-like errors when another transaction changed
                // the ruleset under nft's cache; a fresh attempt succeeds.
                Err(NftError::Failed { stderr, .. }) if is_transient(&stderr) => {
                    last = Some(NftError::Failed { what: "add".into(), stderr });
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Deletes every rule in `chains` whose tag satisfies `doomed`; returns how many.
    pub fn delete_rules(&self, chains: &[Chain], doomed: impl Fn(&Tag) -> bool) -> Result<usize, NftError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let victims: Vec<Listed> = self
                .list()?
                .into_iter()
                .filter(|r| Chain::from_name(&r.chain).is_some_and(|c| chains.contains(&c)))
                .filter(|r| r.tag().is_some_and(|t| doomed(&t)))
                .collect();
            if victims.is_empty() {
                return Ok(0);
            }
            let cmds: Vec<Value> = victims.iter().map(|r| delete_command(&r.chain, r.handle)).collect();
            match self.apply(&cmds, "delete") {
                Ok(()) => return Ok(victims.len()),
                // Someone deleted one of them first (a concurrent DEL or GC): list again.
                Err(_) if attempt < ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The rules of `rules` that are not in the table with tag `tag` (empty: all present).
    pub fn missing_rules(&self, tag: &Tag, rules: &[Rule]) -> Result<Vec<Rule>, NftError> {
        let listed = self.list()?;
        let comment = tag.to_string();
        Ok(rules
            .iter()
            .filter(|want| {
                !listed.iter().any(|have| {
                    have.chain == want.chain.name()
                        && have.comment.as_deref() == Some(comment.as_str())
                        && have.expr == Value::Array(want.expr.clone())
                })
            })
            .cloned()
            .collect())
    }
}

fn failed(what: &str, out: &std::process::Output) -> NftError {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let stderr = if stderr.is_empty() { format!("exit status {}", out.status) } else { stderr };
    NftError::Failed { what: what.to_string(), stderr }
}

fn is_transient(stderr: &str) -> bool {
    ["Device or resource busy", "Interrupted system call", "try again"].iter().any(|s| stderr.contains(s))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The rules in `nft -j list table` output.
pub fn parse_listing(stdout: &[u8]) -> Result<Vec<Listed>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Doc {
        nftables: Vec<Value>,
    }
    #[derive(serde::Deserialize)]
    struct RuleJson {
        chain: String,
        handle: u64,
        #[serde(default)]
        comment: Option<String>,
        #[serde(default)]
        expr: Value,
    }
    let doc: Doc = serde_json::from_slice(stdout)?;
    let mut rules = Vec::new();
    for obj in doc.nftables {
        if let Some(r) = obj.get("rule") {
            let r: RuleJson = serde_json::from_value(r.clone())?;
            rules.push(Listed { chain: r.chain, handle: r.handle, comment: r.comment, expr: r.expr });
        }
    }
    Ok(rules)
}

/// `add table`, `add chain` for each chain `rules` use, then `add rule` for each rule.
pub fn add_commands(tag: &Tag, rules: &[Rule]) -> Vec<Value> {
    let mut cmds = vec![json!({"add": {"table": {"family": FAMILY, "name": TABLE}}})];
    let mut chains: Vec<Chain> = Vec::new();
    for r in rules {
        if !chains.contains(&r.chain) {
            chains.push(r.chain);
        }
    }
    for c in chains {
        cmds.push(json!({"add": {"chain": {
            "family": FAMILY, "table": TABLE, "name": c.name(),
            "type": "nat", "hook": c.hook(), "prio": c.prio(), "policy": "accept",
        }}}));
    }
    let comment = tag.to_string();
    for r in rules {
        cmds.push(json!({"add": {"rule": {
            "family": FAMILY, "table": TABLE, "chain": r.chain.name(),
            "comment": comment, "expr": r.expr,
        }}}));
    }
    cmds
}

fn delete_command(chain: &str, handle: u64) -> Value {
    json!({"delete": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "handle": handle}}})
}

// ---- expression builders (nft JSON, in the form `nft -j list` prints back) ----

pub(crate) fn ip_proto(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

/// `meta nfproto ipv4|ipv6`: needed before a family-specific statement in an `inet` chain
/// when no address match already implies the family.
pub(crate) fn nfproto(addr: IpAddr) -> Value {
    json!({"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": if addr.is_ipv4() { "ipv4" } else { "ipv6" }}})
}

/// `<ip|ip6> <saddr|daddr> <op> <value>` (the family taken from `family_of`).
pub(crate) fn addr_match(family_of: IpAddr, field: &str, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": {"payload": {"protocol": ip_proto(family_of), "field": field}}, "right": right}})
}

/// A single address, or a prefix in its network form (`10.1.0.0/16`).
pub(crate) fn net_value(net: IpNet) -> Value {
    if net.prefix_len() == net.max_prefix_len() {
        json!(net.addr().to_string())
    } else {
        json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
    }
}

pub(crate) fn addr_value(addr: IpAddr) -> Value {
    json!(addr.to_string())
}

/// `tcp|udp dport <port>`.
pub(crate) fn dport_match(proto: &str, port: u16) -> Value {
    json!({"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": port}})
}

/// `fib daddr type local`: only traffic for this node's own addresses.
pub(crate) fn daddr_is_local() -> Value {
    json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}})
}

/// `ct status dnat`: the connection was destination-NATed.
pub(crate) fn ct_dnat() -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}})
}

pub(crate) fn masquerade() -> Value {
    json!({"masquerade": null})
}

pub(crate) fn dnat(to: IpAddr, port: u16) -> Value {
    json!({"dnat": {"family": ip_proto(to), "addr": to.to_string(), "port": port}})
}

// ---- masquerade for berth-bridge's ipMasq ----

/// The masquerade rules for pod addresses `ips` (address + pod subnet prefix): traffic from
/// the pod address to anything outside its subnet and outside multicast is masqueraded.
pub fn masquerade_rules(ips: &[IpNet]) -> Vec<Rule> {
    ips.iter()
        .map(|net| {
            let a = net.addr();
            let mut expr = vec![addr_match(a, "saddr", "==", addr_value(a))];
            if net.prefix_len() < net.max_prefix_len() {
                expr.push(addr_match(a, "daddr", "!=", net_value(net.trunc())));
            }
            let multicast: IpNet = if a.is_ipv4() { "224.0.0.0/4" } else { "ff00::/8" }.parse().expect("constant prefix");
            expr.push(addr_match(a, "daddr", "!=", net_value(multicast)));
            expr.push(masquerade());
            Rule { chain: Chain::Masquerade, expr }
        })
        .collect()
}

/// Masquerades traffic from the pod addresses `ips` leaving their subnet (`ipMasq`).
/// One transaction; the runtime never ADDs an attachment twice without a DEL between.
pub fn masquerade_add(network: &str, container_id: &str, ifname: &str, ips: &[IpNet]) -> Result<(), spec::Error> {
    let nft = Nft::locate()?;
    nft.add_rules(&Tag::new(network, container_id, ifname), &masquerade_rules(ips))?;
    Ok(())
}

/// Removes the attachment's masquerade rules; succeeds when there are none.
pub fn masquerade_del(network: &str, container_id: &str, ifname: &str) -> Result<(), spec::Error> {
    let tag = Tag::new(network, container_id, ifname);
    Nft::locate()?.delete_rules(&[Chain::Masquerade], |t| *t == tag)?;
    Ok(())
}

/// CHECK: the attachment's masquerade rules for `ips` are all present.
pub fn masquerade_check(network: &str, container_id: &str, ifname: &str, ips: &[IpNet]) -> Result<(), spec::Error> {
    let tag = Tag::new(network, container_id, ifname);
    let missing = Nft::locate()?.missing_rules(&tag, &masquerade_rules(ips))?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(spec::Error::new(
            CODE_CHECK,
            format!("{} of the masquerade rules tagged {tag} are missing from table {FAMILY} {TABLE}", missing.len()),
        ))
    }
}

/// GC: removes the masquerade rules of `network` whose attachment is not in `valid`.
pub fn masquerade_gc(network: &str, valid: &[spec::Attachment]) -> Result<(), spec::Error> {
    Nft::locate()?.delete_rules(&[Chain::Masquerade], |t| is_stale(t, network, valid))?;
    Ok(())
}

/// True for a tag of `network` whose attachment is not among `valid`.
pub fn is_stale(tag: &Tag, network: &str, valid: &[spec::Attachment]) -> bool {
    tag.is_network(network) && !valid.iter().any(|a| Tag::new(network, &a.container_id, &a.ifname) == *tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trips() {
        let t = Tag::new("mynet", "0123abcd", "eth0");
        assert_eq!(t.to_string(), "berth:mynet:0123abcd:eth0");
        assert_eq!(Tag::parse(&t.to_string()), Some(t.clone()));
        assert!(t.is_network("mynet"));
        assert!(!t.is_network("other"));
        assert_eq!((t.container_id(), t.ifname()), ("0123abcd", "eth0"));
    }

    #[test]
    fn tag_parse_rejects_foreign_comments() {
        for c in ["", "berth:", "berth:a:b", "berth:a:b:c:d", "berth::b:c", "other:a:b:c", "kube-proxy rule"] {
            assert_eq!(Tag::parse(c), None, "{c:?}");
        }
    }

    #[test]
    fn tag_hashes_long_or_odd_parts_and_stays_short() {
        let long_net = "n".repeat(200);
        let cid = "f".repeat(64);
        let t = Tag::new(&long_net, &cid, "a:b c");
        let s = t.to_string();
        assert!(s.len() <= 127, "{s} is {} bytes", s.len());
        assert_eq!(Tag::parse(&s), Some(t.clone()));
        // deterministic, and distinct inputs give distinct parts
        assert_eq!(Tag::new(&long_net, &cid, "a:b c"), t);
        assert_ne!(Tag::new(&"m".repeat(200), &cid, "a:b c"), t);
        assert!(t.is_network(&long_net));
        // a plain part that looks like a hash is hashed too, so it cannot collide with one
        assert_ne!(tag_part("~0123456789abcdef", 38), "~0123456789abcdef");
        // the longest possible tag
        let worst = Tag::new(&"x".repeat(38), &"y".repeat(64), &"z".repeat(17)).to_string();
        assert_eq!(worst.len(), 127);
    }

    #[test]
    fn masquerade_rules_exclude_subnet_and_multicast() {
        let ips: Vec<IpNet> = vec!["10.22.0.5/24".parse().unwrap(), "fd00:1::5/64".parse().unwrap()];
        let rules = masquerade_rules(&ips);
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().all(|r| r.chain == Chain::Masquerade));
        assert_eq!(
            Value::Array(rules[0].expr.clone()),
            json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.22.0.5"}},
                {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.22.0.0", "len": 24}}}},
                {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "224.0.0.0", "len": 4}}}},
                {"masquerade": null},
            ])
        );
        assert_eq!(
            Value::Array(rules[1].expr.clone()),
            json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "fd00:1::5"}},
                {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": {"prefix": {"addr": "fd00:1::", "len": 64}}}},
                {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": {"prefix": {"addr": "ff00::", "len": 8}}}},
                {"masquerade": null},
            ])
        );
        // a /32 has no subnet to exclude
        let host = masquerade_rules(&["10.0.0.9/32".parse().unwrap()]);
        assert_eq!(host[0].expr.len(), 3);
    }

    #[test]
    fn add_commands_create_table_and_used_chains_once() {
        let tag = Tag::new("net", "c1", "eth0");
        let rules = masquerade_rules(&["10.0.0.2/24".parse().unwrap(), "10.0.1.2/24".parse().unwrap()]);
        let cmds = add_commands(&tag, &rules);
        assert_eq!(cmds.len(), 1 + 1 + 2);
        assert_eq!(cmds[0], json!({"add": {"table": {"family": "inet", "name": "berth-cni"}}}));
        assert_eq!(
            cmds[1],
            json!({"add": {"chain": {"family": "inet", "table": "berth-cni", "name": "masquerade",
                "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}})
        );
        assert_eq!(cmds[2]["add"]["rule"]["comment"], "berth:net:c1:eth0");
        assert_eq!(cmds[3]["add"]["rule"]["chain"], "masquerade");
    }

    #[test]
    fn listing_is_parsed() {
        let out = br#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": "berth-cni", "handle": 1}},
            {"chain": {"family": "inet", "table": "berth-cni", "name": "masquerade", "handle": 1}},
            {"rule": {"family": "inet", "table": "berth-cni", "chain": "masquerade", "handle": 4,
                      "comment": "berth:n:c:eth0", "expr": [{"masquerade": null}]}},
            {"rule": {"family": "inet", "table": "berth-cni", "chain": "masquerade", "handle": 5,
                      "expr": [{"accept": null}]}}]}"#;
        let rules = parse_listing(out).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].handle, 4);
        assert_eq!(rules[0].tag(), Some(Tag::new("n", "c", "eth0")));
        assert_eq!(rules[1].tag(), None);
        assert_eq!(rules[0].expr, json!([{"masquerade": null}]));
    }

    #[test]
    fn gc_keeps_valid_and_other_networks() {
        let valid = vec![spec::Attachment { container_id: "keep".into(), ifname: "eth0".into() }];
        assert!(!is_stale(&Tag::new("net", "keep", "eth0"), "net", &valid));
        assert!(is_stale(&Tag::new("net", "keep", "eth1"), "net", &valid));
        assert!(is_stale(&Tag::new("net", "gone", "eth0"), "net", &valid));
        assert!(!is_stale(&Tag::new("other", "gone", "eth0"), "net", &valid));
    }

    #[test]
    fn chains_map_to_hooks() {
        assert_eq!(Chain::from_name("hostport-output"), Some(Chain::HostportOutput));
        assert_eq!(Chain::from_name("nope"), None);
        assert_eq!((Chain::HostportDnat.hook(), Chain::HostportDnat.prio()), ("prerouting", -100));
        assert_eq!((Chain::HostportSnat.hook(), Chain::HostportSnat.prio()), ("postrouting", 100));
    }
}
