//! `switchyard run FILE`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::unbounded;

use crate::control::Request;
use crate::router::{Router, RouterOptions};
use crate::shutdown::Shutdown;
use crate::state::RouterHandle;
use crate::{admin, reload};

/// How often the running router logs its per-route counts.
const REPORT_EVERY: Duration = Duration::from_secs(10);

pub(super) fn run(file: &Path, native_identity: bool) -> anyhow::Result<ExitCode> {
    let Some((parsed, text)) = super::load_config(file) else {
        return Ok(ExitCode::FAILURE);
    };
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let options = RouterOptions {
        variables: BTreeMap::new(),
        native_identity,
    };
    let mut router = Router::start(file, options, parsed, &text)?;
    let requests = serve_control(&router, file, &shutdown, true)?;
    let reporter = spawn_reporter(router.handle(), shutdown.clone());
    router.serve(&shutdown, &requests)?;
    let _ = reporter.join();
    tracing::info!("switchyard stopped");
    Ok(ExitCode::SUCCESS)
}

/// Starts what can ask `router` to reload (SIGHUP, the file watcher, the admin endpoint)
/// and returns where their requests arrive. An admin address that cannot be bound fails
/// when `admin_required`, else is logged.
pub(super) fn serve_control(
    router: &Router,
    file: &Path,
    shutdown: &Shutdown,
    admin_required: bool,
) -> anyhow::Result<crossbeam_channel::Receiver<Request>> {
    let (tx, rx) = unbounded();
    let config = router
        .config()
        .ok_or_else(|| anyhow::anyhow!("no configuration is running"))?;
    reload::on_sighup(tx.clone())?;
    reload::watch(file, &config.reload, tx.clone(), shutdown.clone())?;
    if let Some(listen) = admin::listen_address(config.admin.listen.get_ref()) {
        // Never served open by accident, whatever `admin_required` says.
        let token = config
            .admin
            .access(&listen)
            .map_err(|problem| anyhow::anyhow!("{}: {}", file.display(), problem.message))?;
        match admin::start(&listen, token, router.handle(), tx) {
            Ok(_) => {}
            Err(e) if admin_required => return Err(e),
            Err(e) => tracing::warn!("{e:#}"),
        }
    }
    Ok(rx)
}

/// Logs per-route counts every [`REPORT_EVERY`] until shutdown.
fn spawn_reporter(handle: RouterHandle, shutdown: Shutdown) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !shutdown.wait_timeout(REPORT_EVERY) {
            let Some(running) = handle.running() else {
                continue;
            };
            for route in &running.routes {
                let s = handle.metrics.route(&route.name);
                tracing::info!(
                    route = %route.name,
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
