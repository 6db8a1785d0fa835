//! `switchyard run FILE`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::router::{Router, RouterHandle, Shutdown};

/// How often the running router logs its per-route counts.
const REPORT_EVERY: Duration = Duration::from_secs(10);

pub(super) fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let Some((parsed, text)) = super::load_config(file) else {
        return Ok(ExitCode::FAILURE);
    };
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let router = Router::prepare(parsed, &text, file)?;
    let reporter = spawn_reporter(router.handle(), shutdown.clone());
    router.run(&shutdown)?;
    let _ = reporter.join();
    tracing::info!("switchyard stopped");
    Ok(ExitCode::SUCCESS)
}

/// Logs per-route counts every [`REPORT_EVERY`] until shutdown.
fn spawn_reporter(handle: RouterHandle, shutdown: Shutdown) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut waited = Duration::ZERO;
        while !shutdown.is_triggered() {
            std::thread::sleep(Duration::from_millis(100));
            waited += Duration::from_millis(100);
            if waited < REPORT_EVERY {
                continue;
            }
            waited = Duration::ZERO;
            for (route, s) in &handle.routes {
                tracing::info!(
                    route = %route,
                    received = s.received.load(Ordering::Relaxed),
                    sent = s.sent.load(Ordering::Relaxed),
                    dropped = s.dropped.load(Ordering::Relaxed),
                    rejected = s.rejected.load(Ordering::Relaxed),
                    failed = s.failed.load(Ordering::Relaxed),
                    dead_lettered = s.dead_lettered.load(Ordering::Relaxed),
                    "counts"
                );
            }
        }
    })
}
