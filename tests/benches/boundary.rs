//! What crossing into a plugin costs: one empty component call against the `process`
//! boundary per message for batches of 1, 16, 64 and 256 messages of 100 bytes (key and two
//! headers each) through `passthrough`, plus compiling and instantiating a plugin.
//!
//! Run with `cargo bench -p switchyard-tests --bench boundary`. Besides criterion's own
//! report, the run ends with a table of medians and each batch size's cost per message as a
//! fraction of one empty call (target at batch 64: <= 0.15, from `shared/BENCHMARKS.md`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use switchyard::plugin::{PluginInstance, PluginLimits, PluginRuntime, RuntimeOptions};
use switchyard_abi::{BatchWriter, Origin};
use switchyard_tests::plugins;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

/// Per-iteration times seen for each measurement, for the closing table.
static SEEN: Mutex<BTreeMap<String, Vec<Duration>>> = Mutex::new(BTreeMap::new());

fn record(name: &str, per_iter: Duration) {
    if let Ok(mut seen) = SEEN.lock() {
        seen.entry(name.to_owned()).or_default().push(per_iter);
    }
}

fn median(name: &str) -> Option<Duration> {
    let seen = SEEN.lock().ok()?;
    let mut v = seen.get(name)?.clone();
    v.sort();
    v.get(v.len() / 2).copied()
}

/// Times `f` per iteration for criterion and records the result for the table.
fn timed(name: String, mut f: impl FnMut()) -> impl FnMut(u64) -> Duration {
    move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        let elapsed = start.elapsed();
        record(
            &name,
            elapsed / u32::try_from(iters.max(1)).unwrap_or(u32::MAX),
        );
        elapsed
    }
}

const NOP: &str = r#"(component
    (core module $m (func (export "nop")))
    (core instance $i (instantiate $m))
    (func (export "nop") (canon lift (core func $i "nop")))
)"#;

fn batch_of(n: usize) -> BatchWriter {
    let payload = [b'x'; 100];
    let mut w = BatchWriter::new();
    w.start("bench");
    for i in 0..n {
        let key = format!("key-{i:06}");
        w.push(
            &Origin::Kafka {
                topic: "bench",
                partition: 0,
                offset: i as i64,
            },
            Some(key.as_bytes()),
            Some(1_700_000_000_000),
            [
                ("trace-id", &b"0123456789abcdef"[..]),
                ("source", &b"bench"[..]),
            ],
            &payload,
        );
    }
    w
}

fn benches(c: &mut Criterion) {
    let runtime = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let engine = runtime.engine().clone();

    // One empty component call, under the same engine settings as plugins.
    let component = Component::new(&engine, NOP).expect("nop component");
    let linker = Linker::<()>::new(&engine);
    let mut store = Store::new(&engine, ());
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = linker
        .instantiate(&mut store, &component)
        .expect("instantiate");
    let nop = instance
        .get_typed_func::<(), ()>(&mut store, "nop")
        .expect("nop export");
    c.bench_function("call-nop", |b| {
        b.iter_custom(timed("call-nop".into(), || {
            nop.call(&mut store, ()).expect("call");
        }));
    });

    let plugin = runtime
        .load(Path::new(plugins::PASSTHROUGH), PluginLimits::default())
        .expect("passthrough");
    let mut passthrough = PluginInstance::new(plugin, vec![]).expect("init");
    let mut group = c.benchmark_group("process");
    for n in [1usize, 16, 64, 256] {
        let batch = batch_of(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("passthrough", n), &batch, |b, batch| {
            b.iter_custom(timed(format!("process/{n}"), || {
                let out = passthrough.process(batch).expect("process");
                assert_eq!(out.len(), n);
            }));
        });
    }
    group.finish();

    c.bench_function("encode/64", |b| {
        let mut w = BatchWriter::new();
        let payload = [b'x'; 100];
        b.iter_custom(timed("encode/64".into(), || {
            w.start("bench");
            for i in 0..64 {
                w.push(
                    &Origin::None,
                    Some(b"key-000001"),
                    Some(i),
                    [
                        ("trace-id", &b"0123456789abcdef"[..]),
                        ("source", &b"bench"[..]),
                    ],
                    &payload,
                );
            }
            std::hint::black_box(w.as_bytes());
        }));
    });

    let json_filter = std::fs::read(plugins::JSON_FILTER).expect("json_filter.wasm");
    let mut slow = c.benchmark_group("load");
    slow.sample_size(10);
    slow.bench_function("compile/json_filter", |b| {
        b.iter_custom(timed("compile/json_filter".into(), || {
            runtime
                .load_bytes(
                    Path::new("json_filter.wasm"),
                    &json_filter,
                    PluginLimits::default(),
                )
                .expect("compile");
        }));
    });
    let compiled = runtime
        .load_bytes(
            Path::new("json_filter.wasm"),
            &json_filter,
            PluginLimits::default(),
        )
        .expect("compile");
    let config: Vec<(String, String)> = [("field", "a"), ("op", "exists")]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    slow.sample_size(50);
    slow.bench_function("instantiate+init/json_filter", |b| {
        b.iter_custom(timed("instantiate+init/json_filter".into(), || {
            PluginInstance::new(compiled.clone(), config.clone()).expect("instantiate");
        }));
    });
    slow.finish();
}

fn print_table() {
    let Some(nop) = median("call-nop") else {
        return;
    };
    println!();
    println!("| measurement | median per call | per message | per message / empty call |");
    println!("|---|---|---|---|");
    println!("| empty component call | {nop:.2?} | | 1.00 |");
    for n in [1u32, 16, 64, 256] {
        if let Some(call) = median(&format!("process/{n}")) {
            let per = call / n;
            let ratio = per.as_secs_f64() / nop.as_secs_f64();
            println!("| process, batch {n} | {call:.2?} | {per:.2?} | {ratio:.3} |");
        }
    }
    for name in [
        "encode/64",
        "compile/json_filter",
        "instantiate+init/json_filter",
    ] {
        if let Some(t) = median(name) {
            println!("| {name} | {t:.2?} | | |");
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    print_table();
}
