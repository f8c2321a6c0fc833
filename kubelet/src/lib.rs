//! berthlet: placeholder crate; its issue builds it.
