//! Counters the router keeps about itself, and their Prometheus text rendering.
//!
//! Counters are keyed by name (route, plugin, input, output), not by configuration version,
//! so they keep counting across reloads: a route that is still there after a reload goes on
//! with the same counters, as Prometheus expects of a `_total`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Upper bounds, in seconds, of the plugin call latency buckets: from 1 µs, because a batch
/// through a light plugin takes a few microseconds.
const LATENCY_BOUNDS: [f64; 17] = [
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.5,
];
/// Upper bounds of the batch size buckets.
const BATCH_BOUNDS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Picks one counter out of a route's counters.
type RouteCounter = fn(&RouteStats) -> &AtomicU64;

/// A histogram with fixed buckets, updated without locks.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, plus one for `+Inf`; not cumulative.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum of observations, in millionths of the unit (µs for seconds).
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    /// How many observations were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Per-route counters, shared by every input thread that runs the route.
#[derive(Debug)]
pub struct RouteStats {
    /// Messages that matched the route.
    pub received: AtomicU64,
    /// Records written to outputs (passes and emits).
    pub sent: AtomicU64,
    /// Messages dropped by a plugin.
    pub dropped: AtomicU64,
    /// Messages a plugin rejected.
    pub rejected: AtomicU64,
    /// Messages failed by a plugin error (timeout, trap, ...).
    pub failed: AtomicU64,
    /// Records written to the dead-letter output.
    pub dead_lettered: AtomicU64,
    /// Messages per batch that matched the route.
    pub batch_size: Histogram,
}

impl Default for RouteStats {
    fn default() -> Self {
        RouteStats {
            received: AtomicU64::default(),
            sent: AtomicU64::default(),
            dropped: AtomicU64::default(),
            rejected: AtomicU64::default(),
            failed: AtomicU64::default(),
            dead_lettered: AtomicU64::default(),
            batch_size: Histogram::new(&BATCH_BOUNDS),
        }
    }
}

impl RouteStats {
    /// Adds `n` to one of the counters.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The running configuration's version, as `switchyard_config_info` shows it.
#[derive(Debug, Clone, Copy)]
pub struct Loaded<'a> {
    /// Counts up from 1 with every applied reload.
    pub generation: u64,
    /// A hash of the configuration text and every plugin's bytes.
    pub version: &'a str,
    /// When it was swapped in.
    pub at: SystemTime,
}

/// Per-plugin counters of one route.
#[derive(Debug)]
pub struct PluginStats {
    /// Duration of each `process` call.
    pub latency: Histogram,
    /// Failed calls and messages, by error kind.
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// The plugin's own counters (`counter(name, delta)` in the SDK), by name.
    counters: Mutex<BTreeMap<String, u64>>,
}

impl Default for PluginStats {
    fn default() -> Self {
        PluginStats {
            latency: Histogram::new(&LATENCY_BOUNDS),
            errors: Mutex::default(),
            counters: Mutex::default(),
        }
    }
}

impl PluginStats {
    /// Records how long one batch took through the plugin: encoding it, the call and
    /// reading the result.
    pub fn observe_call(&self, took: Duration) {
        self.latency.observe(took.as_secs_f64());
    }

    /// Adds what the plugin added to its own counters.
    pub fn add_counters(&self, deltas: Vec<(String, u64)>) {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, delta) in deltas {
            *counters.entry(name).or_default() += delta;
        }
    }

    /// Counts `n` messages failed with error `kind`.
    pub fn error(&self, kind: &'static str, n: u64) {
        *self
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind)
            .or_default() += n;
    }
}

/// Per-input state: readiness, and for Kafka inputs, lag and rebalances.
#[derive(Debug, Default)]
pub struct InputStats {
    /// Set once the input is connected: its socket open, or its consumer in the group.
    pub ready: AtomicBool,
    /// Partition assignments received (each one follows a rebalance of the group).
    pub assignments: AtomicU64,
    /// Consumer lag by (topic, partition), from librdkafka's statistics.
    pub lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// Why a connected input cannot flow, by what found it (`topics`: a subscribed topic
    /// that does not exist; `cluster`: no broker answers); set and cleared by the input,
    /// shown by `/health/ready`.
    problems: Mutex<BTreeMap<&'static str, String>>,
}

