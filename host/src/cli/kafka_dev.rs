//! `switchyard kafka-dev`: a development Kafka as a process of its own, so kcat, a test
//! harness or several routers can share it and it outlives a killed router. The embedded
//! cluster by default; with `--apache`, a real single-node Apache Kafka.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::kafka::{APACHE_KAFKA_VERSION, ApacheKafka, ApacheKafkaOptions, EmbeddedCluster};
use crate::shutdown::Shutdown;

pub(super) fn run(topics: &[String], brokers: i32) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let topics = parse_topics(topics)?;
    let cluster = EmbeddedCluster::start(brokers)?;
    for (name, partitions) in topics {
        cluster.create_topic(name, partitions)?;
    }
    announce(
        cluster.bootstrap().as_str(),
        "embedded Kafka cluster (development and tests only)",
    )?;
    shutdown.wait();
    Ok(ExitCode::SUCCESS)
}

pub(super) fn run_apache(topics: &[String], heap_mb: u32) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let topics = parse_topics(topics)?;
    let options = ApacheKafkaOptions {
        heap_mb,
        ..ApacheKafkaOptions::default()
    };
    let kafka = ApacheKafka::start(&options)?;
    for (name, partitions) in topics {
        kafka.create_topic(name, partitions)?;
    }
    announce(
        kafka.bootstrap(),
        &format!(
            "Apache Kafka {APACHE_KAFKA_VERSION} (KRaft, one node; log: {})",
            kafka.log_path().display()
        ),
    )?;
    shutdown.wait();
    // Dropping `kafka` stops the broker and removes its directory.
    Ok(ExitCode::SUCCESS)
}

pub(super) fn fetch() -> anyhow::Result<()> {
    let libs = crate::kafka::fetch_jars()?;
    eprintln!(
        "switchyard: Apache Kafka {APACHE_KAFKA_VERSION} jars in {}",
        libs.display()
    );
    Ok(())
}

/// `NAME[:PARTITIONS]` specs, partitions defaulting to 4.
fn parse_topics(specs: &[String]) -> anyhow::Result<Vec<(&str, u32)>> {
    specs
        .iter()
        .map(|spec| match spec.split_once(':') {
            Some((name, p)) => Ok((
                name,
                p.parse::<u32>()
                    .with_context(|| format!("--topic {spec}: partitions must be a number"))?,
            )),
            None => Ok((spec.as_str(), 4)),
        })
        .collect()
}

/// The address alone on the first line of stdout, for scripts; the rest on stderr.
fn announce(bootstrap: &str, what: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "{bootstrap}")?;
    out.flush()?;
    eprintln!("switchyard: {what} at {bootstrap}; Ctrl-C stops it");
    Ok(())
}
