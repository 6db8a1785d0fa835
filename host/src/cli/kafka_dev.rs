//! `switchyard kafka-dev`: the embedded cluster as a process of its own, so kcat, a test
//! harness or several routers can share it and it outlives a killed router.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::kafka::EmbeddedCluster;
use crate::router::Shutdown;

pub(super) fn run(topics: &[String], brokers: i32) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let cluster = EmbeddedCluster::start(brokers)?;
    for spec in topics {
        let (name, partitions) = match spec.split_once(':') {
            Some((name, p)) => (
                name,
                p.parse::<u32>()
                    .with_context(|| format!("--topic {spec}: partitions must be a number"))?,
            ),
            None => (spec.as_str(), 4),
        };
        cluster.create_topic(name, partitions)?;
    }
    // The address alone on the first line of stdout, for scripts.
    let mut out = std::io::stdout();
    writeln!(out, "{}", cluster.bootstrap())?;
    out.flush()?;
    eprintln!(
        "switchyard: embedded Kafka cluster (development and tests only) at {}; Ctrl-C stops it",
        cluster.bootstrap()
    );
    while !shutdown.is_triggered() {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(ExitCode::SUCCESS)
}
