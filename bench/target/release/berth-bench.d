/work/wt/lead/bench/target/release/berth-bench: /work/wt/lead/bench/src/lib.rs /work/wt/lead/bench/src/main.rs
