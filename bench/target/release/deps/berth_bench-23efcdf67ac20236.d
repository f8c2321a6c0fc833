/work/wt/lead/bench/target/release/deps/berth_bench-23efcdf67ac20236.d: src/main.rs

/work/wt/lead/bench/target/release/deps/berth_bench-23efcdf67ac20236: src/main.rs

src/main.rs:
