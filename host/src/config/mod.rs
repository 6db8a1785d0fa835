//! The configuration file: serde types whose doc comments are the user documentation,
//! `${VAR}` interpolation, and validation that reports every problem with its place.
//!
//! ```toml
//! [kafka.main]
//! bootstrap = "embedded"
//!
//! [inputs.orders]
//! kafka = { cluster = "main", topics = ["orders"], group = "switchyard" }
//!
//! [outputs.valid]
//! kafka = { cluster = "main", topic = "orders.valid" }
//!
//! [[routes]]
//! name = "orders"
//! from = ["orders"]
//! plugins = [{ path = "plugins/json_filter.wasm", config = { field = "amount", op = "gte", value = "100" } }]
//! to = ["valid"]
//! ```

mod admin;
mod interpolate;
pub mod resolved;
mod route;
mod transactions;
pub use transactions::Delivery;
pub mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use admin::AdminConfig;
pub use interpolate::interpolate;
pub use route::{OnPluginError, OnProduceError, PluginRef, ReplyWhen, RouteConfig, When};
pub use validate::validate;

/// A problem found in a configuration file, with the byte offset it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Byte offset in the (interpolated) file text, when the problem has a place.
    pub offset: Option<usize>,
    /// What is wrong, in words.
    pub message: String,
}

impl Located {
    /// A problem at `offset`.
    pub fn at(offset: usize, message: impl Into<String>) -> Self {
        Located {
            offset: Some(offset),
            message: message.into(),
        }
    }

    /// A problem at the start of a spanned value.
    pub fn on<T>(value: &Spanned<T>, message: impl Into<String>) -> Self {
        Located::at(value.span().start, message)
    }

    /// A problem of the file as a whole.
    pub fn whole(message: impl Into<String>) -> Self {
        Located {
            offset: None,
            message: message.into(),
        }
    }
}

/// Every problem of a configuration file, printed as `FILE:LINE:COLUMN: message` lines.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    path: PathBuf,
    text: String,
    problems: Vec<Located>,
}

impl ConfigError {
    /// The problems, in file order.
    pub fn problems(&self) -> &[Located] {
        &self.problems
    }

    /// `(line, column)`, both from 1, of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn render(&self) -> String {
        let file = self.path.display();
        self.problems
            .iter()
            .map(|p| match p.offset {
                Some(offset) => {
                    let (line, column) = self.line_col(offset);
                    format!("{file}:{line}:{column}: {}", p.message)
                }
                None => format!("{file}: {}", p.message),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The directory plugin paths are relative to, itself relative to this file's
    /// directory (default: the file's directory).
    #[serde(default)]
    pub plugin_dir: Option<Spanned<String>>,
    /// A name for this router that stays the same across its restarts (a StatefulSet pod's
    /// `${HOSTNAME}`, for example). With it, each Kafka input is a static member of its group
    /// (`group.instance.id` = `INSTANCE.INPUT`), so a restarted router takes its partitions
    /// back at once instead of waiting for its predecessor's session to expire.
    #[serde(default)]
    pub instance_id: Option<Spanned<String>>,
    /// The admin HTTP endpoint.
    #[serde(default)]
    pub admin: AdminConfig,
    /// How changes to the file and its plugins are noticed.
    #[serde(default)]
    pub reload: ReloadConfig,
    /// Kafka clusters by name.
    #[serde(default)]
    pub kafka: BTreeMap<String, Spanned<KafkaCluster>>,
    /// Where messages come from, by name.
    #[serde(default)]
    pub inputs: BTreeMap<String, Spanned<InputConfig>>,
    /// Where messages go, by name.
    #[serde(default)]
    pub outputs: BTreeMap<String, Spanned<OutputConfig>>,
    /// Routing rules, in order.
    #[serde(default)]
    pub routes: Vec<Spanned<RouteConfig>>,
}

/// `[reload]`: how changes to the configuration file and its plugins are noticed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// `"events"` (watch the directories), `"poll"` (compare contents every
    /// `poll_interval_ms`, for file systems without change events) or `"off"` (reload on
    /// SIGHUP and `POST /reload` only).
    #[serde(default)]
    pub watch: WatchMode,
    /// How long files must stay unchanged before a change is loaded, in milliseconds.
    #[serde(default = "ReloadConfig::default_debounce_ms")]
    pub debounce_ms: u64,
    /// How often `watch = "poll"` compares, in milliseconds.
    #[serde(default = "ReloadConfig::default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

impl ReloadConfig {
    fn default_debounce_ms() -> u64 {
        100
    }
    fn default_poll_interval_ms() -> u64 {
        1000
    }
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            watch: WatchMode::default(),
            debounce_ms: Self::default_debounce_ms(),
            poll_interval_ms: Self::default_poll_interval_ms(),
        }
    }
}

/// How file changes are noticed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// Directory change events (inotify on Linux).
    #[default]
    Events,
    /// Comparing contents at an interval.
    Poll,
    /// No watching.
    Off,
}

