//! berth-bridge: the CNI bridge plugin (logic in `berth_cni::bridge`).

fn main() {
    std::process::exit(berth_cni::skel::run(berth_cni::bridge::Bridge));
}
