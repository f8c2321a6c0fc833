//! `scripts/bench cni`: ADD+DEL of one pod attachment, berth-bridge + berth-ipam
//! against the reference bridge + host-local, in ONE interleaved run (each round
//! runs every set once, the starting set rotating). The node is a fresh netns
//! (no uplink); each call is wrapped in `nsenter --net=<node netns>`, as a runtime
//! on the node would run it. Pod netns are made and removed outside the timing.
//! ADD and DEL are also reported apart: where the time goes differs (the kernel's
//! RCU wait after deleting a veth pair is ~18 ms of the reference's DEL; berth-bridge
//! returns once the pair is unregistered, see cni/README.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use berth_bench::{median, p90, ratio};

struct Set {
    label: &'static str,
    dir: PathBuf,
    bridge: &'static str,
    ipam: &'static str,
    bridge_name: String,
    subnet: String,
    /// ADD+DEL, ADD, DEL (ms) per round.
    times: Vec<f64>,
    adds: Vec<f64>,
    dels: Vec<f64>,
}

fn die(msg: String) -> ! {
    eprintln!("berth-bench-cni: {msg}");
    std::process::exit(1)
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap_or_else(|e| die(format!("ip: {e}")));
    if !o.status.success() {
        die(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()));
    }
}

fn call(node: &Path, s: &Set, data: &Path, cmd: &str, cid: &str, pod: &Path) {
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"bench-{b}","type":"{t}","bridge":"{b}","isGateway":true,"ipam":{{"type":"{i}","ranges":[[{{"subnet":"{n}"}}]],"dataDir":"{d}"}}}}"#,
        b = s.bridge_name,
        t = s.bridge,
        i = s.ipam,
        n = s.subnet,
        d = data.display()
    );
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", node.display()))
        .arg("--")
        .arg(s.dir.join(s.bridge))
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", pod)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", &s.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| die(format!("nsenter {}: {e}", s.bridge)));
    child.stdin.take().unwrap().write_all(conf.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    if !o.status.success() {
        die(format!(
            "{} {cmd} failed: {} {}",
            s.label,
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
}

fn main() {
    let mut iterations = 100usize;
    let mut warmup = 5usize;
    let mut berth_dir = PathBuf::from("target/bin");
    let mut ref_dir = PathBuf::from("/usr/lib/cni");
    let mut dir = PathBuf::from("/tmp");
    let mut prefix = format!("berth-bench-cni-{}", std::process::id());
    let mut a = std::env::args().skip(1);
    while let Some(k) = a.next() {
        let mut v = || a.next().unwrap_or_else(|| die(format!("{k} needs a value")));
        match k.as_str() {
            "--iterations" => iterations = v().parse().unwrap_or_else(|_| die("--iterations: a number".into())),
            "--warmup" => warmup = v().parse().unwrap_or_else(|_| die("--warmup: a number".into())),
            "--berth-dir" => berth_dir = v().into(),
            "--ref-dir" => ref_dir = v().into(),
            "--dir" => dir = v().into(),
            "--netns-prefix" => prefix = v(),
            _ => die(format!("unknown option {k}")),
        }
    }
    let mut sets = vec![
        Set {
            label: "reference bridge+host-local",
            dir: ref_dir,
            bridge: "bridge",
            ipam: "host-local",
            bridge_name: "br-ref".into(),
            subnet: "10.201.0.0/16".into(),
            times: vec![],
            adds: vec![],
            dels: vec![],
        },
        Set {
            label: "berth-bridge+berth-ipam",
            dir: berth_dir,
            bridge: "berth-bridge",
            ipam: "berth-ipam",
            bridge_name: "br-berth".into(),
            subnet: "10.202.0.0/16".into(),
            times: vec![],
            adds: vec![],
            dels: vec![],
        },
    ];
    for s in &sets {
        for b in [s.bridge, s.ipam] {
            if !s.dir.join(b).is_file() {
                die(format!("{} missing", s.dir.join(b).display()));
            }
        }
    }
    let node_name = format!("{prefix}-node");
    ip(&["netns", "add", &node_name]);
    let node = PathBuf::from("/run/netns").join(&node_name);
    let st = Command::new("nsenter").arg(format!("--net={}", node.display())).args(["ip", "link", "set", "lo", "up"]).status();
    if !st.map(|s| s.success()).unwrap_or(false) {
        die("cannot bring lo up in the node netns".into());
    }
    let data = dir.join("ipam");
    let n = sets.len();
    for round in 0..warmup + iterations {
        for k in 0..n {
            let i = (round + k) % n;
            let pod_name = format!("{prefix}-p{i}");
            ip(&["netns", "add", &pod_name]);
            let pod = PathBuf::from("/run/netns").join(&pod_name);
            let cid = format!("bench{round}");
            let t = Instant::now();
            call(&node, &sets[i], &data, "ADD", &cid, &pod);
            let add = t.elapsed().as_secs_f64() * 1000.0;
            call(&node, &sets[i], &data, "DEL", &cid, &pod);
            let el = t.elapsed().as_secs_f64() * 1000.0;
            ip(&["netns", "del", &pod_name]);
            if round >= warmup {
                sets[i].times.push(el);
                sets[i].adds.push(add);
                sets[i].dels.push(el - add);
            }
        }
    }
    ip(&["netns", "del", &node_name]);
    let ref_med = median(&sets[0].times);
    println!("{:<30} {:>10} {:>10} {:>10}", "ADD+DEL (ms)", "median", "p90", "vs ref");
    for s in &sets {
        let m = median(&s.times);
        println!("{:<30} {:>10.2} {:>10.2} {:>10}", s.label, m, p90(&s.times), ratio(m, Some(ref_med)));
    }
    println!("{:<30} {:>10} {:>10} {:>10} {:>10}", "per call (ms)", "ADD med", "ADD p90", "DEL med", "DEL p90");
    for s in &sets {
        println!(
            "{:<30} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
            s.label,
            median(&s.adds),
            p90(&s.adds),
            median(&s.dels),
            p90(&s.dels)
        );
    }
    let r = median(&sets[1].times) / ref_med;
    println!("ratio berth/reference: {r:.2} (target at most 0.50: {})", if r <= 0.5 { "met" } else { "NOT met" });
}
