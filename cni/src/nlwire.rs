//! Raw netlink wire format, read by hand where the crates cost too much
//! (`netlink.rs`: link replies and notifications) or have no support
//! (`conntrack.rs`: ctnetlink): the message header, attributes, aligned reads.

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

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
    pub seq: u32,
}

impl Header {
    /// The header at the start of `b`; None when `b` cannot hold the message it announces.
    pub fn read(b: &[u8]) -> Option<Header> {
        let len = read_u32(b, 0)? as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return None;
        }
        Some(Header { len, kind: read_u16(b, 4)?, seq: read_u32(b, 8)? })
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
    }
}
