//! berth-ipam: host-local style IPAM plugin (CNI 0.3.0–1.1.0).
fn main() {
    std::process::exit(berth_cni::skel::run(berth_cni::ipam::Ipam))
}
