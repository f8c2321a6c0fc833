//! berth-shim: placeholder crate; its issue builds it.
