//! The Prometheus text exposition format (version 0.0.4) of every counter.

use std::fmt::Write as _;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use super::{Loaded, Metrics, RouteStats, snapshot};

/// Picks one counter out of a route's counters.
type RouteCounter = fn(&RouteStats) -> &AtomicU64;
/// Picks one counter out of an input's counters.
type InputCounter = fn(&super::InputStats) -> &AtomicU64;

impl Metrics {
    /// Everything, with the version of the configuration `loaded`, in the Prometheus text
    /// exposition format (version 0.0.4).
    pub fn render(&self, loaded: Option<Loaded<'_>>) -> String {
        let mut out = String::with_capacity(8192);
        let routes = snapshot(&self.routes);
        let route_counters: [(&str, &str, RouteCounter); 7] = [
            (
                "switchyard_route_messages_in_total",
                "Messages that matched the route.",
                |s| &s.received,
            ),
            (
                "switchyard_route_messages_out_total",
                "Records the route handed to its outputs (passes and emits).",
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
            (
                "switchyard_route_messages_paused_total",
                "Messages that stopped their input partition to be read again: a plugin \
                 failed (on_plugin_error = \"pause\"), or an output refused a record the \
                 route has nowhere else to send (on_produce_error = \"pause\").",
                |s| &s.paused,
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
            "switchyard_plugin_circuit_open",
            "Instances of the plugin (one per input thread running the route) that are not \
             called because their last calls all failed.",
            "gauge",
        );
        for ((route, plugin), stats) in &plugins {
            let _ = writeln!(
                out,
                "switchyard_plugin_circuit_open{{route=\"{}\",plugin=\"{}\"}} {}",
                escape(route),
                escape(plugin),
                stats.circuits_open()
            );
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
            "switchyard_zmq_replies_total",
            "Answers a ROUTER input with `reply = \"ack\"` sent, by status.",
            "counter",
        );
        for (input, stats) in &inputs {
            for (status, n) in stats.replies() {
                let _ = writeln!(
                    out,
                    "switchyard_zmq_replies_total{{input=\"{}\",status=\"{status}\"}} {n}",
                    escape(input)
                );
            }
        }
        let reply_counters: [(&str, &str, InputCounter); 3] = [
            (
                "switchyard_zmq_replies_duplicate_total",
                "Requests answered with the result of an earlier one with the same id.",
                |s| &s.duplicates,
            ),
            (
                "switchyard_zmq_replies_unroutable_total",
                "Answers whose client had gone away.",
                |s| &s.unroutable,
            ),
            (
                "switchyard_zmq_peer_disconnects_total",
                "Peers of a ZeroMQ input that disconnected, those libzmq cut off for a message \
                 over `max_message_bytes` included.",
                |s| &s.disconnects,
            ),
        ];
        for (name, help, field) in reply_counters {
            header(&mut out, name, help, "counter");
            for (input, stats) in &inputs {
                let n = field(stats).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{input=\"{}\"}} {n}", escape(input));
            }
        }
        header(
            &mut out,
            "switchyard_kafka_transactions_total",
            "Transactions of an exactly-once input, by result (`aborted` ones are read again).",
            "counter",
        );
        let transactional: Vec<_> = inputs
            .iter()
            .filter(|(_, s)| s.transactions.enabled.load(Ordering::Relaxed))
            .collect();
        for (input, stats) in &transactional {
            let t = &stats.transactions;
            for (result, n) in [("committed", &t.committed), ("aborted", &t.aborted)] {
                let _ = writeln!(
                    out,
                    "switchyard_kafka_transactions_total{{input=\"{}\",result=\"{result}\"}} {}",
                    escape(input),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        header(
            &mut out,
            "switchyard_kafka_transaction_commit_seconds",
            "How long committing an exactly-once input's transaction took, offsets included.",
            "histogram",
        );
        for (input, stats) in &transactional {
            stats.transactions.commit_seconds.render(
                &mut out,
                "switchyard_kafka_transaction_commit_seconds",
                &format!("input=\"{}\"", escape(input)),
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
            "switchyard_output_records_total",
            "Records an output wrote: acknowledged by the broker (Kafka), handed to libzmq (ZeroMQ).",
            "counter",
        );
        for (output, stats) in &outputs {
            let n = stats.written.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "switchyard_output_records_total{{output=\"{}\"}} {n}",
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
    use crate::metrics::stats::{BATCH_BOUNDS, Histogram};

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
