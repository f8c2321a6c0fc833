//! Raw netlink wire format, read by hand where the crates cost too much
//! (`netlink.rs`: link replies and notifications) or have no support
//! (`conntrack.rs`: ctnetlink): the message header, attributes, aligned reads.

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
/// Header flag of a dump part: the set changed while the dump ran (the result may be
/// inconsistent: an object missed or seen twice); dump again.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// How many times a dump that came back interrupted is retried.
pub const DUMP_TRIES: usize = 5;

/// The errno of a kernel error code (a negated errno). Never panics: `-i32::MIN`
/// overflows, and a code that is not a negative errno is a protocol error.
pub fn errno_of(code: i32) -> i32 {
    match code.checked_neg() {
        Some(e) if e > 0 => e,
        _ => libc::EPROTO,
    }
}

/// The errno an NLMSG_DONE message (`msg`, header included) carries: a dump that failed
/// partway ends with DONE and a negative error code instead of 0. None: the dump is whole
/// (also when the kernel sent no code, as old ones do).
pub fn done_errno(msg: &[u8]) -> Option<i32> {
    match read_i32(msg, NLMSG_HDRLEN) {
        Some(0) | None => None,
        Some(code) => Some(errno_of(code)),
    }
}

/// Netlink messages and attributes are padded to 4 bytes.
pub fn align4(n: usize) -> usize {
    (n + 3) & !3
}

pub fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub fn read_i32(b: &[u8], at: usize) -> Option<i32> {
    read_u32(b, at).map(|v| v as i32)
}

/// A netlink message header.
pub struct Header {
    pub len: usize,
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
}

impl Header {
    /// The header at the start of `b`; None when `b` cannot hold the message it announces.
    pub fn read(b: &[u8]) -> Option<Header> {
        let len = read_u32(b, 0)? as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return None;
        }
        Some(Header { len, kind: read_u16(b, 4)?, flags: read_u16(b, 6)?, seq: read_u32(b, 8)? })
    }
}

/// The attributes in `b` as (type without the NESTED/BYTEORDER bits, whole
/// attribute with its header, payload); stops at the first malformed one.
pub fn attrs_whole(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    std::iter::from_fn(move || {
        let len = read_u16(b, 0)? as usize;
        let kind = read_u16(b, 2)? & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let (whole, data) = (&b[..len], &b[4..len]);
        b = &b[align4(len).min(b.len())..];
        Some((kind, whole, data))
    })
}

/// The attributes in `b` as (type, payload).
pub fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    attrs_whole(b).map(|(k, _, d)| (k, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_and_header() {
        // Two attributes: type 1 (3 bytes, padded) and type 0x8002 (nested flag) with 4 bytes.
        let b = [7, 0, 1, 0, b'a', b'b', b'c', 0, 8, 0, 2, 0x80, 1, 2, 3, 4];
        let got: Vec<_> = attrs(&b).collect();
        assert_eq!(got, vec![(1, &b"abc"[..]), (2, &[1u8, 2, 3, 4][..])]);
        assert_eq!(attrs_whole(&b).next().unwrap().1, &b[..7]);
        // A length past the end stops the walk.
        assert_eq!(attrs(&[9, 0, 1, 0, 0]).count(), 0);
        let mut h = vec![0u8; 16];
        h[0] = 16;
        h[4] = NLMSG_DONE as u8;
        h[8] = 7;
        let hd = Header::read(&h).unwrap();
        assert_eq!((hd.len, hd.kind, hd.seq), (16, NLMSG_DONE, 7));
        assert!(Header::read(&h[..15]).is_none());
        h[6] = NLM_F_DUMP_INTR as u8;
        assert_eq!(Header::read(&h).unwrap().flags & NLM_F_DUMP_INTR, NLM_F_DUMP_INTR);
    }

    #[test]
    fn done_and_error_codes() {
        let mut done = vec![0u8; 20];
        done[0] = 20;
        done[4] = NLMSG_DONE as u8;
        assert_eq!(done_errno(&done), None, "code 0: the dump is whole");
        assert_eq!(done_errno(&done[..16]), None, "no code (old kernels)");
        done[16..20].copy_from_slice(&(-libc::EBUSY).to_ne_bytes());
        assert_eq!(done_errno(&done), Some(libc::EBUSY), "a dump that failed partway");
        assert_eq!(errno_of(-libc::ENODEV), libc::ENODEV);
        assert_eq!(errno_of(i32::MIN), libc::EPROTO, "no overflow");
        assert_eq!(errno_of(5), libc::EPROTO);
    }
}
