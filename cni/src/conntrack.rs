//! Deleting conntrack entries through ctnetlink (`NETLINK_NETFILTER`, subsystem
//! `NFNL_SUBSYS_CTNETLINK`), for berth-portmap.
//!
//! Why: a UDP "connection" whose first datagram reached the node before a hostPort was
//! mapped has a conntrack entry without DNAT. NAT rules are consulted only for a
//! connection's first packet, so the client's later datagrams (same addresses and ports)
//! keep matching that entry and never reach the pod, until it times out (30 s unreplied,
//! 120 s once answered, refreshed by every datagram). The reference portmap deletes UDP
//! entries to each mapped host port after installing its rules; so does ADD here.
//!
//! How: one dump of the table (IPCTNL_MSG_CT_GET, NLM_F_DUMP, both families), filtered here
//! on protocol UDP and original destination port, then IPCTNL_MSG_CT_DELETE of each match by
//! its original tuple (the attribute copied as the kernel sent it, with its zone). An
//! entry gone meanwhile (ENOENT) is fine. The kernel's dump filter (CTA_FILTER, Linux 5.8)
//! would spare reading the rest of the table but needs one dump per port and family and
//! a newer kernel; a dump is a few µs per entry.
//! Raw messages, no crate: the layout is small and stable (linux/netfilter/nfnetlink.h,
//! nfnetlink_conntrack.h).

use netlink_sys::{Socket, SocketAddr};

use crate::nlwire::{
    align4, attrs_whole, done_errno, errno_of, read_i32, Header, DUMP_TRIES, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN, NLM_F_DUMP_INTR,
};

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("ctnetlink socket: {0}")]
    Socket(std::io::Error),
    #[error("ctnetlink {what}: {source}")]
    Kernel { what: &'static str, source: std::io::Error },
    #[error("ctnetlink {what}: malformed reply")]
    Decode { what: &'static str },
    /// The table changed during the dump (NLM_F_DUMP_INTR): dump again.
    #[error("ctnetlink {what}: dump interrupted {tries} times in a row")]
    Interrupted { what: &'static str, tries: usize },
}

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NFGENMSG_LEN: usize = 4;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const IPPROTO_UDP: u8 = 17;

/// One entry to delete: its family and the attributes that name it.
struct Entry {
    family: u8,
    /// CTA_TUPLE_ORIG and, when present, CTA_ZONE, as dumped (padded to 4 bytes).
    key: Vec<u8>,
}

/// Protocol number and original destination port of a dumped CTA_TUPLE_ORIG payload.
fn proto_and_dport(tuple: &[u8]) -> Option<(u8, u16)> {
    let (_, _, proto) = attrs_whole(tuple).find(|(k, _, _)| *k == CTA_TUPLE_PROTO)?;
    let num = attrs_whole(proto).find(|(k, _, _)| *k == CTA_PROTO_NUM).and_then(|(_, _, d)| d.first().copied())?;
    let port = attrs_whole(proto)
        .find(|(k, _, _)| *k == CTA_PROTO_DST_PORT)
        .and_then(|(_, _, d)| Some(u16::from_be_bytes(d.get(..2)?.try_into().ok()?)))?;
    Some((num, port))
}

struct Ct {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Ct {
    fn open() -> Result<Ct, ConntrackError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(ConntrackError::Socket)?;
        sock.bind_auto().map_err(ConntrackError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(ConntrackError::Socket)?;
        Ok(Ct { sock, seq: 0, buf: vec![0; 64 * 1024] })
    }

    fn send(&mut self, msg_type: u16, flags: u16, family: u8, body: &[u8], what: &'static str) -> Result<(), ConntrackError> {
        self.seq += 1;
        let len = NLMSG_HDRLEN + NFGENMSG_LEN + body.len();
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | msg_type).to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[family, 0 /* NFNETLINK_V0 */, 0, 0]);
        m.extend_from_slice(body);
        self.sock.send(&m, 0).map_err(|source| ConntrackError::Kernel { what, source })?;
        Ok(())
    }

    /// Reads the answer to the last request: each reply message's body is given to
    /// `each`; Ok at NLMSG_DONE or an ACK, with whether a dump part came flagged
    /// NLM_F_DUMP_INTR (the table changed meanwhile: dump again); Err with the kernel's
    /// errno (also one that NLMSG_DONE carries: the dump failed partway).
    fn answer(&mut self, what: &'static str, mut each: impl FnMut(u16, &[u8])) -> Result<bool, ConntrackError> {
        let mut interrupted = false;
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0).map_err(|source| ConntrackError::Kernel { what, source })?;
            let mut off = 0;
            while off + NLMSG_HDRLEN <= n {
                let h = Header::read(&self.buf[off..n]).ok_or(ConntrackError::Decode { what })?;
                let whole = &self.buf[off..off + h.len];
                let body = &whole[NLMSG_HDRLEN..];
                off += align4(h.len);
                if h.seq != self.seq {
                    continue;
                }
                interrupted |= h.flags & NLM_F_DUMP_INTR != 0;
                match h.kind {
                    NLMSG_DONE => {
                        if let Some(e) = done_errno(whole) {
                            return Err(ConntrackError::Kernel { what, source: std::io::Error::from_raw_os_error(e) });
                        }
                        return Ok(interrupted);
                    }
                    NLMSG_ERROR => {
                        let code = read_i32(body, 0).ok_or(ConntrackError::Decode { what })?;
                        if code == 0 {
                            return Ok(interrupted);
                        }
                        return Err(ConntrackError::Kernel { what, source: std::io::Error::from_raw_os_error(errno_of(code)) });
                    }
                    kind => each(kind, body),
                }
            }
        }
    }
}

