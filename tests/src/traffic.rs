//! TCP and UDP traffic inside the test's network namespaces (CNI tests).
//!
//! A socket belongs to the namespace it was created in, so each socket is made on a short
//! thread that entered the namespace (`setns` changes only the calling thread) and is then
//! used from ordinary threads. Every server answers `"<name> <peer address>\n"`, so a test
//! sees both which pod answered and which source address (after SNAT) reached it.
//!
//! ```no_run
//! use berth_tests::traffic::{Server, tcp_ask};
//! # let (pod, node) = (std::path::Path::new("/run/netns/p"), std::path::Path::new("/run/netns/n"));
//! let srv = Server::start(pod, "pod1", 80, 53);            // TCP 80 and UDP 53, v4 + v6
//! let reply = tcp_ask(node, "10.99.0.1:8080".parse().unwrap()).unwrap();
//! assert!(reply.starts_with("pod1 "));
//! drop(srv);                                               // stops and joins its threads
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a client waits for a connection or an answer.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `f` on a thread that has entered the network namespace at `ns`.
pub fn in_netns<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = std::fs::File::open(ns).unwrap_or_else(|e| panic!("open netns {}: {e}", ns.display()));
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {}: {e}", ns.display()));
            f()
        })
        .join()
        .expect("netns thread panicked")
    })
}

/// A TCP and a UDP server in a namespace (both on `[::]`, so IPv4 and IPv6).
pub struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    pub fn start(ns: &Path, name: &str, tcp_port: u16, udp_port: u16) -> Server {
        let (tcp, udp) = in_netns(ns, || {
            let tcp = TcpListener::bind(("::", tcp_port)).unwrap_or_else(|e| panic!("bind tcp [::]:{tcp_port}: {e}"));
            let udp = UdpSocket::bind(("::", udp_port)).unwrap_or_else(|e| panic!("bind udp [::]:{udp_port}: {e}"));
            (tcp, udp)
        });
        let stop = Arc::new(AtomicBool::new(false));
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let (n1, s1) = (name.to_string(), stop.clone());
        let t1 = std::thread::spawn(move || {
            while !s1.load(Ordering::SeqCst) {
                match tcp.accept() {
                    Ok((mut c, peer)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = writeln!(c, "{n1} {}", peer.ip().to_canonical());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let (n2, s2) = (name.to_string(), stop.clone());
        let t2 = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s2.load(Ordering::SeqCst) {
                if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("{n2} {}\n", peer.ip().to_canonical()).as_bytes(), peer);
                }
            }
        });
        Server { stop, threads: vec![t1, t2] }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Connects from namespace `ns` to `to` over TCP and returns what the server said.
pub fn tcp_ask(ns: &Path, to: SocketAddr) -> std::io::Result<String> {
    in_netns(ns, || {
        let mut c = TcpStream::connect_timeout(&to, TIMEOUT)?;
        c.set_read_timeout(Some(TIMEOUT))?;
        let mut s = String::new();
        c.read_to_string(&mut s)?;
        Ok(s)
    })
}

/// Sends one UDP datagram from namespace `ns` to `to` and returns the answer.
pub fn udp_ask(ns: &Path, to: SocketAddr) -> std::io::Result<String> {
    in_netns(ns, || {
        let any: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap();
        let s = UdpSocket::bind(any)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.send_to(b"ping", to)?;
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}
