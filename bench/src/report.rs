//! Results: the markdown report (every ratio next to its target), the raw JSON and the
//! chart.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde_json::{Value, json};

use crate::results::{
    APACHE_CONFIGS, BATCHES, GATEWAY_CONFIGS, GATEWAY_WINDOW, KAFKA_CONFIGS, LATENCY_CONFIGS,
    Latency, Results, Throughput, ZMQ_CONFIGS, median,
};

fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        })
}

/// `config`'s msg/s at `size`, one per round in round order.
fn per_round(r: &Results, config: &str, size: usize) -> Vec<f64> {
    let mut v: Vec<(usize, f64)> = r
        .throughput
        .iter()
        .filter(|t| t.config == config && t.size == size)
        .map(|t| (t.round, t.msgs_per_s))
        .collect();
    v.sort_by_key(|(round, _)| *round);
    v.into_iter().map(|(_, x)| x).collect()
}

/// The median over rounds of one optional figure of `config` at `size`.
fn median_of(r: &Results, config: &str, size: usize, pick: fn(&Throughput) -> Option<f64>) -> f64 {
    let values: Vec<f64> = r
        .throughput
        .iter()
        .filter(|t| t.config == config && t.size == size)
        .filter_map(pick)
        .collect();
    median(&values)
}

/// Per-round ratios of `a` to `b` at `size`: each pair was measured side by side.
fn ratios(r: &Results, a: &str, b: &str, size: usize) -> Vec<f64> {
    per_round(r, a, size)
        .iter()
        .zip(per_round(r, b, size))
        .map(|(x, y)| x / y)
        .collect()
}

/// Per-round ratios of two configurations at a size.
type Measure = fn(&Results, &str, &str, usize) -> Vec<f64>;

/// Per-round ratios of `a`'s CPU per message to `b`'s at `size`.
fn cpu_ratios(r: &Results, a: &str, b: &str, size: usize) -> Vec<f64> {
    let cpu = |config: &str| -> Vec<f64> {
        let mut v: Vec<(usize, f64)> = r
            .throughput
            .iter()
            .filter(|t| t.config == config && t.size == size)
            .map(|t| (t.round, t.cpu_ns_per_msg.unwrap_or(f64::NAN)))
            .collect();
        v.sort_by_key(|(round, _)| *round);
        v.into_iter().map(|(_, x)| x).collect()
    };
    cpu(a).iter().zip(cpu(b)).map(|(x, y)| x / y).collect()
}

fn micro_values(r: &Results, name: &str, batch: usize) -> Vec<f64> {
    r.micro
        .iter()
        .filter(|m| m.name == name && m.batch == batch)
        .map(|m| m.ns_per_message)
        .collect()
}

fn latency_values(r: &Results, config: &str, load: u32, pick: fn(&Latency) -> f64) -> Vec<f64> {
    r.latency
        .iter()
        .filter(|l| l.config == config && l.load_pct == load)
        .map(pick)
        .collect()
}

/// A ratio against its target.
struct Ratio {
    what: String,
    size: String,
    values: Vec<f64>,
    target: &'static str,
    met: Option<bool>,
    unit: &'static str,
}

