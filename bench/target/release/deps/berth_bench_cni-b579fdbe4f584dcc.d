/work/wt/lead/bench/target/release/deps/berth_bench_cni-b579fdbe4f584dcc.d: src/bin/berth-bench-cni.rs

/work/wt/lead/bench/target/release/deps/berth_bench_cni-b579fdbe4f584dcc: src/bin/berth-bench-cni.rs

src/bin/berth-bench-cni.rs:
