/work/wt/lead/bench/target/release/libberth_bench.rlib: /work/wt/lead/bench/src/lib.rs