fn ratio_rows(r: &Results) -> Vec<Ratio> {
    let mut rows = Vec::new();
    let sizes: Vec<usize> = {
        // The headline size first.
        let mut s = r.sizes.clone();
        s.sort_by_key(|&x| (x != 100, x));
        s
    };
    let pairs: [(&str, &str, &str, f64, &str); 8] = [
        (
            "router-wasm",
            "router-native",
            "router-wasm / router-native (ZeroMQ)",
            0.95,
            "≥ 0.95",
        ),
        (
            "router-wasm",
            "zmq-proxy",
            "router-wasm / zmq-proxy",
            0.90,
            "≥ 0.90",
        ),
        (
            "router-kafka",
            "kafka-native",
            "router-kafka / kafka-native on the embedded cluster",
            0.90,
            "≥ 0.90",
        ),
        (
            "router-json",
            "router-native",
            "router-json / router-native (ZeroMQ, a real JSON filter)",
            0.0,
            "—",
        ),
        (
            "router-kafka@apache",
            "kafka-native@apache",
            "router-kafka / kafka-native on Apache Kafka",
            0.90,
            "≥ 0.90",
        ),
        (
            "router-eo@apache",
            "router-kafka@apache",
            "exactly-once / at-least-once on Apache Kafka (`transaction_ms = 100`)",
            0.8,
            "≥ 0.80",
        ),
        (
            "router-json@apache",
            "python-json@apache",
            "router-json / Python confluent-kafka JSON filter loop, on Apache Kafka",
            3.0,
            "≥ 3",
        ),
        (
            "gateway-ack@apache",
            "gateway-oneway@apache",
            "ZeroMQ gateway, one pipelining DEALER: acknowledged / one-way, on Apache Kafka",
            0.8,
            "≥ 0.80",
        ),
    ];
    let cpu_pairs = [
        (
            "router-wasm",
            "zmq-proxy",
            "router-wasm / zmq-proxy, CPU per message",
            1.25,
            "≤ 1.25",
        ),
        (
            "router-kafka@apache",
            "kafka-native@apache",
            "router-kafka / kafka-native on Apache Kafka, CPU per message",
            1.10,
            "≤ 1.10",
        ),
        (
            "router-eo@apache",
            "router-kafka@apache",
            "exactly-once / at-least-once on Apache Kafka, CPU per message",
            0.0,
            "—",
        ),
    ];
    // Throughput ratios meet their target from above, CPU ratios from below.
    let measured = pairs
        .into_iter()
        .map(|p| (p, ratios as Measure, true))
        .chain(
            cpu_pairs
                .into_iter()
                .map(|p| (p, cpu_ratios as Measure, false)),
        );
    for ((a, b, what, target, label), measure, above) in measured {
        for &size in &sizes {
            let values = measure(r, a, b, size);
            // A pair not measured at this size (Apache Kafka runs two sizes) has no row.
            if values.is_empty() {
                continue;
            }
            let m = median(&values);
            let met = if above { m >= target } else { m <= target };
            rows.push(Ratio {
                what: what.to_owned(),
                size: size_label(size),
                met: (target > 0.0 && m.is_finite()).then_some(met),
                values,
                target: label,
                unit: "",
            });
        }
    }
    let nop = micro_values(r, "call-nop", 0);
    let b64 = micro_values(r, "process", 64);
    let boundary: Vec<f64> = b64.iter().zip(&nop).map(|(p, n)| p / n).collect();
    let m = median(&boundary);
    rows.push(Ratio {
        what: "plugin boundary per message, batch 64 / one empty component call".to_owned(),
        size: "100 B".to_owned(),
        met: m.is_finite().then_some(m <= 0.15),
        values: boundary,
        target: "≤ 0.15",
        unit: "",
    });
    let epoch: Vec<f64> = micro_values(r, "process-no-epoch", 64)
        .iter()
        .zip(&b64)
        .map(|(off, on)| off / on)
        .collect();
    let m = median(&epoch);
    rows.push(Ratio {
        what: "epoch deadline on / off (throughput of `process`, batch 64)".to_owned(),
        size: "100 B".to_owned(),
        met: m.is_finite().then_some(m >= 0.97),
        values: epoch,
        target: "≥ 0.97",
        unit: "",
    });
    let stage: Vec<f64> =
        latency_values(r, "router-wasm", 50, |l| l.stage_p99_us.unwrap_or(f64::NAN))
            .into_iter()
            .filter(|v| v.is_finite())
            .collect();
    let m = median(&stage);
    rows.push(Ratio {
        what: "p99 time of the wasm stage per batch at 50 % load (the router's own histogram: the most the stage adds to a message of that batch)".to_owned(),
        size: "100 B".to_owned(),
        met: m.is_finite().then_some(m <= 5.0),
        values: stage,
        target: "≤ 5 µs",
        unit: " µs",
    });
    let added: Vec<f64> = latency_values(r, "router-wasm", 50, |l| l.p99_us)
        .iter()
        .zip(latency_values(r, "router-native", 50, |l| l.p99_us))
        .map(|(w, n)| w - n)
        .collect();
    let m = median(&added);
    let (lo, hi) = spread(&added);
    // With fewer than three rounds, rounds that disagree by far more than the target, or a
    // sandbox that seems to make messages arrive sooner, the machine cannot judge it.
    let resolvable = added.len() >= 3 && hi - lo <= 10.0 * 5.0 && m >= -5.0;
    rows.push(Ratio {
        what: "p99 latency added by the wasm stage at 50 % load, end to end (router-wasm − router-native)".to_owned(),
        size: "100 B".to_owned(),
        met: (m.is_finite() && resolvable).then_some(m <= 5.0),
        values: added,
        target: if resolvable {
            "≤ 5 µs"
        } else {
            "≤ 5 µs (rounds disagree by far more: not judged)"
        },
        unit: " µs",
    });
    rows
}

