//! Images: references, registry pulls, the content store.

pub mod reference;
