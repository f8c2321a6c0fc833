//! Container lifecycle against the runc CLI contract: create / start /
//! state / kill / delete / run / list / ps.

use berth_tests::*;

#[test]
fn run_foreground_returns_exit_code() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("echo out; echo err >&2; exit 3");
    let o = rt.run(&b);
    assert_eq!(o.code(), 3, "{o}");
    assert_eq!(o.stdout, "out\n", "{o}");
    assert!(o.stderr.contains("err"), "{o}");
    assert!(!rt.state_dir(b.id()).exists(), "run removes the container after it exits");
    rt.assert_no_trace(&b);
}