/// `n` with its thousands apart: `8 000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn size_label(size: usize) -> String {
    match size {
        s if s >= 1024 && s.is_multiple_of(1024) => format!("{} KiB", s / 1024),
        s => format!("{s} B"),
    }
}

fn rate(x: f64) -> String {
    if !x.is_finite() {
        "—".to_owned()
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// The report in markdown.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(out, "# Switchyard benchmark\n");
    let _ = writeln!(
        out,
        "{} run, {}; {} ({} cores), Linux {}; {} alternations of every configuration, medians with min–max; {:.0} s in all.\n",
        if r.quick { "Quick" } else { "Full" },
        m.date,
        m.cpu,
        m.cores,
        m.kernel,
        r.rounds,
        r.took_s
    );
    let _ = writeln!(out, "## Ratios against targets\n");
    let _ = writeln!(
        out,
        "Each ratio is taken per round, between two configurations run one after the other, then the median and the min–max of those are given.\n"
    );
    let _ = writeln!(out, "| ratio | size | median | min–max | target | met |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in ratio_rows(r) {
        let (lo, hi) = spread(&row.values);
        let med = median(&row.values);
        let fmt = |x: f64| {
            if x.is_finite() {
                if row.unit.is_empty() {
                    format!("{x:.3}")
                } else {
                    format!("{x:.1}{}", row.unit)
                }
            } else {
                "—".to_owned()
            }
        };
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}–{} | {} | {met} |",
            row.what,
            row.size,
            fmt(med),
            fmt(lo),
            fmt(hi),
            row.target
        );
    }

    let _ = writeln!(out, "\n## Throughput\n");
    let _ = writeln!(
        out,
        "Messages per second counted at the sink from the first message to the last (median, min–max), the CPU time of the process in the middle per message, and the router's mean batch size (medians).\n"
    );
    let mut header = String::from("| transport | configuration |");
    let mut rule = String::from("|---|---|");
    for &size in &r.sizes {
        let _ = write!(header, " {} |", size_label(size));
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    let configs: Vec<(&str, &str)> = ZMQ_CONFIGS
        .iter()
        .map(|c| ("ZeroMQ", *c))
        .chain(KAFKA_CONFIGS.iter().map(|c| ("Kafka (embedded)", *c)))
        .chain(APACHE_CONFIGS.iter().map(|c| ("Apache Kafka", *c)))
        .chain(
            GATEWAY_CONFIGS
                .iter()
                .map(|c| ("ZeroMQ gateway → Apache Kafka", *c)),
        )
        .collect();
    for (transport, config) in configs {
        let mut line = format!("| {transport} | `{config}` |");
        for &size in &r.sizes {
            let values = per_round(r, config, size);
            let (lo, hi) = spread(&values);
            let cpu = median_of(r, config, size, |t| t.cpu_ns_per_msg);
            let cpu = if cpu.is_finite() {
                format!(" · {cpu:.0} ns CPU")
            } else {
                String::new()
            };
            let batch = median_of(r, config, size, |t| t.mean_batch);
            let cpu = if batch.is_finite() {
                format!("{cpu} · batch {batch:.0}")
            } else {
                cpu
            };
            let _ = write!(
                line,
                " {} ({}–{}){cpu} |",
                rate(median(&values)),
                rate(lo),
                rate(hi)
            );
        }
        let _ = writeln!(out, "{line}");
    }

    let _ = writeln!(out, "\n## Latency\n");
    let _ = writeln!(
        out,
        "Open loop at a fixed rate (25 % and 50 % of `router-native`'s median at 100 B; `zmq-proxy`, libzmq's forwarder, at the same rates as the floor of this machine), a send timestamp in each 100-byte payload, an HdrHistogram at the sink; the first tenth of each run is not recorded. The last column is the router's own account of its wasm stage: the p99 of the time one batch spent in it (encoding, `process`, reading the result), as the bound of its histogram bucket. Medians over rounds, µs.\n"
    );
    let _ = writeln!(
        out,
        "| load | configuration | msg/s | p50 | p99 | p99.9 | wasm stage per batch, p99 |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for load in [25u32, 50] {
        for config in LATENCY_CONFIGS {
            let pick = |f: fn(&Latency) -> f64| median(&latency_values(r, config, load, f));
            let rate_sent = pick(|l| l.rate);
            if !rate_sent.is_finite() {
                continue;
            }
            let stage = pick(|l| l.stage_p99_us.unwrap_or(f64::NAN));
            let _ = writeln!(
                out,
                "| {load} % | `{config}` | {} | {:.1} | {:.1} | {:.1} | {} |",
                rate(rate_sent),
                pick(|l| l.p50_us),
                pick(|l| l.p99_us),
                pick(|l| l.p999_us),
                if stage.is_finite() {
                    format!("≤ {stage}")
                } else {
                    String::new()
                }
            );
        }
    }

    let _ = writeln!(out, "\n## ZeroMQ gateway answers\n");
    let _ = writeln!(
        out,
        "From sending a request to reading its answer, on Apache Kafka at 100 B: `gateway-ack`, one DEALER keeping {} requests in flight (`max_in_flight = {}`) (so mostly the queue ahead of it); `gateway-req`, a REQ client sending one request at a time (the producer's `linger.ms = 5` is part of every round trip). Medians over rounds, µs.\n",
        thousands(GATEWAY_WINDOW),
        GATEWAY_WINDOW
    );
    let _ = writeln!(out, "| client | requests per round | p50 | p99 |");
    let _ = writeln!(out, "|---|---|---|---|");
    for config in ["gateway-ack", "gateway-req"] {
        let rows: Vec<_> = r.replies.iter().filter(|x| x.config == config).collect();
        if rows.is_empty() {
            continue;
        }
        let pick = |f: fn(&crate::results::Reply) -> f64| {
            median(&rows.iter().map(|x| f(x)).collect::<Vec<_>>())
        };
        let _ = writeln!(
            out,
            "| `{config}` | {} | {:.0} | {:.0} |",
            rows[0].requests,
            pick(|x| x.p50_us),
            pick(|x| x.p99_us)
        );
    }

    gateway_machine(&mut out, r);

    let _ = writeln!(out, "\n## End-to-end latency on Apache Kafka\n");
    let _ = writeln!(
        out,
        "Records sent at 5 000 per second (100 B, each stamped with its send time), through the router (`passthrough`), read back by a `read_committed` consumer (`fetch.wait.max.ms = 50`): from the stamp to the read, in whole milliseconds (Kafka timestamps' resolution). Exactly-once records become readable when their transaction commits (every `transaction_ms`, 100 by default). Medians over rounds.\n"
    );
    let _ = writeln!(out, "| delivery | records per round | p50 | p99 |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (config, label) in [
        ("router-kafka@apache", "at-least-once"),
        ("router-eo@apache", "exactly-once"),
    ] {
        let rows: Vec<_> = r
            .transactions
            .iter()
            .filter(|x| x.config == config)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let pick = |f: fn(&crate::results::Reply) -> f64| {
            median(&rows.iter().map(|x| f(x)).collect::<Vec<_>>()) / 1e3
        };
        let _ = writeln!(
            out,
            "| {label} (`{config}`) | {} | {:.0} ms | {:.0} ms |",
            rows[0].requests,
            pick(|x| x.p50_us),
            pick(|x| x.p99_us)
        );
    }

    let _ = writeln!(out, "\n## Plugin boundary\n");
    let _ = writeln!(
        out,
        "`passthrough`, 100-byte messages with a key and two headers, the batch encoded once and called repeatedly; the empty call has no data.\n"
    );
    let _ = writeln!(
        out,
        "| measurement | ns per message (median, min–max) | / empty call |"
    );
    let _ = writeln!(out, "|---|---|---|");
    let nop = median(&micro_values(r, "call-nop", 0));
    let (lo, hi) = spread(&micro_values(r, "call-nop", 0));
    let _ = writeln!(
        out,
        "| empty component call | {nop:.1} ({lo:.1}–{hi:.1}) per call | 1.000 |"
    );
    let rows = BATCHES
        .iter()
        .map(|&b| ("process", b, format!("`process`, batch {b}")))
        .chain([(
            "process-no-epoch",
            64,
            "`process`, batch 64, no epoch deadline".to_owned(),
        )]);
    for (name, batch, label) in rows {
        let v = micro_values(r, name, batch);
        let (lo, hi) = spread(&v);
        let m = median(&v);
        let _ = writeln!(
            out,
            "| {label} | {m:.1} ({lo:.1}–{hi:.1}) | {:.3} |",
            m / nop
        );
    }
    out
}

