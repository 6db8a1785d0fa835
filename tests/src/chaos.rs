//! The one checker of the fault scenarios: what reached the other end of a numbered stream
//! (lost, duplicated, reordered per key, from [`crate::stream::audit`]), how long the router
//! took to write again after each fault, and the most memory it held meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::stream::Audit;

/// Resident memory of process `pid`, in KiB; 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The peak resident memory of a process, sampled every 20 ms on a thread of its own; the
/// process watched can be changed (a router restarted) with [`RssWatch::watch`].
pub struct RssWatch {
    pid: Arc<AtomicU32>,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssWatch {
    /// Starts watching `pid`.
    pub fn start(pid: u32) -> Self {
        let (pid, peak, stop) = (
            Arc::new(AtomicU32::new(pid)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let thread = std::thread::spawn({
            let (pid, peak, stop) = (Arc::clone(&pid), Arc::clone(&peak), Arc::clone(&stop));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid.load(Ordering::Relaxed)), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        RssWatch {
            pid,
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// Watches `pid` from now on (the peak so far is kept).
    pub fn watch(&self, pid: u32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    /// The peak so far, in MiB.
    pub fn peak_mib(&self) -> f64 {
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The time from `since` until `progress` says the router writes again (checked every
/// 20 ms), or `None` past `deadline`.
pub fn time_to(
    deadline: Duration,
    since: Instant,
    mut progress: impl FnMut() -> bool,
) -> Option<Duration> {
    crate::wait_until(deadline, &mut progress).then(|| since.elapsed())
}

/// What a fault scenario comes to.
#[derive(Debug)]
pub struct Outcome {
    /// What reached the other end.
    pub audit: Audit,
    /// From each fault's end to the first record written after it.
    pub recoveries: Vec<Duration>,
    /// The router's peak resident memory, in MiB.
    pub peak_rss_mib: f64,
}

impl Outcome {
    /// One line with every figure, on stderr, labelled `label`.
    pub fn report(&self, label: &str) {
        let recoveries: Vec<String> = self
            .recoveries
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64()))
            .collect();
        eprintln!(
            "{label}: lost={} duplicates={} out-of-order={}; writing again after [{}] s; \
             peak RSS {:.0} MiB",
            self.audit.lost,
            self.audit.duplicates,
            self.audit.out_of_order,
            recoveries.join(", "),
            self.peak_rss_mib
        );
    }

    /// What every at-least-once scenario must show: nothing lost, order per key kept, and
    /// the router within `rss_mib` of memory.
    pub fn assert_at_least_once(&self, label: &str, rss_mib: f64) {
        assert_eq!(self.audit.lost, 0, "{label}: records lost");
        assert_eq!(self.audit.out_of_order, 0, "{label}: order per key broken");
        assert!(
            self.peak_rss_mib < rss_mib,
            "{label}: the router grew to {:.0} MiB",
            self.peak_rss_mib
        );
    }
}
