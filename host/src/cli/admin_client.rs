//! How `switchyard top` reaches a router's admin endpoint: its address and token, and a
//! small HTTP/1.1 client.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;

/// How long one request to the admin endpoint may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET path` on `admin` over HTTP/1.1, with `token` if given; the status and the body.
pub(super) fn get(admin: &str, token: Option<&str>, path: &str) -> anyhow::Result<(u16, String)> {
    let address = admin
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {admin}"))?
        .next()
        .with_context(|| format!("{admin} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, REQUEST_TIMEOUT)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\n{authorization}Connection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("the admin endpoint sent no HTTP response")?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the admin endpoint sent no HTTP status")?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

/// The body of a chunked transfer encoding.
pub(super) fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Environment variable holding the admin token for `switchyard top`.
pub const TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";

/// The admin token to send: `SWITCHYARD_ADMIN_TOKEN`, else the `[admin]` token of
/// `--config`, else none.
pub(super) fn admin_token(config: Option<&std::path::Path>) -> Option<String> {
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        return Some(token);
    }
    let (config, _) = crate::config::load(config?).ok()?;
    let listen = config.admin.listen.get_ref().clone();
    config.admin.access(&listen).ok().flatten()
}

/// The admin address to read: `--admin`, else `[admin] listen` of `--config`, else
/// `SWITCHYARD_ADMIN_LISTEN`, else the default. A wildcard listen address is read on
/// loopback.
pub(super) fn admin_address(
    admin: Option<String>,
    config: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    let listen = match (admin, config) {
        (Some(admin), _) => admin,
        (None, Some(file)) => {
            let (config, _) = crate::config::load(file).map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::admin::listen_address(config.admin.listen.get_ref()).with_context(|| {
                format!(
                    "{}: the admin endpoint is off (`[admin] listen = \"\"`)",
                    file.display()
                )
            })?
        }
        (None, None) => crate::admin::listen_address("127.0.0.1:9464")
            .unwrap_or_else(|| "127.0.0.1:9464".into()),
    };
    Ok(if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen
    })
}