/// Deletes every UDP conntrack entry (IPv4 and IPv6) of the calling thread's netns whose
/// original destination port is in `ports`. Returns how many were deleted.
pub fn delete_udp_to_ports(ports: &[u16]) -> Result<usize, ConntrackError> {
    if ports.is_empty() {
        return Ok(0);
    }
    let mut ct = Ct::open()?;
    let mut found = Vec::new();
    let mut tries = 1;
    loop {
        found.clear();
        ct.send(IPCTNL_MSG_CT_GET, NLM_F_DUMP, libc::AF_UNSPEC as u8, &[], "dump")?;
        if !dump_udp_to_ports(&mut ct, ports, &mut found)? {
            break;
        }
        if tries >= DUMP_TRIES {
            return Err(ConntrackError::Interrupted { what: "dump", tries });
        }
        tries += 1;
    }
    let mut deleted = 0;
    for e in &found {
        ct.send(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, e.family, &e.key, "delete")?;
        match ct.answer("delete", |_, _| {}) {
            Ok(_) => deleted += 1,
            // Expired or deleted by someone else meanwhile.
            Err(ConntrackError::Kernel { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Reads the answer to a dump request: the UDP entries to `ports` go to `found`; true
/// when the dump came back interrupted.
fn dump_udp_to_ports(ct: &mut Ct, ports: &[u16], found: &mut Vec<Entry>) -> Result<bool, ConntrackError> {
    ct.answer("dump", |kind, body| {
        if kind != (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW || body.len() < NFGENMSG_LEN {
            return;
        }
        let mut key = Vec::new();
        let mut hit = false;
        for (k, whole, data) in attrs_whole(&body[NFGENMSG_LEN..]) {
            match k {
                CTA_TUPLE_ORIG => {
                    hit = proto_and_dport(data).is_some_and(|(p, port)| p == IPPROTO_UDP && ports.contains(&port));
                    key.extend_from_slice(whole);
                    key.resize(align4(key.len()), 0);
                }
                CTA_ZONE => {
                    key.extend_from_slice(whole);
                    key.resize(align4(key.len()), 0);
                }
                _ => {}
            }
        }
        if hit {
            found.push(Entry { family: body[0], key });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn parses_the_tuple_of_a_dumped_entry() {
        // CTA_TUPLE_ORIG { CTA_TUPLE_IP {..}, CTA_TUPLE_PROTO { NUM 17, SRC 40000, DST 5355 } }
        let mut proto = vec![];
        proto.extend_from_slice(&[5, 0, 1, 0, 17, 0, 0, 0]);
        proto.extend_from_slice(&[6, 0, 2, 0, 0x9c, 0x40, 0, 0]);
        proto.extend_from_slice(&[6, 0, 3, 0, 0x14, 0xeb, 0, 0]);
        let mut tuple = vec![];
        tuple.extend_from_slice(&[12, 0, 0x01, 0x80, 8, 0, 1, 0, 10, 0, 0, 1]); // nested IP, one v4 src
        tuple.extend_from_slice(&((4 + proto.len()) as u16).to_ne_bytes());
        tuple.extend_from_slice(&[2, 0x80]);
        tuple.extend_from_slice(&proto);
        assert_eq!(proto_and_dport(&tuple), Some((17, 5355)));
        assert_eq!(proto_and_dport(&tuple[..12]), None, "no proto attribute");
    }

    /// In a fresh netns (never the host's): a UDP datagram to a closed port on 127.0.0.1
    /// leaves an entry once conntrack is on, and it goes.
    #[test]
    fn deletes_udp_entries_to_a_port() {
        if !nix::unistd::geteuid().is_root() || !std::path::Path::new("/usr/sbin/nft").exists() {
            println!("SKIP: needs root and nft");
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let sh = |s: &str| assert!(std::process::Command::new("sh").args(["-c", s]).status().unwrap().success(), "{s}");
            // lo up, and a rule that needs conntrack, so this netns tracks connections.
            sh("ip link set lo up && nft 'add table inet ct-test; add chain inet ct-test out { type filter hook output priority 0; }; add rule inet ct-test out ct state new accept'");
            let count = |port: u16| {
                std::fs::read_to_string("/proc/thread-self/net/nf_conntrack")
                    .unwrap()
                    .lines()
                    .filter(|l| l.contains(" udp ") && l.contains(&format!("dport={port} ")))
                    .count()
            };
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(b"x", "127.0.0.1:5399").unwrap();
            s.send_to(b"x", "127.0.0.1:5398").unwrap();
            assert_eq!((count(5399), count(5398)), (1, 1));
            assert_eq!(delete_udp_to_ports(&[5399, 7]).unwrap(), 1);
            assert_eq!((count(5399), count(5398)), (0, 1), "only the port asked for");
            assert_eq!(delete_udp_to_ports(&[5399]).unwrap(), 0);
        })
        .join()
        .unwrap();
    }
}
