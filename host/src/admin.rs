//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/health/live`, `/health/ready`,
//! `/routes` (JSON) and `POST /reload`. It runs on a thread of its own with a
//! single-threaded Tokio runtime; nothing on the message path waits for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum::Router as Http;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use crossbeam_channel::Sender;
use serde_json::json;

use crate::control::Request;
use crate::state::RouterHandle;

/// Environment variable that overrides `[admin] listen`.
pub const LISTEN_ENV: &str = "SWITCHYARD_ADMIN_LISTEN";

#[derive(Clone)]
struct AdminState {
    router: RouterHandle,
    requests: Sender<Request>,
}

/// The address to listen on: `SWITCHYARD_ADMIN_LISTEN` if set, else `configured`; `None`
/// when it is empty (the endpoint is off).
pub fn listen_address(configured: &str) -> Option<String> {
    let address = std::env::var(LISTEN_ENV).unwrap_or_else(|_| configured.to_owned());
    let address = address.trim();
    (!address.is_empty()).then(|| address.to_owned())
}

/// Binds `listen` and serves on a thread of its own; returns the bound address.
/// With a `token`, every endpoint but `/health/*` requires `Authorization: Bearer TOKEN`.
pub fn start(
    listen: &str,
    token: Option<String>,
    router: RouterHandle,
    requests: Sender<Request>,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(listen).with_context(|| {
        format!("admin endpoint: cannot listen on {listen} (set [admin] listen or {LISTEN_ENV})")
    })?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let mut guarded = Http::new()
        .route("/metrics", get(metrics))
        .route("/routes", get(routes))
        .route("/reload", post(reload));
    if let Some(token) = token {
        guarded = guarded.route_layer(axum::middleware::from_fn_with_state(
            Arc::<str>::from(token),
            require_token,
        ));
    }
    let app = Http::new()
        .route("/health/live", get(|| async { "live\n" }))
        .route("/health/ready", get(ready))
        .merge(guarded)
        .with_state(AdminState { router, requests });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        // Timers too: the server backs off with a sleep when `accept` fails (out of file
        // descriptors, for example) instead of ending.
        .enable_time()
        .build()
        .context("admin endpoint: cannot start its runtime")?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runtime.block_on(serve(listener, app))
            }));
            let why = match served {
                Ok(Err(e)) => format!("{e:#}"),
                Ok(Ok(())) => "it ended".to_owned(),
                Err(_) => "it panicked".to_owned(),
            };
            tracing::error!(
                "the admin endpoint stopped ({why}): /metrics, /health and /reload no longer \
                 answer"
            );
        })?;
    tracing::info!(address = %address, "admin endpoint listening");
    Ok(address)
}

/// The most connections served at once; one more is closed as soon as it is accepted.
const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send a request's headers, the first one or the next one
/// on a kept-alive connection, before its connection is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection is served before it is closed (after the request it is
/// answering, if any).
const CONNECTION_LIFE: Duration = Duration::from_secs(60);
/// How long the request under way may take once a connection is to be closed.
const LAST_REQUEST: Duration = Duration::from_secs(30);

/// Accepts connections and serves each on a task of its own, at most [`MAX_CONNECTIONS`]
/// at a time, each within the timeouts above: idle or slow clients cannot hold the endpoint,
/// and a failing `accept` (out of file descriptors) backs off instead of ending it.
async fn serve(listener: std::net::TcpListener, app: Http) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let listener = tokio::net::TcpListener::from_std(listener)?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refusing = Notice::default();
    let mut failing = Notice::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                failing.say(|n| tracing::warn!("admin endpoint: accept failed ({e}), {n} times"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refusing.say(|n| {
                tracing::warn!(
                    "admin endpoint: {MAX_CONNECTIONS} connections open; {n} more closed at once"
                )
            });
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = tokio::time::sleep(CONNECTION_LIFE) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(LAST_REQUEST, connection).await;
                }
            }
            drop(slot);
        });
    }
}

/// A condition said at most once per [`NOTICE_EVERY`], with how often it happened.
#[derive(Default)]
struct Notice {
    last: Option<std::time::Instant>,
    count: u64,
}

const NOTICE_EVERY: Duration = Duration::from_secs(10);

