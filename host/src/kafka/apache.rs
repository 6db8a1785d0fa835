//! A real single-node Apache Kafka (KRaft, combined broker and controller) for development,
//! tests and benchmarks: the reference broker every Kafka guarantee is verified on.
//!
//! The broker's jars come from Maven Central through the pinned descriptor
//! `tools/apache-kafka/pom.xml` (carried in the binary), fetched once into a cache outside
//! the source tree. Each start formats storage in a fresh temporary directory, listens on
//! free loopback ports with a small heap, and waits until the broker answers metadata
//! requests. Dropping the value stops the JVM and removes the directory; the JVM is also
//! killed by the kernel if the thread that started it dies first.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

/// The Maven descriptor of the broker's jars.
const POM: &str = include_str!("../../../tools/apache-kafka/pom.xml");
/// The pinned release; must match `kafka.version` in [`POM`].
pub const APACHE_KAFKA_VERSION: &str = "4.1.1";
/// How long the broker may take to answer after its JVM started.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Broker settings beyond the defaults. Topic auto-creation stays on, as on a default broker.
/// Members of a KIP-848 (`group.protocol=consumer`) group heartbeat every second instead of
/// every five, so a development broker rebalances about as fast as a classic group does.
const SERVER_PROPERTIES: &str = "\
process.roles=broker,controller
node.id=1
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.min.heartbeat.interval.ms=1000
group.consumer.heartbeat.interval.ms=1000
";

/// How a broker is started.
#[derive(Debug, Clone)]
pub struct ApacheKafkaOptions {
    /// Maximum JVM heap in MiB.
    pub heap_mb: u32,
    /// Whether topics are created on first use (Kafka's default: yes).
    pub auto_create_topics: bool,
}

impl Default for ApacheKafkaOptions {
    fn default() -> Self {
        ApacheKafkaOptions {
            heap_mb: 512,
            auto_create_topics: true,
        }
    }
}

/// A running Apache Kafka broker in a temporary directory of its own.
pub struct ApacheKafka {
    dir: tempfile::TempDir,
    classpath: String,
    heap_mb: u32,
    bootstrap: String,
    broker: Option<Child>,
}

