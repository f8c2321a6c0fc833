//! Tiny HTTP/1.1 servers on 127.0.0.1 for unit tests of the registry client and the
//! image manager (the integration tests use a real docker-registry).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one request: the head, then as much body as its Content-Length says. None when
/// the client closes (or fails) before the request is whole.
pub async fn read_request(c: &mut TcpStream) -> Option<String> {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&req[..i]).to_lowercase();
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())).unwrap_or(0);
            if req.len() >= i + 4 + len {
                return Some(String::from_utf8(req).unwrap());
            }
        }
        match c.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
}

/// A whole response with a JSON body; the server closes the connection after it.
pub fn json_response(status: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

/// Writes `response` and closes the connection.
pub async fn answer(c: &mut TcpStream, response: &str) {
    let _ = c.write_all(response.as_bytes()).await;
    let _ = c.shutdown().await;
}

/// A server that answers `response` to the first request; returns its address and a
/// handle giving that request (head and body).
pub async fn one_shot(response: String) -> (std::net::SocketAddr, tokio::task::JoinHandle<String>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let (mut c, _) = l.accept().await.unwrap();
        let req = read_request(&mut c).await.expect("request cut short");
        answer(&mut c, &response).await;
        req
    });
    (addr, h)
}
