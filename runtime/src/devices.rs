//! Device access policy (`linux.resources.devices`): which device nodes the container
//! may open (r, w) or create (m). Device *nodes* in /dev are `rootfs::devices`.
//!
//! Rules are applied in order, a later rule overriding an earlier one, as the spec says.
//! - cgroup v1 (and hybrid hosts): each rule is one write to the devices controller's
//!   `devices.allow` or `devices.deny`; a wildcard `a` rule resets the list, so a list
//!   that starts with deny-all starts from nothing allowed (the kernel keeps the rest).
//! - cgroup v2: the devices controller is gone; the kernel asks a
//!   `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the cgroup. We generate it from
//!   the rules (`Program`), load it, attach it with `BPF_F_ALLOW_MULTI` (programs of
//!   ancestors, e.g. systemd's, still apply: the kernel ANDs them) and detach the
//!   programs that were there before, so applying again (update) replaces the policy.
//!   The program dies with the cgroup: nothing to clean up on delete.
//!
//! The default set: when a list denies everything (a deny-all rule, as engines send),
//! berth inserts allow rules for what every container's /dev needs (null, zero, full,
//! random, urandom, tty, console 5:1, pts 136:*, ptmx 5:2) right after the last deny-all
//! rule. runc appends its own set (those plus `c *:* m`, `b *:* m` and tun 10:200) at the
//! end of every list; inserting instead of appending lets a config still deny one of the
//! defaults explicitly, and leaving out mknod-anything and tun keeps a deny-all list
//! meaning what it says: engines that want those (docker and podman do) send them.
//!
//! The runtime applies the policy when the init reports Ready (after it built /dev and
//! created the `linux.devices` nodes, before the user program), as runc does at
//! procReady: a config may list a node it does not allow, and the node is then created
//! but cannot be opened.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::IoContext;
use crate::{Error, Result};

/// One rule in checked form. `None` = wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// b'a', b'b' or b'c'.
    pub kind: u8,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// ACC_* bits.
    pub access: u32,
}

// Access bits as the kernel hands them to a device program (bpf_cgroup_dev_ctx).
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;
// Device types in bpf_cgroup_dev_ctx.access_type's low 16 bits.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

impl Rule {
    /// Matches every device with every access.
    fn is_everything(&self) -> bool {
        self.kind == b'a' && self.major.is_none() && self.minor.is_none() && self.access == ACC_ALL
    }

    /// The rule as the v1 controller can take it: `a` there always means everything
    /// (the kernel ignores the rest of the line), so a narrower `a` rule becomes a `c`
    /// and a `b` rule.
    fn v1_rules(&self) -> Vec<Rule> {
        if self.kind == b'a' && !self.is_everything() {
            vec![Rule { kind: b'c', ..*self }, Rule { kind: b'b', ..*self }]
        } else {
            vec![*self]
        }
    }

    /// Do the two rules name some common device (types and numbers overlap)?
    fn overlaps(&self, o: &Rule) -> bool {
        let num = |a: Option<u32>, b: Option<u32>| a.is_none() || b.is_none() || a == b;
        (self.kind == b'a' || o.kind == b'a' || self.kind == o.kind) && num(self.major, o.major) && num(self.minor, o.minor)
    }

    /// The devices-controller line: `c 1:3 rwm`, `a *:* rwm`.
    fn v1_line(&self) -> String {
        if self.is_everything() {
            return "a *:* rwm".into();
        }
        let n = |x: Option<u32>| x.map_or("*".to_string(), |v| v.to_string());
        let mut acc = String::new();
        for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                acc.push(c);
            }
        }
        format!("{} {}:{} {}", self.kind as char, n(self.major), n(self.minor), acc)
    }
}