impl ApacheKafka {
    /// Fetches the jars if needed, formats fresh storage and starts the broker; returns once
    /// it answers metadata requests.
    pub fn start(options: &ApacheKafkaOptions) -> anyhow::Result<Self> {
        let libs = fetch_jars()?;
        // The ports are free when chosen, but another process can take one before the JVM
        // binds it: a broker that exits during start is tried again on new ports.
        let mut attempt = 1;
        loop {
            match Self::start_once(options, &libs) {
                Err(e) if attempt < 3 && e.is::<ExitedDuringStart>() => {
                    tracing::warn!(error = %format!("{e:#}"), "Apache Kafka: starting again on other ports");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn start_once(options: &ApacheKafkaOptions, libs: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-apache-kafka-")
            .tempdir()
            .context("cannot create the broker's temporary directory")?;
        let (broker_port, controller_port) = free_ports()?;
        let bootstrap = format!("127.0.0.1:{broker_port}");
        let data = dir.path().join("data");
        let properties = format!(
            "{SERVER_PROPERTIES}\
             controller.quorum.voters=1@127.0.0.1:{controller_port}\n\
             listeners=PLAINTEXT://{bootstrap},CONTROLLER://127.0.0.1:{controller_port}\n\
             advertised.listeners=PLAINTEXT://{bootstrap}\n\
             auto.create.topics.enable={}\n\
             log.dirs={}\n",
            options.auto_create_topics,
            data.display(),
        );
        std::fs::write(dir.path().join("server.properties"), properties)?;
        let log4j = format!(
            "status = error\n\
             appender.file.type = File\n\
             appender.file.name = file\n\
             appender.file.fileName = {}\n\
             appender.file.layout.type = PatternLayout\n\
             appender.file.layout.pattern = [%d] %p %m (%c)%n\n\
             rootLogger.level = INFO\n\
             rootLogger.appenderRef.file.ref = file\n",
            dir.path().join("broker.log").display()
        );
        std::fs::write(dir.path().join("log4j2.properties"), log4j)?;
        let classpath = format!("{}/*", libs.display());
        let mut kafka = ApacheKafka {
            dir,
            classpath,
            heap_mb: options.heap_mb,
            bootstrap,
            broker: None,
        };
        kafka.format()?;
        kafka.start_broker()?;
        Ok(kafka)
    }

    /// The bootstrap address clients connect to.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The broker's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// The broker JVM's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.broker.as_ref().map(Child::id)
    }

    /// Creates a topic with one replica; an existing topic is left as it is.
    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        self.create_topic_with(name, partitions, &[])
    }

    /// Creates topic `name` with `partitions` and topic-level settings `config` (such as
    /// `max.message.bytes`), and waits until clients see it.
    pub fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        config: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .context("cannot create a Kafka admin client")?;
        let partitions = i32::try_from(partitions.max(1)).unwrap_or(i32::MAX);
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (key, value) in config {
            topic = topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let results = runtime
            .block_on(admin.create_topics([&topic], &options))
            .with_context(|| format!("cannot create topic `{name}`"))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => bail!("cannot create topic `{topic}`: {code}"),
            }
        }
        // The topic exists once its leader is known to a client.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = consumer
                .fetch_metadata(Some(name), Duration::from_secs(5))
                .ok()
                .is_some_and(|m| {
                    m.topics().iter().any(|t| {
                        t.error().is_none()
                            && t.partitions().len() == partitions as usize
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                });
            if ready {
                return Ok(());
            }
            if Instant::now() >= end {
                bail!("topic `{name}` was created but has no leader after 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker process: SIGTERM and a controlled shutdown when `graceful`, else
    /// SIGKILL. Storage and ports stay, so [`ApacheKafka::start_broker`] brings it back.
    pub fn stop_broker(&mut self, graceful: bool) -> anyhow::Result<()> {
        let Some(mut child) = self.broker.take() else {
            return Ok(());
        };
        if graceful {
            signal(&child, libc::SIGTERM)?;
            let end = Instant::now() + Duration::from_secs(30);
            while Instant::now() < end {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Freezes the broker process (SIGSTOP), as a hung broker or a long GC pause would.
    pub fn pause(&self) -> anyhow::Result<()> {
        let child = self.broker.as_ref().context("the broker is not running")?;
        signal(child, libc::SIGSTOP)
    }

    /// Lets a paused broker run again (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        let child = self.broker.as_ref().context("the broker is not running")?;
        signal(child, libc::SIGCONT)
    }

    /// Starts the broker process on this instance's ports and storage and waits until it
    /// answers.
    pub fn start_broker(&mut self) -> anyhow::Result<()> {
        if self.broker.is_some() {
            return Ok(());
        }
        let stdout = std::fs::File::create(self.dir.path().join("broker.out"))?;
        let mut cmd = self.java();
        cmd.arg(format!("-Xmx{}m", self.heap_mb))
            .arg(format!("-Xms{}m", self.heap_mb.min(256)))
            .args(["kafka.Kafka", "server.properties"])
            .stdin(Stdio::null())
            .stdout(stdout.try_clone()?)
            .stderr(stdout)
            // Its own process group: a terminal's Ctrl-C reaches the launcher, which then
            // stops the broker in order.
            .process_group(0);
        // SAFETY: prctl(2) is async-signal-safe and touches only the calling (child) process.
        unsafe {
            cmd.pre_exec(|| {
                // The JVM dies with the thread that started it, even if that thread's
                // process is killed and never runs our Drop.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(java_missing)?;
        self.broker = Some(child);
        self.wait_ready()
    }

    /// `java` with the classpath, logging configuration and working directory.
    fn java(&self) -> Command {
        let mut cmd = Command::new("java");
        cmd.current_dir(self.dir.path())
            .arg("-cp")
            .arg(&self.classpath)
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.path().join("log4j2.properties").display()
            ))
            .arg("-Djava.awt.headless=true");
        cmd
    }

    /// Formats fresh KRaft storage with a new cluster id.
    fn format(&self) -> anyhow::Result<()> {
        let output = self
            .java()
            .args(["-Xmx256m", "kafka.tools.StorageTool", "format"])
            .args(["--cluster-id", &cluster_id()])
            .args(["--config", "server.properties"])
            .output()
            .map_err(java_missing)?;
        if !output.status.success() {
            bail!(
                "formatting the broker's storage failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("log_level", "0")
            .create()?;
        let end = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.broker.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.broker = None;
                return Err(anyhow::Error::new(ExitedDuringStart)).context(format!(
                    "the Apache Kafka broker exited during start ({status}); its log ends:\n{}",
                    self.log_tail()
                ));
            }
            if consumer
                .fetch_metadata(None, Duration::from_millis(500))
                .is_ok_and(|m| !m.brokers().is_empty())
            {
                return Ok(());
            }
            if Instant::now() >= end {
                bail!(
                    "the Apache Kafka broker did not answer at {} within {} s; its log ends:\n{}",
                    self.bootstrap,
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines the broker wrote, for error messages.
    fn log_tail(&self) -> String {
        let mut lines = Vec::new();
        for name in ["broker.out", "broker.log"] {
            if let Ok(file) = std::fs::File::open(self.dir.path().join(name)) {
                lines.extend(BufReader::new(file).lines().map_while(Result::ok));
            }
        }
        let skip = lines.len().saturating_sub(20);
        lines[skip..].join("\n")
    }
}

impl Drop for ApacheKafka {
    fn drop(&mut self) {
        // The data goes with the directory: no need for a controlled shutdown.
        if let Some(mut child) = self.broker.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The directory holding the broker's jars, fetched with Maven on first use. Shared by every
/// checkout and binary of the same Kafka version: `$SWITCHYARD_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/switchyard`, else `~/.cache/switchyard`.
pub fn fetch_jars() -> anyhow::Result<PathBuf> {
    let root = cache_root()?.join(format!("apache-kafka-{APACHE_KAFKA_VERSION}"));
    let libs = root.join("libs");
    if libs
        .join(format!("kafka_2.13-{APACHE_KAFKA_VERSION}.jar"))
        .is_file()
    {
        return Ok(libs);
    }
    std::fs::create_dir_all(&root)
        .with_context(|| format!("cannot create the cache directory {}", root.display()))?;
    let pom = root.join("pom.xml");
    std::fs::write(&pom, POM)?;
    // Fetched beside the final directory and renamed into place, so a concurrent fetch or
    // an interrupted one never leaves a half-filled `libs`.
    let staging = tempfile::Builder::new().prefix("libs-").tempdir_in(&root)?;
    eprintln!(
        "switchyard: fetching Apache Kafka {APACHE_KAFKA_VERSION} from Maven Central into {} \
         (once)",
        libs.display()
    );
    let output = Command::new("mvn")
        .args(["-B", "-q", "-f"])
        .arg(&pom)
        .args(["dependency:copy-dependencies", "-DincludeScope=runtime"])
        .arg(format!("-DoutputDirectory={}", staging.path().display()))
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "Apache Kafka's jars are fetched with Maven, and `mvn` is not on PATH: \
                     install Maven (Debian: apt-get install maven) and Java 17"
                )
            } else {
                anyhow::Error::new(e).context("cannot run mvn")
            }
        })?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "Maven could not fetch Apache Kafka {APACHE_KAFKA_VERSION} ({}); is Maven Central \
             reachable? Maven said:\n{}",
            output.status,
            tail.join("\n")
        );
    }
    match std::fs::rename(staging.path(), &libs) {
        Ok(()) => {
            // Renamed away: nothing left for the guard to remove.
            let _ = staging.keep();
        }
        // Another fetch finished first; its copy is as good as ours.
        Err(_) if libs.is_dir() => {}
        Err(e) => return Err(e).context(format!("cannot move the jars to {}", libs.display())),
    }
    Ok(libs)
}

fn cache_root() -> anyhow::Result<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("SWITCHYARD_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(dir.join("switchyard"));
    }
    let home = var("HOME").context("no cache directory: set SWITCHYARD_CACHE_DIR or HOME")?;
    Ok(Path::new(&home).join(".cache").join("switchyard"))
}

fn java_missing(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "Apache Kafka needs Java 17 or newer, and `java` is not on PATH \
             (Debian: apt-get install openjdk-17-jre-headless)"
        )
    } else {
        anyhow::Error::new(e).context("cannot run java")
    }
}

fn signal(child: &Child, signal: libc::c_int) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(child.id())?;
    // SAFETY: kill(2) on a child this value owns and has not reaped.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Two distinct loopback ports that were free a moment ago (both held while choosing, so
/// the kernel cannot hand out the same one twice).
fn free_ports() -> anyhow::Result<(u16, u16)> {
    let a = std::net::TcpListener::bind("127.0.0.1:0")?;
    let b = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// The broker's JVM exited before it answered.
#[derive(Debug, thiserror::Error)]
#[error("the broker exited during start")]
struct ExitedDuringStart;

/// A random KRaft cluster id: 16 bytes, URL-safe base64 without padding.
fn cluster_id() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    // Randomness from the standard library's hasher seeds; unique enough for a cluster id.
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    // An id starting with `-` is read as an option by `kafka-storage format` (Kafka's own
    // `Uuid.randomUuid` avoids them too): a clear top bit keeps the first character in `A`–`f`.
    bytes[0] &= 0x7f;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod cluster_id_tests {
    #[test]
    fn a_cluster_id_never_starts_with_a_dash() {
        for _ in 0..2000 {
            let id = super::cluster_id();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'), "{id}");
        }
    }
}