/// `[kafka.NAME]`: a Kafka cluster.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaCluster {
    /// `"host1:9092,host2:9092"`, or `"embedded"` for an in-process development cluster.
    pub bootstrap: Spanned<String>,
    /// librdkafka settings passed through as they are (TLS, SASL, compression, ...).
    #[serde(default)]
    pub options: BTreeMap<String, Spanned<String>>,
    /// Topics to create in the embedded cluster, with their partition counts.
    #[serde(default)]
    pub topics: BTreeMap<String, u32>,
}

/// `[inputs.NAME]`: exactly one of `kafka` or `zmq`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Consume Kafka topics in a consumer group.
    pub kafka: Option<Spanned<KafkaInput>>,
    /// Receive from a ZeroMQ socket.
    pub zmq: Option<Spanned<ZmqEndpoint>>,
}

/// A Kafka input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaInput {
    /// Name of a `[kafka.NAME]` cluster.
    pub cluster: Spanned<String>,
    /// Topics to consume.
    pub topics: Spanned<Vec<String>>,
    /// Consumer group; instances with the same group share the partitions.
    pub group: Spanned<String>,
    /// `"at-least-once"` (the default) or `"exactly-once"`: every route reading the input
    /// writes its outputs and dead letters, and commits the input's offsets, in one Kafka
    /// transaction.
    #[serde(default)]
    pub delivery: Option<Spanned<Delivery>>,
    /// With `delivery = "exactly-once"`: how long a transaction stays open, in
    /// milliseconds (default [`KafkaInput::TRANSACTION_MS`]).
    pub transaction_ms: Option<Spanned<u64>>,
}

/// `[outputs.NAME]`: exactly one of `kafka` or `zmq`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Produce to a Kafka topic.
    pub kafka: Option<Spanned<KafkaOutput>>,
    /// Send from a ZeroMQ socket.
    pub zmq: Option<Spanned<ZmqEndpoint>>,
}

/// A Kafka output.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaOutput {
    /// Name of a `[kafka.NAME]` cluster.
    pub cluster: Spanned<String>,
    /// Topic to produce to.
    pub topic: Spanned<String>,
}

/// ZeroMQ socket types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZmqSocketType {
    /// Subscriber (input).
    Sub,
    /// Pull (input).
    Pull,
    /// Router (input).
    Router,
    /// Publisher (output).
    Pub,
    /// Push (output).
    Push,
    /// Dealer (output).
    Dealer,
}

impl ZmqSocketType {
    /// Whether the socket type receives (an input) rather than sends.
    pub fn is_input(self) -> bool {
        matches!(
            self,
            ZmqSocketType::Sub | ZmqSocketType::Pull | ZmqSocketType::Router
        )
    }

    /// The type's name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            ZmqSocketType::Sub => "sub",
            ZmqSocketType::Pull => "pull",
            ZmqSocketType::Router => "router",
            ZmqSocketType::Pub => "pub",
            ZmqSocketType::Push => "push",
            ZmqSocketType::Dealer => "dealer",
        }
    }
}

/// A ZeroMQ socket, for an input or an output.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZmqEndpoint {
    /// `sub`, `pull` or `router` for inputs; `pub`, `push` or `dealer` for outputs.
    pub socket: Spanned<ZmqSocketType>,
    /// Endpoint to bind, such as `"tcp://127.0.0.1:5557"`, or a list of them.
    #[serde(default, deserialize_with = "one_or_many")]
    pub bind: Vec<Spanned<String>>,
    /// Endpoint to connect to, or a list of them.
    #[serde(default, deserialize_with = "one_or_many")]
    pub connect: Vec<Spanned<String>>,
    /// SUB only: topic prefixes to subscribe to; empty subscribes to everything.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// High-water mark (messages queued per peer); default libzmq's 1 000, and
    /// [`ZmqEndpoint::PUB_HWM`] for a `pub` output.
    pub hwm: Option<i32>,
    /// How long closing waits for unsent messages, in milliseconds.
    pub linger_ms: Option<i32>,
    /// Carry key and headers in extra frames so Kafka metadata survives a ZeroMQ hop.
    #[serde(default)]
    pub envelope: bool,
    /// `pub` only: what a subscriber with a full queue does to a record: `drop` it for every
    /// subscriber (counted), `drop-per-subscriber` (only the full ones miss it, uncounted),
    /// or `block` until there is room, holding the input back.
    #[serde(default)]
    pub when_full: WhenFull,
    /// Inputs only: the largest message accepted, in bytes (default 16 MiB); libzmq
    /// disconnects a peer that sends a larger one.
    pub max_message_bytes: Option<i64>,
    /// `router` inputs only: `"ack"` answers each request once every record it produced is
    /// acknowledged, with a JSON status (the ZeroMQ gateway); `"none"` answers nothing.
    #[serde(default)]
    pub reply: ReplyMode,
    /// With `reply = "ack"`: how long a request waits for its acknowledgements before it
    /// is answered `timeout`, in milliseconds (default 30 000).
    pub reply_timeout_ms: Option<u64>,
    /// With `reply = "ack"`: requests one client may have waiting for their replies; the
    /// next is answered `busy` and not accepted (default 1 000).
    pub max_in_flight: Option<u32>,
    /// With `reply = "ack"`: how many request ids the input remembers, so that a request
    /// sent again with the same id is answered with the first one's result instead of
    /// being produced twice (default 0: none).
    pub dedup_window: Option<u32>,
}