/// Check one config rule: type a/b/c, access a non-empty combination of r, w, m
/// (absent = rwm), major/minor absent, -1 (wildcard) or a device number.
pub fn check(i: usize, d: &LinuxDeviceCgroup) -> Result<Rule> {
    let bad = |what: String| Error::Config(format!("linux.resources.devices[{i}]: {what}"));
    let kind = match d.typ() {
        None | Some(LinuxDeviceType::A) => b'a',
        Some(LinuxDeviceType::B) => b'b',
        Some(LinuxDeviceType::C) => b'c',
        Some(t) => return Err(bad(format!("type {:?}: a device rule's type is a (all), b (block) or c (char)", t.as_str()))),
    };
    let number = |what: &str, v: Option<i64>| -> Result<Option<u32>> {
        match v {
            None | Some(-1) => Ok(None),
            Some(n) if (0..=i32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
            Some(n) => Err(bad(format!("{what} {n}: must be a device number or -1 (any)"))),
        }
    };
    let (major, minor) = (number("major", d.major())?, number("minor", d.minor())?);
    let access = match d.access().as_deref() {
        None => ACC_ALL,
        Some(s) => {
            let mut bits = 0;
            for c in s.chars() {
                bits |= match c {
                    'r' => ACC_READ,
                    'w' => ACC_WRITE,
                    'm' => ACC_MKNOD,
                    _ => return Err(bad(format!("access {s:?}: only the letters r, w and m are allowed"))),
                };
            }
            if bits == 0 {
                return Err(bad(format!("access {s:?}: must name at least one of r, w, m")));
            }
            bits
        }
    };
    Ok(Rule { allow: d.allow(), kind, major, minor, access })
}

/// Check a whole list (config validation).
pub fn check_all(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    rules.iter().enumerate().map(|(i, d)| check(i, d)).collect()
}

/// What every container's /dev needs, allowed (see the module comment).
pub fn default_allowed() -> Vec<Rule> {
    let c = |major, minor: Option<u32>| Rule { allow: true, kind: b'c', major: Some(major), minor, access: ACC_ALL };
    vec![
        c(1, Some(3)),   // null
        c(1, Some(5)),   // zero
        c(1, Some(7)),   // full
        c(1, Some(8)),   // random
        c(1, Some(9)),   // urandom
        c(5, Some(0)),   // tty
        c(5, Some(1)),   // console
        c(5, Some(2)),   // ptmx
        c(136, None),    // pts/*
    ]
}

/// The effective rule list: the config's, with the default set inserted after the last
/// deny-all rule. Empty when the config restricts nothing (no rules, or only allow-all).
pub fn effective(rules: &[Rule]) -> Vec<Rule> {
    if rules.iter().all(|r| r.allow && r.is_everything()) {
        return vec![];
    }
    let mut out = rules.to_vec();
    if let Some(last_deny_all) = rules.iter().rposition(|r| !r.allow && r.is_everything()) {
        out.splice(last_deny_all + 1..last_deny_all + 1, default_allowed());
    }
    out
}

/// Enforce `rules` on the container's cgroup: the v1 devices controller when the
/// container has a v1 devices cgroup among `cgroup_paths`, else an eBPF program on its
/// cgroup2 directory. Applying again replaces the previous policy.
pub fn apply(cgroup_paths: &[PathBuf], rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let rules = effective(&check_all(rules)?);
    if rules.is_empty() {
        return Ok(());
    }
    if let Some(dir) = cgroup_paths.iter().find(|p| p.join("devices.allow").exists()) {
        return apply_v1(dir, &rules);
    }
    match cgroup_paths.iter().find(|p| is_cgroup2(p)) {
        Some(dir) => apply_v2(dir, &rules),
        None => Err(Error::Container(
            "linux.resources.devices: the container has neither a cgroup v1 devices controller nor a cgroup2 directory to enforce device rules on".into(),
        )),
    }
}

fn is_cgroup2(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The v1 controller keeps a default (allow or deny) plus exceptions, and a rule against
/// the default only removes an exception with exactly its type and numbers. So "allow c
/// 60:* rw, then deny c 60:2 rw" leaves 60:2 allowed there. Such a list is refused on v1
/// (cgroup v2's program enforces it as written) rather than silently weakened. Before
/// the first everything-rule the inherited state is unknown and the kernel decides.
fn check_v1_expressible(rules: &[Rule]) -> Result<()> {
    let mut state: Option<(bool, Vec<Rule>)> = None;
    for r in rules {
        if r.is_everything() {
            state = Some((r.allow, vec![]));
            continue;
        }
        let Some((default_allow, exceptions)) = state.as_mut() else { continue };
        if r.allow != *default_allow {
            exceptions.push(*r);
            continue;
        }
        for e in exceptions.iter_mut() {
            let identical = e.kind == r.kind && e.major == r.major && e.minor == r.minor;
            if identical {
                e.access &= !r.access;
            } else if e.overlaps(r) && e.access & r.access != 0 {
                return Err(Error::Unsupported(format!(
                    "linux.resources.devices: \"{} {}\" after \"{} {}\": the cgroup v1 devices controller cannot override part of an earlier rule that names other devices too (cgroup v2 can); list the devices explicitly",
                    if r.allow { "allow" } else { "deny" },
                    r.v1_line(),
                    if e.allow { "allow" } else { "deny" },
                    e.v1_line()
                )));
            }
        }
        exceptions.retain(|e| e.access != 0);
    }
    Ok(())
}

fn apply_v1(dir: &Path, rules: &[Rule]) -> Result<()> {
    let rules: Vec<Rule> = rules.iter().flat_map(Rule::v1_rules).collect();
    check_v1_expressible(&rules)?;
    for r in &rules {
        let file = dir.join(if r.allow { "devices.allow" } else { "devices.deny" });
        let line = r.v1_line();
        fs::write(&file, &line).with_ctx(|| format!("write {line:?} to {}", file.display()))?;
    }
    Ok(())
}

fn apply_v2(dir: &Path, rules: &[Rule]) -> Result<()> {
    let prog = Program::generate(rules);
    let cg = nix::fcntl::open(dir, nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .map_err(|e| Error::sys("open cgroup", dir.display(), e))?;
    let old = bpf::query_device_programs(&cg).map_err(|e| Error::sys("query device programs of cgroup", dir.display(), e))?;
    let fd = bpf::load_device_program(&prog.insns).map_err(|(e, log)| {
        Error::Container(format!("load the device cgroup program for {}: {e}{}", dir.display(), if log.is_empty() { String::new() } else { format!(": {log}") }))
    })?;
    bpf::attach_device_program(&cg, &fd).map_err(|e| Error::sys("attach device program to cgroup", dir.display(), e))?;
    // Only after the new program is in place (until then both apply, which is stricter).
    for id in old {
        match bpf::program_fd_by_id(id) {
            Ok(old_fd) => bpf::detach_device_program(&cg, &old_fd).map_err(|e| Error::sys(&format!("detach device program {id} from cgroup"), dir.display(), e))?,
            Err(nix::errno::Errno::ENOENT) => {} // gone meanwhile
            Err(e) => return Err(Error::sys(&format!("get device program {id} of cgroup"), dir.display(), e)),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The eBPF program.

/// One eBPF instruction (struct bpf_insn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes (class | size/op | source) from linux/bpf.h.
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const JMP_JA: u8 = 0x05;
const JMP_JNE_K: u8 = 0x55;
const JMP_JSET_K: u8 = 0x45;
const JMP_EXIT: u8 = 0x95;

// Registers: r1 = ctx on entry; then r2 = access bits, r3 = type, r4 = major, r5 = minor.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

/// A device program. For each access bit the request carries (m, r, w), the rules are
/// walked from the last to the first; the first that matches the device and names that
/// bit decides (allow: on to the next bit; deny: return 0). A bit no rule names is
/// allowed (what the cgroup inherits; ancestors' programs still apply). All bits allowed:
/// return 1. Per bit, so `allow c 1:3 r` + `allow c 1:3 w` grants an O_RDWR open, as the
/// v1 controller (which merges the two) does.
pub struct Program {
    pub insns: Vec<Insn>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    NextBit(usize),
    NextRule(usize),
    Deny,
}

impl Program {
    pub fn generate(rules: &[Rule]) -> Program {
        let mut code: Vec<(Insn, Option<Label>)> = Vec::new();
        let mut at: Vec<(Label, usize)> = Vec::new();
        fn emit(code: &mut Vec<(Insn, Option<Label>)>, i: Insn, to: Option<Label>) {
            code.push((i, to));
        }
        // ctx: u32 access_type (access << 16 | type), u32 major, u32 minor.
        emit(&mut code, insn(LDX_MEM_W, R2, R1, 0, 0), None);
        emit(&mut code, insn(ALU64_MOV_X, R3, R2, 0, 0), None);
        emit(&mut code, insn(ALU64_AND_K, R3, 0, 0, 0xffff), None);
        emit(&mut code, insn(ALU64_RSH_K, R2, 0, 0, 16), None);
        emit(&mut code, insn(LDX_MEM_W, R4, R1, 4, 0), None);
        emit(&mut code, insn(LDX_MEM_W, R5, R1, 8, 0), None);
        let mut rule_no = 0;
        let mut deny_used = false;
        for (b, bit) in [ACC_MKNOD, ACC_READ, ACC_WRITE].into_iter().enumerate() {
            // Not asked for: skip this bit.
            emit(&mut code, insn(JMP_JSET_K, R2, 0, 1, bit as i32), None);
            emit(&mut code, insn(JMP_JA, 0, 0, 0, 0), Some(Label::NextBit(b)));
            for r in rules.iter().rev().filter(|r| r.access & bit != 0) {
                let next = Label::NextRule(rule_no);
                rule_no += 1;
                let mut conditional = false;
                if r.kind != b'a' {
                    let t = if r.kind == b'b' { DEV_BLOCK } else { DEV_CHAR };
                    emit(&mut code, insn(JMP_JNE_K, R3, 0, 0, t), Some(next));
                    conditional = true;
                }
                for (reg, v) in [(R4, r.major), (R5, r.minor)] {
                    if let Some(v) = v {
                        emit(&mut code, insn(JMP_JNE_K, reg, 0, 0, v as i32), Some(next));
                        conditional = true;
                    }
                }
                if r.allow {
                    emit(&mut code, insn(JMP_JA, 0, 0, 0, 0), Some(Label::NextBit(b)));
                } else {
                    deny_used = true;
                    emit(&mut code, insn(JMP_JA, 0, 0, 0, 0), Some(Label::Deny));
                }
                at.push((next, code.len()));
                if !conditional {
                    // Matches everything: earlier rules are never reached (and the
                    // verifier refuses unreachable instructions).
                    break;
                }
            }
            at.push((Label::NextBit(b), code.len()));
        }
        emit(&mut code, insn(ALU64_MOV_K, R0, 0, 0, 1), None);
        emit(&mut code, insn(JMP_EXIT, 0, 0, 0, 0), None);
        if deny_used {
            at.push((Label::Deny, code.len()));
            emit(&mut code, insn(ALU64_MOV_K, R0, 0, 0, 0), None);
            emit(&mut code, insn(JMP_EXIT, 0, 0, 0, 0), None);
        }
        let insns = code
            .iter()
            .enumerate()
            .map(|(pc, (i, to))| match to {
                None => *i,
                Some(l) => {
                    let target = at.iter().find(|(x, _)| x == l).expect("every jump target is placed").1;
                    Insn { off: (target as i64 - pc as i64 - 1) as i16, ..*i }
                }
            })
            .collect();
        Program { insns }
    }

    /// Run the program on a request, the way the kernel would (for unit tests).
    #[cfg(test)]
    fn eval(&self, kind: i32, access: u32, major: u32, minor: u32) -> bool {
        let mut reg = [0u64; 11];
        let ctx = [((access << 16) | kind as u32), major, minor];
        let mut pc = 0usize;
        loop {
            let i = self.insns[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => reg[dst] = ctx[i.off as usize / 4] as u64,
                ALU64_MOV_X => reg[dst] = reg[src],
                ALU64_MOV_K => reg[dst] = i.imm as i64 as u64,
                ALU64_AND_K => reg[dst] &= i.imm as i64 as u64,
                ALU64_RSH_K => reg[dst] >>= i.imm,
                JMP_JA => pc = (pc as i64 + i.off as i64) as usize,
                JMP_JNE_K if reg[dst] != i.imm as i64 as u64 => pc = (pc as i64 + i.off as i64) as usize,
                JMP_JSET_K if reg[dst] & i.imm as i64 as u64 != 0 => pc = (pc as i64 + i.off as i64) as usize,
                JMP_JNE_K | JMP_JSET_K => {}
                JMP_EXIT => return reg[0] == 1,
                c => panic!("opcode {c:#x}"),
            }
        }
    }
}

/// The bpf(2) calls: load, attach, query, detach device programs.
mod bpf {
    use super::*;
    use nix::errno::Errno;

    const PROG_LOAD: i32 = 5;
    const PROG_ATTACH: i32 = 8;
    const PROG_DETACH: i32 = 9;
    const PROG_GET_FD_BY_ID: i32 = 13;
    const PROG_QUERY: i32 = 16;
    const PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const ATTACH_CGROUP_DEVICE: u32 = 6;
    const F_ALLOW_MULTI: u32 = 2;

    /// union bpf_attr, as words: zero-filled beyond the fields a command uses (the
    /// kernel requires that), larger than any member we use.
    #[repr(C, align(8))]
    struct Attr([u32; 32]);

    impl Attr {
        fn new() -> Attr {
            Attr([0; 32])
        }
        fn u64_at(&mut self, word: usize, v: u64) {
            self.0[word] = v as u32;
            self.0[word + 1] = (v >> 32) as u32;
        }
    }

    fn bpf(cmd: i32, attr: &mut Attr) -> nix::Result<i32> {
        // SAFETY: attr is a valid, writable, zero-initialised bpf_attr-sized buffer that
        // outlives the call; the pointers inside it point to live buffers of the sizes given.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut Attr, std::mem::size_of::<Attr>()) };
        Errno::result(r).map(|r| r as i32)
    }

    fn owned(fd: i32) -> OwnedFd {
        // SAFETY: the kernel just returned this new descriptor (close-on-exec: bpf fds are
        // created O_CLOEXEC); nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    /// Load; on failure also the verifier's log.
    pub fn load_device_program(insns: &[Insn]) -> std::result::Result<OwnedFd, (Errno, String)> {
        // No helpers are called, so the license does not matter to the kernel.
        let license = b"Apache-2.0\0";
        let try_load = |log: &mut Vec<u8>| {
            let mut a = Attr::new();
            a.0[0] = PROG_TYPE_CGROUP_DEVICE;
            a.0[1] = insns.len() as u32;
            a.u64_at(2, insns.as_ptr() as u64);
            a.u64_at(4, license.as_ptr() as u64);
            if !log.is_empty() {
                a.0[6] = 1; // log_level
                a.0[7] = log.len() as u32;
                a.u64_at(8, log.as_mut_ptr() as u64);
            }
            a.0[17] = ATTACH_CGROUP_DEVICE; // expected_attach_type
            bpf(PROG_LOAD, &mut a)
        };
        match try_load(&mut Vec::new()) {
            Ok(fd) => Ok(owned(fd)),
            Err(e) => {
                let mut log = vec![0u8; 64 * 1024];
                let _ = try_load(&mut log);
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                Err((e, tail.into_iter().rev().collect::<Vec<_>>().join("; ")))
            }
        }
    }

    pub fn attach_device_program(cg: &OwnedFd, prog: &OwnedFd) -> nix::Result<()> {
        let mut a = Attr::new();
        a.0[0] = cg.as_raw_fd() as u32;
        a.0[1] = prog.as_raw_fd() as u32;
        a.0[2] = ATTACH_CGROUP_DEVICE;
        a.0[3] = F_ALLOW_MULTI;
        bpf(PROG_ATTACH, &mut a).map(drop)
    }

    pub fn detach_device_program(cg: &OwnedFd, prog: &OwnedFd) -> nix::Result<()> {
        let mut a = Attr::new();
        a.0[0] = cg.as_raw_fd() as u32;
        a.0[1] = prog.as_raw_fd() as u32;
        a.0[2] = ATTACH_CGROUP_DEVICE;
        bpf(PROG_DETACH, &mut a).map(drop)
    }

    /// Ids of the device programs attached to this cgroup itself (not inherited ones).
    pub fn query_device_programs(cg: &OwnedFd) -> nix::Result<Vec<u32>> {
        let mut ids = vec![0u32; 64];
        let mut a = Attr::new();
        a.0[0] = cg.as_raw_fd() as u32;
        a.0[1] = ATTACH_CGROUP_DEVICE;
        a.u64_at(4, ids.as_mut_ptr() as u64);
        a.0[6] = ids.len() as u32; // prog_cnt: in = room, out = count
        bpf(PROG_QUERY, &mut a)?;
        ids.truncate((a.0[6] as usize).min(64));
        Ok(ids)
    }

    pub fn program_fd_by_id(id: u32) -> nix::Result<OwnedFd> {
        let mut a = Attr::new();
        a.0[0] = id;
        bpf(PROG_GET_FD_BY_ID, &mut a).map(owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<Rule> {
        let v: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
        check_all(&v).unwrap()
    }

    const C: i32 = DEV_CHAR;
    const B: i32 = DEV_BLOCK;

    #[test]
    fn checks_access_and_numbers() {
        let bad = |j: &str| {
            let v: Vec<LinuxDeviceCgroup> = serde_json::from_str(j).unwrap();
            check_all(&v).unwrap_err().to_string()
        };
        assert!(bad(r#"[{"allow":true,"type":"c","access":"rwx"}]"#).contains("devices[0]: access \"rwx\""));
        assert!(bad(r#"[{"allow":true,"type":"c","access":""}]"#).contains("at least one"));
        assert!(bad(r#"[{"allow":true,"type":"c","major":-2}]"#).contains("major -2"));
        assert!(bad(r#"[{"allow":true,"type":"p"}]"#).contains("type \"p\""));
        assert!(serde_json::from_str::<Vec<LinuxDeviceCgroup>>(r#"[{"allow":true,"type":"x"}]"#).is_err());
        let r = rules(r#"[{"allow":true,"type":"c","major":-1,"minor":3,"access":"mw"}]"#);
        assert_eq!(r[0], Rule { allow: true, kind: b'c', major: None, minor: Some(3), access: ACC_MKNOD | ACC_WRITE });
        assert_eq!(r[0].v1_line(), "c *:3 wm");
    }

    #[test]
    fn defaults_go_after_the_last_deny_all() {
        assert!(effective(&rules(r#"[{"allow":true,"access":"rwm"}]"#)).is_empty());
        assert!(effective(&[]).is_empty());
        let e = effective(&rules(r#"[{"allow":false,"access":"rwm"},{"allow":false,"type":"c","major":1,"minor":3}]"#));
        assert_eq!(e.len(), 2 + default_allowed().len());
        assert!(!e[0].allow && e[0].is_everything());
        assert_eq!(&e[1..10], &default_allowed()[..]);
        assert!(!e[10].allow);
        // No deny-all: nothing added.
        assert_eq!(effective(&rules(r#"[{"allow":false,"type":"b"}]"#)).len(), 1);
    }

    #[test]
    fn program_semantics() {
        let p = Program::generate(&effective(&rules(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":10,"minor":-1,"access":"r"},
                {"allow":true,"type":"c","major":10,"minor":7,"access":"w"},
                {"allow":true,"type":"b","major":7,"access":"m"},
                {"allow":false,"type":"c","major":1,"minor":5,"access":"w"}]"#,
        )));
        let (m, r, w) = (ACC_MKNOD, ACC_READ, ACC_WRITE);
        assert!(p.eval(C, r | w, 1, 3)); // null (default)
        assert!(p.eval(C, r, 1, 5)); // zero read
        assert!(!p.eval(C, w, 1, 5)); // zero write denied after the defaults
        assert!(!p.eval(C, r, 1, 1)); // mem
        assert!(p.eval(C, r, 10, 99)); // wildcard minor
        assert!(!p.eval(C, w, 10, 99));
        assert!(p.eval(C, r | w, 10, 7)); // r from one rule, w from another
        assert!(!p.eval(C, m, 10, 7));
        assert!(p.eval(B, m, 7, 3));
        assert!(!p.eval(B, r, 7, 3));
        assert!(!p.eval(C, m, 7, 3)); // char is not block
        assert!(p.eval(C, r | w, 136, 4)); // pts
    }

    #[test]
    fn v1_refuses_carving_out_of_a_wildcard() {
        let v1 = |j: &str| check_v1_expressible(&effective(&rules(j)).iter().flat_map(Rule::v1_rules).collect::<Vec<_>>());
        let e = v1(r#"[{"allow":false},{"allow":true,"type":"c","major":60,"access":"rw"},{"allow":false,"type":"c","major":60,"minor":2,"access":"w"}]"#).unwrap_err().to_string();
        assert!(e.contains("\"deny c 60:2 w\" after \"allow c 60:* rw\""), "{e}");
        // Exact matches and disjoint access are fine; so is anything before an a-rule.
        v1(r#"[{"allow":false},{"allow":true,"type":"c","major":60,"minor":2},{"allow":false,"type":"c","major":60,"minor":2,"access":"w"}]"#).unwrap();
        v1(r#"[{"allow":false},{"allow":true,"type":"c","major":60,"access":"r"},{"allow":false,"type":"c","major":60,"minor":2,"access":"w"}]"#).unwrap();
        v1(r#"[{"allow":true,"type":"c","major":60},{"allow":false,"type":"c","major":60,"minor":2}]"#).unwrap();
        let a: Vec<String> = rules(r#"[{"allow":true,"type":"a","major":1,"access":"r"}]"#)[0].v1_rules().iter().map(Rule::v1_line).collect();
        assert_eq!(a, ["c 1:* r", "b 1:* r"]);
    }

    #[test]
    fn program_without_deny_has_no_unreachable_code() {
        let p = Program::generate(&rules(r#"[{"allow":true,"type":"c","major":1,"minor":3}]"#));
        assert!(p.eval(C, ACC_READ, 1, 3) && p.eval(C, ACC_READ, 1, 4));
        assert!(!p.insns.iter().any(|i| i.imm == 0 && i.code == ALU64_MOV_K));
        let p = Program::generate(&rules(r#"[{"allow":false,"access":"rwm"},{"allow":true,"access":"rwm"}]"#));
        assert!(p.eval(B, ACC_ALL, 8, 0));
    }

    /// The kernel's verifier accepts what we generate, and applying twice leaves one
    /// program (needs root and a cgroup2 mount; skipped otherwise).
    #[test]
    fn kernel_loads_attaches_and_replaces() {
        let cg2 = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].into_iter().map(Path::new).find(|p| is_cgroup2(p));
        let Some(cg2) = cg2.filter(|_| nix::unistd::geteuid().is_root()) else {
            eprintln!("SKIP: needs root and a cgroup2 mount");
            return;
        };
        let dir = cg2.join(format!("berth-devices-unit-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        let rules: Vec<LinuxDeviceCgroup> = serde_json::from_str(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":10,"access":"rw"},
                {"allow":false,"type":"b","major":7,"minor":1,"access":"m"}]"#,
        )
        .unwrap();
        let r1 = apply_v2(&dir, &effective(&check_all(&rules).unwrap()));
        let r2 = apply_v2(&dir, &effective(&check_all(&rules[..2]).unwrap()));
        let cg = nix::fcntl::open(&dir, nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY, nix::sys::stat::Mode::empty()).unwrap();
        let n = bpf::query_device_programs(&cg).map(|v| v.len());
        drop(cg);
        fs::remove_dir(&dir).unwrap();
        r1.unwrap();
        r2.unwrap();
        assert_eq!(n, Ok(1));
    }
}
