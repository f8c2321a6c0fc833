//! berth-cni: placeholder crate; its issue builds it.
