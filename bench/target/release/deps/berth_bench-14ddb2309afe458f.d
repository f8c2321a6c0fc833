/work/wt/lead/bench/target/release/deps/berth_bench-14ddb2309afe458f.d: src/lib.rs

/work/wt/lead/bench/target/release/deps/libberth_bench-14ddb2309afe458f.rlib: src/lib.rs

/work/wt/lead/bench/target/release/deps/libberth_bench-14ddb2309afe458f.rmeta: src/lib.rs

src/lib.rs:
