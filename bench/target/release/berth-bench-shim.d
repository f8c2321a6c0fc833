/work/wt/lead/bench/target/release/berth-bench-shim: /work/wt/lead/bench/src/bin/berth-bench-shim.rs /work/wt/lead/bench/src/lib.rs
