/work/wt/lead/bench/target/release/deps/berth_bench_shim-2408e74189a61e2d.d: src/bin/berth-bench-shim.rs

/work/wt/lead/bench/target/release/deps/berth_bench_shim-2408e74189a61e2d: src/bin/berth-bench-shim.rs

src/bin/berth-bench-shim.rs:
