//! What every runner shares: the run's settings, and probes of the processes it measures
//! (free ports, CPU time, the router's own metrics) and of the payloads it sends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// What one run needs to know.
pub struct Setup {
    /// The `switchyard` binary.
    pub switchyard: PathBuf,
    /// This harness, for its child roles.
    pub harness: PathBuf,
    /// The source tree.
    pub root: PathBuf,
    /// Alternations.
    pub rounds: usize,
    /// Count multiplier.
    pub scale: f64,
    /// Message sizes.
    pub sizes: Vec<usize>,
    /// Scratch directory for configurations and logs.
    pub scratch: PathBuf,
}

impl Setup {
    /// `count` scaled, at least 20.
    pub fn count(&self, count: usize) -> usize {
        ((count as f64 * self.scale) as usize).max(20)
    }

    /// A plugin's built component.
    pub fn plugin(&self, name: &str) -> PathBuf {
        self.root
            .join("plugins/target/wasm32-wasip2/release")
            .join(format!("{name}.wasm"))
    }
}

pub use switchyard_tests::free_port;
pub use switchyard_tests::procs::Proc;

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name and state.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// A router's mean batch size so far: `switchyard_route_batch_size` sum over count, read
/// from its admin endpoint on `port`.
pub fn mean_batch(port: u16) -> Option<f64> {
    let text = metrics(port)?;
    let value = |series: &str| switchyard_tests::admin::sample(&text, series);
    let sum = value("switchyard_route_batch_size_sum{route=\"bench\"}")?;
    let count = value("switchyard_route_batch_size_count{route=\"bench\"}")?;
    (count > 0.0).then(|| sum / count)
}

/// The router's `/metrics` text, from its admin endpoint on `port`.
fn metrics(port: u16) -> Option<String> {
    let (status, text) = switchyard_tests::admin::get(&format!("127.0.0.1:{port}"), "/metrics");
    (status == 200).then_some(text)
}

/// The 99th percentile of the time route `bench` spent in its plugin per batch (encoding,
/// call, result), from the router's histogram: the upper bound of the first bucket that
/// holds 99 % of the batches, in µs. `None` if the router ran no plugin.
pub fn stage_p99_us(port: u16) -> Option<f64> {
    let text = metrics(port)?;
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| {
            l.starts_with("switchyard_plugin_call_duration_seconds_bucket{")
                && l.contains("route=\"bench\"")
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.trim().parse().ok()?;
            Some((bound, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= 0.99 * total)
        .map(|(bound, _)| bound * 1e6)
}

/// A payload of exactly `size` bytes that `json_filter` (amount >= 100) passes, varied by
/// `seed` so no two in a pool are equal.
pub fn json_payload(size: usize, seed: usize) -> Vec<u8> {
    let head = format!("{{\"amount\":{},\"p\":\"", 100 + seed % 900);
    let mut p = head.into_bytes();
    if p.len() + 2 > size {
        let mut short = format!("{{\"amount\":{}}}", 100 + seed % 900).into_bytes();
        short.resize(size.max(short.len()), b' ');
        short.truncate(size.max(14));
        return short;
    }
    let pad = size - p.len() - 2;
    p.extend((0..pad).map(|i| b'a' + ((i + seed) % 26) as u8));
    p.extend_from_slice(b"\"}");
    p
}

/// Writes `config` to `file` and starts `switchyard run` on it (with `extra` arguments),
/// logging at WARN to `file` with the extension `log`.
pub fn run_router(
    setup: &Setup,
    file: &Path,
    config: &str,
    extra: &[&str],
) -> anyhow::Result<Child> {
    std::fs::write(file, config)?;
    let log = std::fs::File::create(file.with_extension("log"))?;
    Command::new(&setup.switchyard)
        .arg("run")
        .arg(file)
        .args(extra)
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting switchyard")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_asked_size_and_are_json() {
        for size in [16, 100, 1024, 16384] {
            for seed in [0, 7, 899] {
                let p = json_payload(size, seed);
                assert_eq!(p.len(), size);
                let v: serde_json::Value = serde_json::from_slice(&p).expect("json");
                assert!(v["amount"].as_u64().is_some_and(|a| a >= 100));
            }
        }
    }
}
