//! berthlet: Berth's node daemon (CRI server, images, pods).

pub mod images;