/// Whether a `router` input answers its requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyMode {
    /// No answer: the input is a one-way way in.
    #[default]
    None,
    /// One JSON status per request, once its records are acknowledged.
    Ack,
}

impl ZmqEndpoint {
    /// How long a request waits for its acknowledgements unless the input says otherwise.
    pub const REPLY_TIMEOUT_MS: u64 = 30_000;
    /// Requests a client may have in flight unless the input says otherwise.
    pub const MAX_IN_FLIGHT: u32 = 1_000;
    /// The most request ids an input may remember.
    pub const MAX_DEDUP_WINDOW: u32 = 10_000_000;

    /// The high-water mark of a `pub` output that sets none: large enough for a burst of
    /// a few batches to reach a subscriber that keeps up.
    pub const PUB_HWM: i32 = 10_000;
    /// The largest message an input accepts unless it says otherwise.
    pub const MAX_MESSAGE_BYTES: i64 = 16 << 20;
}

/// What a `pub` output does when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    /// Drop the record for that subscriber and count it.
    #[default]
    Drop,
    /// Wait until there is room: the slowest subscriber sets the pace.
    Block,
    /// Drop the record for the subscribers whose queue is full only (libzmq's plain PUB):
    /// a stalled subscriber never costs the others a record, but its drops are not
    /// counted (libzmq does not report them).
    #[serde(rename = "drop-per-subscriber")]
    DropPerSubscriber,
}

/// `"x"` or `["x", "y"]`, each string with its place in the file.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Spanned<String>>, D::Error> {
    /// One string, or a list whose strings keep their own places.
    enum OneOrMany {
        One(String),
        Many(Vec<Spanned<String>>),
    }
    impl<'de> Deserialize<'de> for OneOrMany {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = OneOrMany;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an endpoint string or a list of endpoint strings")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                    Ok(OneOrMany::One(v.to_owned()))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<OneOrMany, A::Error> {
                    let mut all = Vec::new();
                    while let Some(one) = seq.next_element::<Spanned<String>>()? {
                        all.push(one);
                    }
                    Ok(OneOrMany::Many(all))
                }
            }
            d.deserialize_any(Visitor)
        }
    }
    let value = Spanned::<OneOrMany>::deserialize(d)?;
    let span = value.span();
    Ok(match value.into_inner() {
        OneOrMany::One(one) => vec![Spanned::new(span, one)],
        OneOrMany::Many(all) => all,
    })
}

impl ConfigFile {
    /// The directory plugin paths are resolved against, for the configuration read from
    /// `file`: `plugin_dir` relative to the file's directory, or that directory itself.
    pub fn plugin_base(&self, file: &Path) -> PathBuf {
        let dir = file.parent().unwrap_or(Path::new("."));
        match &self.plugin_dir {
            Some(plugin_dir) => dir.join(plugin_dir.get_ref()),
            None => dir.to_owned(),
        }
    }
}

/// Reads, interpolates and parses a configuration file. Semantic checks are
/// [`validate()`]'s.
pub fn load(path: &Path) -> Result<(ConfigFile, String), ConfigError> {
    load_with(path, |name| std::env::var(name).ok())
}

/// Like [`load`], with variables looked up by `lookup` instead of the environment.
pub fn load_with(
    path: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(ConfigFile, String), ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        text: String::new(),
        problems: vec![Located::whole(format!("cannot read: {e}"))],
    })?;
    parse_with(path, &raw, lookup)
}

/// Interpolates and parses `raw`, the text of the file at `path` (named in errors).
pub fn parse_with(
    path: &Path,
    raw: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(ConfigFile, String), ConfigError> {
    let fail = |text: String, problems| ConfigError {
        path: path.to_owned(),
        text,
        problems,
    };
    let text = interpolate(raw, lookup).map_err(|problems| fail(raw.to_owned(), problems))?;
    match toml::from_str::<ConfigFile>(&text) {
        Ok(config) => Ok((config, text)),
        Err(e) => {
            let message = e.message().to_owned();
            let problem = match e.span() {
                Some(span) => Located::at(span.start, message),
                None => Located::whole(message),
            };
            Err(fail(text, vec![problem]))
        }
    }
}

/// Builds the error for problems found in a loaded file.
pub fn error(path: &Path, text: &str, mut problems: Vec<Located>) -> ConfigError {
    problems.sort_by_key(|p| p.offset);
    ConfigError {
        path: path.to_owned(),
        text: text.to_owned(),
        problems,
    }
}