impl InputStats {
    /// Whether the input is connected and has no problem.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.problem().is_none()
    }

    /// The input's current problems, if any, in one line.
    pub fn problem(&self) -> Option<String> {
        let problems = self.problems.lock().unwrap_or_else(PoisonError::into_inner);
        (!problems.is_empty()).then(|| problems.values().cloned().collect::<Vec<_>>().join("; "))
    }

    /// Whether the problem found by `source` is there.
    pub fn has_problem(&self, source: &'static str) -> bool {
        self.problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(source)
    }

    /// Sets or clears the problem found by `source`; returns the one it replaces.
    pub fn set_problem(&self, source: &'static str, problem: Option<String>) -> Option<String> {
        let mut problems = self.problems.lock().unwrap_or_else(PoisonError::into_inner);
        match problem {
            Some(problem) => problems.insert(source, problem),
            None => problems.remove(source),
        }
    }

    /// Replaces the lag figures.
    pub fn set_lag(&self, lag: BTreeMap<(String, i32), i64>) {
        *self.lag.lock().unwrap_or_else(PoisonError::into_inner) = lag;
    }
}

/// Per-output counters.
#[derive(Debug, Default)]
pub struct OutputStats {
    /// Records a ZeroMQ output dropped at its high-water mark (PUB).
    pub dropped: AtomicU64,
    /// Records the output could not deliver, by error (the broker's error name).
    errors: Mutex<BTreeMap<String, u64>>,
}

impl OutputStats {
    /// Counts one record the output could not deliver, with `error`.
    pub fn error(&self, error: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        match errors.get_mut(error) {
            Some(n) => *n += 1,
            None => {
                errors.insert(error.to_owned(), 1);
            }
        }
    }
}

/// Every counter of the router.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Arc<RouteStats>>>,
    plugins: Mutex<BTreeMap<(String, String), Arc<PluginStats>>>,
    inputs: Mutex<BTreeMap<String, Arc<InputStats>>>,
    outputs: Mutex<BTreeMap<String, Arc<OutputStats>>>,
    /// Reloads applied.
    pub reloads_ok: AtomicU64,
    /// Reloads refused (the running set stayed).
    pub reloads_error: AtomicU64,
    /// Whether the last load (the start, or a reload) succeeded, and when it happened.
    last_load: Mutex<Option<(bool, SystemTime)>>,
}

/// A copy of a map of counters, so rendering holds no lock while it formats.
fn snapshot<K: Clone, V>(map: &Mutex<BTreeMap<K, Arc<V>>>) -> BTreeMap<K, Arc<V>> {
    map.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

fn get_or_default<K: Ord + Clone, V: Default>(map: &Mutex<BTreeMap<K, Arc<V>>>, key: &K) -> Arc<V> {
    Arc::clone(
        map.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default(),
    )
}

/// Counters a plan will use: the registered ones where they exist, new ones otherwise, which
/// are registered only when the plan is applied ([`Metrics::register`]). A refused plan
/// leaves no series behind.
#[derive(Debug, Default)]
pub struct Staged {
    routes: Mutex<BTreeMap<String, Arc<RouteStats>>>,
    plugins: Mutex<BTreeMap<(String, String), Arc<PluginStats>>>,
    outputs: Mutex<BTreeMap<String, Arc<OutputStats>>>,
}

/// The registered value under `key`, else the staged one (made on first use).
fn staged<K: Ord + Clone, V: Default>(
    registered: &Mutex<BTreeMap<K, Arc<V>>>,
    staged: &Mutex<BTreeMap<K, Arc<V>>>,
    key: K,
) -> Arc<V> {
    if let Some(v) = registered
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Arc::clone(v);
    }
    get_or_default(staged, &key)
}

/// Adds the staged values whose keys are not registered yet.
fn adopt<K: Ord, V>(registered: &Mutex<BTreeMap<K, Arc<V>>>, staged: Mutex<BTreeMap<K, Arc<V>>>) {
    let mut registered = registered.lock().unwrap_or_else(PoisonError::into_inner);
    for (key, value) in staged.into_inner().unwrap_or_else(PoisonError::into_inner) {
        registered.entry(key).or_insert(value);
    }
}

impl Staged {
    /// The counters route `name` will use.
    pub fn route(&self, metrics: &Metrics, name: &str) -> Arc<RouteStats> {
        staged(&metrics.routes, &self.routes, name.to_owned())
    }

    /// The counters `plugin` of route `route` will use.
    pub fn plugin(&self, metrics: &Metrics, route: &str, plugin: &str) -> Arc<PluginStats> {
        staged(
            &metrics.plugins,
            &self.plugins,
            (route.to_owned(), plugin.to_owned()),
        )
    }

    /// The counters output `name` will use.
    pub fn output(&self, metrics: &Metrics, name: &str) -> Arc<OutputStats> {
        staged(&metrics.outputs, &self.outputs, name.to_owned())
    }
}

