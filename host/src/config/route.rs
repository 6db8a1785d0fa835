//! `[[routes]]`: a route's inputs, predicates, plugin chain and outputs.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `[[routes]]`: which inputs, which plugins, which outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in metrics, logs and dead-letter headers.
    pub name: Spanned<String>,
    /// Inputs whose messages this route takes.
    pub from: Vec<Spanned<String>>,
    /// Declarative predicates; a message must match all of them.
    #[serde(default)]
    pub when: When,
    /// The plugin chain; each plugin's outputs feed the next.
    #[serde(default)]
    pub plugins: Vec<Spanned<PluginRef>>,
    /// Outputs that `pass` (and emits without a destination) go to.
    #[serde(default)]
    pub to: Vec<Spanned<String>>,
    /// Names plugins may emit to, each mapped to an output.
    #[serde(default)]
    pub destinations: BTreeMap<String, Spanned<String>>,
    /// Output for rejected messages and plugin failures.
    pub dead_letter: Option<Spanned<String>>,
    /// When a plugin's reply to a request (from a ROUTER input with `reply = "ack"`) is
    /// sent: `"ack"` once the request's records are acknowledged, or `"immediate"` as soon
    /// as the plugin gives it. Default `"ack"`.
    pub reply_when: Option<Spanned<ReplyWhen>>,
    /// For a route without `dead_letter`: what a record an output refuses for good does to
    /// its input. Default `"pause"`.
    #[serde(default)]
    pub on_produce_error: OnProduceError,
    /// What a message whose plugin failed (not a `reject`) does: `"dead-letter"` (the
    /// default) or `"pause"` (its partition stops there and is read again after a pause).
    pub on_plugin_error: Option<Spanned<OnPluginError>>,
}

impl RouteConfig {
    /// Every output the route names, with its role as messages say it (`` `to` ``,
    /// `` destination `NAME` ``, `` `dead_letter` ``).
    pub fn targets(&self) -> impl Iterator<Item = (String, &Spanned<String>)> {
        let to = self.to.iter().map(|o| ("`to`".to_owned(), o));
        let destinations = self
            .destinations
            .iter()
            .map(|(d, o)| (format!("destination `{d}`"), o));
        let dead_letter = self
            .dead_letter
            .iter()
            .map(|o| ("`dead_letter`".to_owned(), o));
        to.chain(destinations).chain(dead_letter)
    }
}

/// `when`: declarative predicates, all of which must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// The Kafka topic (or ZeroMQ topic frame) equals this.
    pub topic: Option<String>,
    /// The key starts with this.
    pub key_prefix: Option<String>,
    /// Each named header has this value.
    #[serde(default)]
    pub header: BTreeMap<String, String>,
}

/// A plugin in a route's chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    /// The component file, relative to `plugin_dir` (by default the configuration
    /// file's directory).
    pub path: Spanned<String>,
    /// Settings passed to the plugin's `init`, in file order.
    #[serde(default)]
    pub config: toml::Table,
    /// Deadline of one call in milliseconds (default 500).
    pub timeout_ms: Option<u64>,
    /// Memory cap in MiB (default 64).
    pub memory_mb: Option<usize>,
}

impl PluginRef {
    /// The plugin's settings as strings, in file order: strings as they are, numbers and
    /// booleans as written.
    pub fn settings(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

/// When a plugin's reply is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyWhen {
    /// Once every record the request produced is acknowledged.
    #[default]
    Ack,
    /// As soon as the plugin gives it: its records may still fail.
    Immediate,
}

/// What a route without `dead_letter` does with a record an output refuses for good (too
/// large, invalid, not authorised, a partition that does not exist).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnProduceError {
    /// Its input's partition stops there and is read again from it after a pause that
    /// grows with each attempt, until the cause is mended (or a `dead_letter` added by a
    /// reload). The log and `/health/ready` say so.
    #[default]
    Pause,
    /// It is dropped and counted (`switchyard_route_messages_dropped_total`), and the input
    /// commits past it.
    Drop,
}

/// What a route does with a message whose plugin failed (a trap, a timeout, an open
/// circuit, an undeclared destination; never a `reject`, which is the plugin's answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnPluginError {
    /// It goes to the route's dead-letter output (or is dropped without one).
    #[default]
    DeadLetter,
    /// Its input's partition stops there and is read again from it after a pause that
    /// grows with each attempt, until the plugin is mended: for pipelines where a dead
    /// letter is not acceptable. At-least-once Kafka inputs only.
    Pause,
}
