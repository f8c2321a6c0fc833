//! berth-portmap: the CNI port-mapping plugin (chained; see `berth_cni::portmap`).

fn main() {
    std::process::exit(berth_cni::skel::run(berth_cni::portmap::PortMap));
}
