//! `berth-shim`: parses the command line and hands over to the library.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match berth_shim::config::Config::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            // The caller reads the same shape as a runtime failure.
            println!("error: berth-shim: {e}");
            std::process::exit(2);
        }
    };
    std::process::exit(berth_shim::shim::launch(cfg));
}
