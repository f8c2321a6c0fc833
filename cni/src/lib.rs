//! berth-cni: Berth's CNI plugins (spec 1.1): the protocol (`spec`, `skel`, `invoke`),
//! `berth-ipam` (`ipam`), `berth-bridge` and `berth-portmap`.

pub mod bridge;
pub mod conntrack;
pub mod invoke;
pub mod ipam;
pub mod nat;
pub mod netlink;
pub mod netns;
pub mod nlwire;
pub mod portmap;
pub mod skel;
pub mod spec;
