/work/wt/lead/bench/target/release/berth-bench-cni: /work/wt/lead/bench/src/bin/berth-bench-cni.rs /work/wt/lead/bench/src/lib.rs