/// Every raw figure, for comparing two commits.
pub fn json(r: &Results) -> Value {
    json!({
        "machine": r.machine,
        "quick": r.quick,
        "rounds": r.rounds,
        "sizes": r.sizes,
        "took_s": r.took_s,
        "ratios": ratio_rows(r).iter().map(|row| json!({
            "ratio": row.what,
            "size": row.size,
            "median": finite(median(&row.values)),
            "per_round": row.values.iter().copied().map(finite).collect::<Vec<_>>(),
            "target": row.target,
            "met": row.met,
        })).collect::<Vec<_>>(),
        "throughput": r.throughput,
        "latency": r.latency,
        "gateway_answers": r.replies,
        "end_to_end_latency": r.transactions,
        "boundary": r.micro,
    })
}

fn finite(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// Throughput by message size, one line per configuration, as SVG.
pub fn chart(r: &Results, path: &Path) -> anyhow::Result<()> {
    let configs: Vec<&str> = ZMQ_CONFIGS
        .iter()
        .chain(KAFKA_CONFIGS.iter())
        .chain(APACHE_CONFIGS.iter())
        .copied()
        .collect();
    let lines: Vec<(&str, Vec<(f64, f64)>)> = configs
        .iter()
        .map(|c| {
            let points = r
                .sizes
                .iter()
                .map(|&s| (s as f64, median(&per_round(r, c, s))))
                .filter(|(_, y)| y.is_finite() && *y > 0.0)
                .collect();
            (*c, points)
        })
        .collect();
    let ys: Vec<f64> = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .collect();
    let (lo, hi) = spread(&ys);
    let (lo, hi) = if lo.is_finite() {
        (lo / 2.0, hi * 2.0)
    } else {
        (1.0, 10.0)
    };
    let (x_lo, x_hi) = spread(&r.sizes.iter().map(|&s| s as f64).collect::<Vec<_>>());
    let (x_lo, x_hi) = (x_lo / 1.5, x_hi * 1.5);

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "Switchyard throughput by message size ({}, {} cores, {})",
        r.machine.cpu,
        r.machine.cores,
        r.machine.date.get(..10).unwrap_or_default()
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("payload bytes")
        .y_desc("messages per second (median)")
        .x_label_formatter(&|x| size_label(*x as usize))
        .y_label_formatter(&|y| rate(*y))
        .draw()?;
    for (i, (name, points)) in lines.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// What the machine spends per gateway message, router, client and broker together: on a
/// machine they share, the rate follows it.
fn gateway_machine(out: &mut String, r: &Results) {
    fn together(t: &Throughput) -> Option<f64> {
        Some(t.cpu_ns_per_msg? + t.client_cpu_ns_per_msg? + t.broker_cpu_ns_per_msg?)
    }
    fn cores(t: &Throughput) -> Option<f64> {
        Some(t.msgs_per_s * together(t)? / 1e9)
    }
    let runs = |config: &'static str| r.throughput.iter().filter(move |t| t.config == config);
    if GATEWAY_CONFIGS.iter().all(|c| runs(c).next().is_none()) {
        return;
    }
    let _ = writeln!(out, "\n## What the machine spends per gateway message\n");
    let _ = writeln!(
        out,
        "CPU time per message of the router, the client (the harness process) and the broker (Apache Kafka), which share the machine in the gateway runs, and their sum; the cores they keep busy are the rate times the sum. Medians over rounds (the sum and the cores per round, then their median).\n"
    );
    let _ = writeln!(
        out,
        "| configuration | msg/s | router, ns | client, ns | broker, ns | together, ns | cores busy |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for config in GATEWAY_CONFIGS {
        let pick = |f: fn(&Throughput) -> Option<f64>| {
            median(&runs(config).filter_map(f).collect::<Vec<_>>())
        };
        let _ = writeln!(
            out,
            "| `{config}` | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            rate(pick(|t| Some(t.msgs_per_s))),
            pick(|t| t.cpu_ns_per_msg),
            pick(|t| t.client_cpu_ns_per_msg),
            pick(|t| t.broker_cpu_ns_per_msg),
            pick(together),
            pick(cores)
        );
    }
}