impl Notice {
    fn say(&mut self, say: impl FnOnce(u64)) {
        self.count += 1;
        if self.last.is_none_or(|last| last.elapsed() >= NOTICE_EVERY) {
            say(self.count);
            self.count = 0;
            self.last = Some(std::time::Instant::now());
        }
    }
}

/// Lets a request through only with `Authorization: Bearer TOKEN`.
async fn require_token(
    State(token): State<Arc<str>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let sent = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same(sent.trim().as_bytes(), token.as_bytes()) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "this endpoint needs the admin token: Authorization: Bearer TOKEN\n",
    )
        .into_response()
}

/// Compares two secrets in a time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state
            .router
            .metrics
            .render(state.router.running().as_deref().map(|r| r.loaded())),
    )
        .into_response()
}

async fn ready(State(state): State<AdminState>) -> Response {
    let Some(running) = state.router.running() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no configuration running\n",
        )
            .into_response();
    };
    let waiting: Vec<String> = running
        .inputs
        .iter()
        .filter(|(_, stats)| !stats.is_ready())
        .map(|(name, stats)| match stats.problem() {
            Some(problem) => format!("input `{name}`: {problem}"),
            None => format!("input `{name}`: not connected yet"),
        })
        .collect();
    if waiting.is_empty() {
        "ready\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", waiting.join("\n")),
        )
            .into_response()
    }
}

async fn routes(State(state): State<AdminState>) -> Response {
    let Some(running) = state.router.running() else {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"routes": []}));
    };
    // Paths as the configuration's directory sees them: a client learns nothing of the
    // machine's layout.
    let dir = running.path.parent().unwrap_or(std::path::Path::new(""));
    let routes: Vec<_> = running
        .routes
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "from": r.from,
                "to": r.to,
                "plugins": r.plugins.iter().map(|p| json!({
                    "name": p.name,
                    "path": relative(&p.path, dir),
                    "sha256": p.hash,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({
        "config": relative(&running.path, dir),
        "version": running.version,
        "generation": running.generation,
        "loaded_at": rfc3339(running.loaded_at),
        "routes": routes,
    });
    json_response(StatusCode::OK, &body)
}

async fn reload(State(state): State<AdminState>) -> Response {
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let request = Request {
        trigger: "http",
        reply: Some(reply),
    };
    if state.requests.send(request).is_err() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"result": "error", "error": "the router is stopping"}),
        );
    }
    match outcome.await {
        Ok(Ok(report)) => json_response(StatusCode::OK, &report),
        Ok(Err(error)) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"result": "error", "kind": error.kind(), "error": error.message()}),
        ),
        Err(_) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"result": "error", "error": "the router stopped before reloading"}),
        ),
    }
}

/// `path` relative to `dir` (with `..` where it lies elsewhere).
fn relative(path: &std::path::Path, dir: &std::path::Path) -> String {
    use std::path::Component;
    let (path, dir) = (
        std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
        std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned()),
    );
    let (mut ours, mut base) = (path.components().peekable(), dir.components().peekable());
    while let (Some(a), Some(b)) = (ours.peek(), base.peek())
        && a == b
    {
        ours.next();
        base.next();
    }
    let mut out = std::path::PathBuf::new();
    for c in base {
        if matches!(c, Component::Normal(_)) {
            out.push("..");
        }
    }
    out.extend(ours);
    out.display().to_string()
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let mut text = serde_json::to_string_pretty(body).unwrap_or_default();
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// A time as RFC 3339 in UTC, to the millisecond: `2026-11-24T17:22:42.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shown_relative_to_the_configuration() {
        let dir = std::path::Path::new("/etc/switchyard");
        let at = |p: &str| relative(std::path::Path::new(p), dir);
        assert_eq!(at("/etc/switchyard/router.toml"), "router.toml");
        assert_eq!(at("/etc/switchyard/plugins/a.wasm"), "plugins/a.wasm");
        assert_eq!(at("/opt/plugins/a.wasm"), "../../opt/plugins/a.wasm");
    }

    #[test]
    fn formats_utc_timestamps() {
        use std::time::UNIX_EPOCH;
        let t = UNIX_EPOCH + Duration::from_millis(1_795_541_362_123);
        assert_eq!(rfc3339(t), "2026-11-24T17:29:22.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
