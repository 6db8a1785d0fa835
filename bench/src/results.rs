//! What a run measures and what it found: the configurations by transport, and one type
//! per kind of measurement. The runners fill these in; the report renders them. Imports
//! nothing else of the harness.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

/// The ZeroMQ configurations, in the order each round runs them.
pub const ZMQ_CONFIGS: [&str; 5] = [
    "zmq-direct",
    "zmq-proxy",
    "router-native",
    "router-wasm",
    "router-json",
];

/// The configurations whose latency is measured: the forwarder as the floor, and the router
/// with and without the sandbox.
pub const LATENCY_CONFIGS: [&str; 3] = ["zmq-proxy", "router-native", "router-wasm"];

/// The configurations on the embedded cluster, in the order each round runs them.
pub const KAFKA_CONFIGS: [&str; 2] = ["kafka-native", "router-kafka"];
/// The configurations on Apache Kafka, in the order each round runs them.
pub const APACHE_CONFIGS: [&str; 5] = [
    "kafka-native@apache",
    "router-kafka@apache",
    "router-eo@apache",
    "router-json@apache",
    "python-json@apache",
];

/// The configurations whose end-to-end latency is measured on Apache Kafka: the router
/// at-least-once and exactly-once.
pub const TRANSACTION_CONFIGS: [&str; 2] = ["router-kafka@apache", "router-eo@apache"];

/// The ZeroMQ gateway's configurations on Apache Kafka, in the order each round runs them:
/// one DEALER writing one-way, and the same acknowledged.
pub const GATEWAY_CONFIGS: [&str; 2] = ["gateway-oneway@apache", "gateway-ack@apache"];

/// Requests the gateway's pipelining client keeps in flight, and its input's
/// `max_in_flight`. By Little's law a client gets its window over the answers' wait: with
/// the producer's `linger.ms = 5` an answer takes 6 ms at the least, so the default of 1 000
/// caps one client near 100 k/s. Measured in steady state (a million requests a run): 4 000
/// in flight answered 340–375 k/s with p50 10 ms, 8 000 435–465 k/s with p50 16 ms, 16 000
/// 437 k/s with p50 34 ms: past 8 000 only the wait grows.
pub const GATEWAY_WINDOW: usize = 8000;

/// The batch sizes measured.
pub const BATCHES: [usize; 4] = [1, 16, 64, 256];

/// One throughput measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// `zmq`, `kafka` (the embedded cluster) or `apache` (Apache Kafka).
    pub transport: &'static str,
    /// The configuration's name.
    pub config: String,
    /// Payload bytes.
    pub size: usize,
    /// Which alternation.
    pub round: usize,
    /// Messages counted at the sink.
    pub messages: usize,
    /// From the first to the last message at the sink.
    pub msgs_per_s: f64,
    /// CPU time (user + system) of the middle process per message.
    pub cpu_ns_per_msg: Option<f64>,
    /// The router's mean batch size over the run, from its metrics.
    pub mean_batch: Option<f64>,
    /// CPU time per message of the client (the harness process), where it shares the
    /// machine with the router (the gateway runs).
    pub client_cpu_ns_per_msg: Option<f64>,
    /// CPU time per message of the broker (Apache Kafka), in the gateway runs.
    pub broker_cpu_ns_per_msg: Option<f64>,
}

impl Throughput {
    /// One progress line: what ran and what it measured.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} {:>5} B  round {}  {:<14} {:>12.0} msg/s",
            self.transport, self.size, self.round, self.config, self.msgs_per_s
        );
        if let Some(cpu) = self.cpu_ns_per_msg {
            let _ = write!(line, "  {cpu:>7.0} ns CPU/msg");
        }
        if let Some(batch) = self.mean_batch {
            let _ = write!(line, "  batch {batch:.1}");
        }
        line
    }
}

/// One open-loop latency measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// The configuration's name.
    pub config: String,
    /// Percent of `router-native`'s throughput.
    pub load_pct: u32,
    /// Messages per second sent.
    pub rate: f64,
    /// Which alternation.
    pub round: usize,
    /// Messages received.
    pub received: usize,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// The router's own account of its plugin stage: the p99 of the time one batch spent
    /// in it (encoding, call, result), as the upper bound of its histogram bucket, µs.
    pub stage_p99_us: Option<f64>,
}

/// How long something took, by percentile: a gateway client's answers (from sending a
/// request to reading its answer), or records through the router on Apache Kafka (from
/// their timestamp to a `read_committed` consumer reading them).
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    /// `gateway-ack` (a pipelining DEALER), `gateway-req` (a REQ client in lock-step), or
    /// one of [`TRANSACTION_CONFIGS`].
    pub config: String,
    /// Which alternation.
    pub round: usize,
    /// Requests answered, or records read.
    pub requests: usize,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
}

impl Reply {
    /// The percentiles of `latencies` (sorted in place).
    pub fn from_latencies(
        config: &str,
        round: usize,
        latencies: &mut [std::time::Duration],
    ) -> Self {
        latencies.sort_unstable();
        let at = |q: f64| {
            let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
            latencies.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
        };
        Reply {
            config: config.to_owned(),
            round,
            requests: latencies.len(),
            p50_us: at(0.50),
            p99_us: at(0.99),
        }
    }
}

/// One boundary measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Micro {
    /// `call-nop` or `process`.
    pub name: String,
    /// Messages per call (0 for the empty call).
    pub batch: usize,
    /// Which alternation.
    pub round: usize,
    /// Nanoseconds per message (per call for the empty call).
    pub ns_per_message: f64,
}

/// Facts about the machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Cores available to the process.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// When the run started (UTC).
    pub date: String,
}

impl Machine {
    /// Reads the facts off this machine.
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown CPU".to_owned());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            date: switchyard::admin::rfc3339(SystemTime::now()),
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// The machine.
    pub machine: Machine,
    /// Whether this was a `--quick` run.
    pub quick: bool,
    /// Alternations.
    pub rounds: usize,
    /// Message sizes.
    pub sizes: Vec<usize>,
    /// Every throughput measurement.
    pub throughput: Vec<Throughput>,
    /// Every latency measurement.
    pub latency: Vec<Latency>,
    /// Every gateway answer-time measurement.
    pub replies: Vec<Reply>,
    /// Every end-to-end latency measurement on Apache Kafka, at-least-once and
    /// exactly-once.
    pub transactions: Vec<Reply>,
    /// Every boundary measurement.
    pub micro: Vec<Micro>,
    /// Wall time of the whole run.
    pub took_s: f64,
}

/// The median of `values` (NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}