impl Metrics {
    /// Registers what a plan staged, now that it runs.
    pub fn register(&self, staged: Staged) {
        adopt(&self.routes, staged.routes);
        adopt(&self.plugins, staged.plugins);
        adopt(&self.outputs, staged.outputs);
    }

    /// The counters of route `name`.
    pub fn route(&self, name: &str) -> Arc<RouteStats> {
        get_or_default(&self.routes, &name.to_owned())
    }

    /// The counters of `plugin` in route `route`.
    pub fn plugin(&self, route: &str, plugin: &str) -> Arc<PluginStats> {
        get_or_default(&self.plugins, &(route.to_owned(), plugin.to_owned()))
    }

    /// The state of input `name`.
    pub fn input(&self, name: &str) -> Arc<InputStats> {
        get_or_default(&self.inputs, &name.to_owned())
    }

    /// Counts a reload by its result, and remembers it as the last one.
    pub fn record_reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.record_load(ok);
    }

    /// Remembers the result of a load (the start counts, but is not a reload).
    pub fn record_load(&self, ok: bool) {
        *self
            .last_load
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((ok, SystemTime::now()));
    }

    /// The counters of output `name`.
    pub fn output(&self, name: &str) -> Arc<OutputStats> {
        get_or_default(&self.outputs, &name.to_owned())
    }

    /// Everything, with the version of the configuration `loaded`, in the Prometheus text
    /// exposition format (version 0.0.4).
    pub fn render(&self, loaded: Option<Loaded<'_>>) -> String {
        let mut out = String::with_capacity(8192);
        let routes = snapshot(&self.routes);
        let route_counters: [(&str, &str, RouteCounter); 6] = [
            (
                "switchyard_route_messages_in_total",
                "Messages that matched the route.",
                |s| &s.received,
            ),
            (
                "switchyard_route_messages_out_total",
                "Records the route wrote to its outputs (passes and emits).",
                |s| &s.sent,
            ),
            (
                "switchyard_route_messages_dropped_total",
                "Messages a plugin dropped.",
                |s| &s.dropped,
            ),
            (
                "switchyard_route_messages_rejected_total",
                "Messages a plugin rejected.",
                |s| &s.rejected,
            ),
            (
                "switchyard_route_messages_failed_total",
                "Messages failed by a plugin error (timeout, trap, memory, ...).",
                |s| &s.failed,
            ),
            (
                "switchyard_route_dead_letters_total",
                "Records written to the route's dead-letter output.",
                |s| &s.dead_lettered,
            ),
        ];
        for (name, help, field) in route_counters {
            header(&mut out, name, help, "counter");
            for (route, stats) in &routes {
                let value = field(stats).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{route=\"{}\"}} {value}", escape(route));
            }
        }
        header(
            &mut out,
            "switchyard_route_batch_size",
            "Messages per batch the route processed.",
            "histogram",
        );
        for (route, stats) in &routes {
            let labels = format!("route=\"{}\"", escape(route));
            stats
                .batch_size
                .render(&mut out, "switchyard_route_batch_size", &labels);
        }

        let plugins = snapshot(&self.plugins);
        header(
            &mut out,
            "switchyard_plugin_call_duration_seconds",
            "Duration of a plugin's process call (one batch).",
            "histogram",
        );
        for ((route, plugin), stats) in &plugins {
            let labels = format!("route=\"{}\",plugin=\"{}\"", escape(route), escape(plugin));
            stats
                .latency
                .render(&mut out, "switchyard_plugin_call_duration_seconds", &labels);
        }
        header(
            &mut out,
            "switchyard_plugin_errors_total",
            "Messages failed by a plugin, by error kind.",
            "counter",
        );
        for ((route, plugin), stats) in &plugins {
            let errors = stats.errors.lock().unwrap_or_else(PoisonError::into_inner);
            for (kind, n) in errors.iter() {
                let _ = writeln!(
                    out,
                    "switchyard_plugin_errors_total{{route=\"{}\",plugin=\"{}\",kind=\"{kind}\"}} {n}",
                    escape(route),
                    escape(plugin)
                );
            }
        }

        header(
            &mut out,
            "switchyard_plugin_counter_total",
            "The plugins' own counters (`counter(name, delta)` in the SDK), by name.",
            "counter",
        );
        for ((route, plugin), stats) in &plugins {
            let counters = stats
                .counters
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (name, n) in counters.iter() {
                let _ = writeln!(
                    out,
                    "switchyard_plugin_counter_total{{route=\"{}\",plugin=\"{}\",name=\"{}\"}} {n}",
                    escape(route),
                    escape(plugin),
                    escape(name)
                );
            }
        }

        let inputs = snapshot(&self.inputs);
        header(
            &mut out,
            "switchyard_input_ready",
            "1 when the input is connected (socket open, or consumer in its group).",
            "gauge",
        );
        for (input, stats) in &inputs {
            let ready = u8::from(stats.ready.load(Ordering::Relaxed));
            let _ = writeln!(
                out,
                "switchyard_input_ready{{input=\"{}\"}} {ready}",
                escape(input)
            );
        }
        header(
            &mut out,
            "switchyard_kafka_consumer_lag",
            "Messages between a partition's high watermark and the input's position.",
            "gauge",
        );
        for (input, stats) in &inputs {
            let lag = stats.lag.lock().unwrap_or_else(PoisonError::into_inner);
            for ((topic, partition), value) in lag.iter() {
                let _ = writeln!(
                    out,
                    "switchyard_kafka_consumer_lag{{input=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {value}",
                    escape(input),
                    escape(topic)
                );
            }
        }
        header(
            &mut out,
            "switchyard_kafka_assignments_total",
            "Partition assignments a Kafka input received (one per group rebalance).",
            "counter",
        );
        for (input, stats) in &inputs {
            let n = stats.assignments.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "switchyard_kafka_assignments_total{{input=\"{}\"}} {n}",
                escape(input)
            );
        }

        header(
            &mut out,
            "switchyard_zmq_dropped_total",
            "Records a ZeroMQ output dropped at its high-water mark.",
            "counter",
        );
        let outputs = snapshot(&self.outputs);
        for (output, stats) in &outputs {
            let n = stats.dropped.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "switchyard_zmq_dropped_total{{output=\"{}\"}} {n}",
                escape(output)
            );
        }
        header(
            &mut out,
            "switchyard_output_errors_total",
            "Records an output could not deliver, by error.",
            "counter",
        );
        for (output, stats) in &outputs {
            let errors = stats.errors.lock().unwrap_or_else(PoisonError::into_inner);
            for (error, n) in errors.iter() {
                let _ = writeln!(
                    out,
                    "switchyard_output_errors_total{{output=\"{}\",error=\"{}\"}} {n}",
                    escape(output),
                    escape(error)
                );
            }
        }

        header(
            &mut out,
            "switchyard_reloads_total",
            "Reloads by result: ok (applied) or error (refused; the running set stayed).",
            "counter",
        );
        let ok = self.reloads_ok.load(Ordering::Relaxed);
        let error = self.reloads_error.load(Ordering::Relaxed);
        let _ = writeln!(out, "switchyard_reloads_total{{result=\"ok\"}} {ok}");
        let _ = writeln!(out, "switchyard_reloads_total{{result=\"error\"}} {error}");
        let last = *self
            .last_load
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((ok, at)) = last {
            header(
                &mut out,
                "switchyard_config_last_reload_successful",
                "Whether the last load of the configuration (the start or a reload) succeeded.",
                "gauge",
            );
            let _ = writeln!(
                out,
                "switchyard_config_last_reload_successful {}",
                u8::from(ok)
            );
            header(
                &mut out,
                "switchyard_config_last_reload_timestamp_seconds",
                "When the configuration was last loaded or a reload refused (Unix time).",
                "gauge",
            );
            let at = at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let _ = writeln!(out, "switchyard_config_last_reload_timestamp_seconds {at}");
        }

        if let Some(Loaded {
            generation,
            version,
            at,
        }) = loaded
        {
            let loaded_at = at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            header(
                &mut out,
                "switchyard_config_info",
                "The running configuration: its version (a hash of the file and its plugins) and generation.",
                "gauge",
            );
            let _ = writeln!(
                out,
                "switchyard_config_info{{version=\"{}\",generation=\"{generation}\"}} 1",
                escape(version)
            );
            header(
                &mut out,
                "switchyard_config_loaded_timestamp_seconds",
                "When the running configuration was swapped in (Unix time).",
                "gauge",
            );
            let _ = writeln!(
                out,
                "switchyard_config_loaded_timestamp_seconds {loaded_at}"
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let h = Histogram::new(&BATCH_BOUNDS);
        for v in [1.0, 3.0, 64.0, 300.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "b", "route=\"r\"");
        assert!(out.contains("b_bucket{route=\"r\",le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("b_bucket{route=\"r\",le=\"4\"} 2\n"), "{out}");
        assert!(
            out.contains("b_bucket{route=\"r\",le=\"256\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("b_bucket{route=\"r\",le=\"+Inf\"} 4\n"),
            "{out}"
        );
        assert!(out.contains("b_count{route=\"r\"} 4\n"), "{out}");
        assert!(out.contains("b_sum{route=\"r\"} 368\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
