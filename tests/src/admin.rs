//! A minimal HTTP/1.1 client for the router's admin endpoint, and Prometheus text lookup.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `METHOD PATH` to `address` and returns the status code and body; status 0 when
/// the endpoint cannot be reached.
pub fn request(address: &str, method: &str, path: &str) -> (u16, String) {
    request_with(address, method, path, "")
}

/// [`request`] with one more header line (`Name: value`), or none when empty.
pub fn request_with(address: &str, method: &str, path: &str, header: &str) -> (u16, String) {
    let header = if header.is_empty() {
        String::new()
    } else {
        format!("{header}\r\n")
    };
    let Ok(mut stream) = TcpStream::connect(address) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{header}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    if stream.read_to_string(&mut response).is_err() {
        return (0, String::new());
    }
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `GET path`.
pub fn get(address: &str, path: &str) -> (u16, String) {
    request(address, "GET", path)
}

/// `POST path` with an empty body.
pub fn post(address: &str, path: &str) -> (u16, String) {
    request(address, "POST", path)
}

/// The value of the sample `series` (name with its labels exactly as rendered, such as
/// `switchyard_reloads_total{result="ok"}`) in Prometheus text.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// The value of `series` from a fresh scrape of `address`; 0 when absent.
pub fn metric(address: &str, series: &str) -> f64 {
    sample(&get(address, "/metrics").1, series).unwrap_or(0.0)
}
