//! The plugin boundary: one empty component call against `process` per message, batches of
//! 1, 16, 64 and 256 messages of 100 bytes (a key and two headers each) through
//! `passthrough`.

use std::time::Instant;

use switchyard::plugin::{PluginInstance, PluginLimits, PluginRuntime, RuntimeOptions};
use switchyard_abi::{BatchWriter, Origin};
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use crate::results::{BATCHES, Micro};
use crate::setup::Setup;

/// A component whose one export does nothing: the floor of a boundary crossing.
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
                ("trace-id", Some(&b"0123456789abcdef"[..])),
                ("source", Some(&b"bench"[..])),
            ],
            Some(&payload),
        );
    }
    w
}

/// Nanoseconds per iteration of `f` over `iterations`.
fn time(iterations: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

/// Every round measures the empty call and then each batch size.
pub fn boundary(setup: &Setup) -> anyhow::Result<Vec<Micro>> {
    let runtime = PluginRuntime::new(RuntimeOptions::default())?;
    let engine = runtime.engine().clone();
    let component = Component::new(&engine, NOP)?;
    let mut store = Store::new(&engine, ());
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = Linker::<()>::new(&engine).instantiate(&mut store, &component)?;
    let nop = instance.get_typed_func::<(), ()>(&mut store, "nop")?;

    let plugin = runtime.load(&setup.plugin("passthrough"), PluginLimits::default())?;
    let mut passthrough = PluginInstance::new(plugin, vec![])?;
    // The same plugin compiled without epoch checks: what the deadline costs.
    let unchecked = PluginRuntime::new(RuntimeOptions {
        epoch_interruption: false,
        ..RuntimeOptions::default()
    })?;
    let plugin = unchecked.load(&setup.plugin("passthrough"), PluginLimits::default())?;
    let mut no_epoch = PluginInstance::new(plugin, vec![])?;
    let batches: Vec<(usize, BatchWriter)> = BATCHES.iter().map(|&n| (n, batch_of(n))).collect();
    let messages = setup.count(2_000_000);

    let mut results = Vec::new();
    for round in 0..setup.rounds {
        let mut failed = None;
        let ns = time(messages, || {
            if let Err(e) = nop.call(&mut store, ()) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        results.push(Micro {
            name: "call-nop".to_owned(),
            batch: 0,
            round,
            ns_per_message: ns,
        });
        let runs = batches.iter().map(|(n, b)| ("process", *n, b)).chain(
            batches
                .iter()
                .filter(|(n, _)| *n == 64)
                .map(|(n, b)| ("process-no-epoch", *n, b)),
        );
        for (name, n, batch) in runs {
            let instance = if name == "process" {
                &mut passthrough
            } else {
                &mut no_epoch
            };
            let mut failed = None;
            let ns = time(messages / n, || match instance.process(batch) {
                Ok(out) if out.len() == n => {}
                Ok(out) => failed = Some(anyhow::anyhow!("{} outcomes for {n}", out.len())),
                Err(e) => failed = Some(e.into()),
            }) / n as f64;
            if let Some(e) = failed {
                return Err(e);
            }
            results.push(Micro {
                name: name.to_owned(),
                batch: n,
                round,
                ns_per_message: ns,
            });
        }
        eprintln!(
            "  boundary round {round}: {}",
            results
                .iter()
                .filter(|m| m.round == round)
                .map(|m| format!("{}/{} {:.1} ns", m.name, m.batch, m.ns_per_message))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(results)
}
