//! Semantic checks of a parsed configuration: every name resolves, every socket has a
//! direction and an endpoint, no route can feed its own input, every plugin loads and
//! accepts its settings. All problems are collected, not just the first.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::{ConfigFile, Located, PluginRef, ZmqEndpoint};
use crate::plugin::{PluginInstance, PluginLimits, PluginRuntime};

/// The longest deadline a plugin call may be given: 10 minutes.
const MAX_TIMEOUT_MS: u64 = 600_000;
/// The most memory a plugin may be given: 4 GiB, all a 32-bit WebAssembly memory can address.
const MAX_MEMORY_MB: usize = 4096;

/// Checks everything a run would, short of connecting. Plugins are loaded and initialised
/// when `runtime` is given; plugin paths are resolved against `base_dir` (from
/// [`ConfigFile::plugin_base`]).
pub fn validate(
    config: &ConfigFile,
    base_dir: &Path,
    runtime: Option<&PluginRuntime>,
) -> Vec<Located> {
    let mut problems = Vec::new();
    let mut p = |at: Located| problems.push(at);

    if let Some(dir) = &config.plugin_dir
        && !base_dir.is_dir()
    {
        p(Located::on(
            dir,
            format!("`plugin_dir`: {} is not a directory", base_dir.display()),
        ));
    }

    if let Some(instance) = &config.instance_id
        && let Some(why) = bad_topic(instance.get_ref())
    {
        p(Located::on(
            instance,
            format!("`instance_id` {}: {why}", shown(instance.get_ref())),
        ));
    }
    let listen = config.admin.listen.get_ref();
    if !listen.trim().is_empty()
        && let Err(problem) = config.admin.access(listen.trim())
    {
        p(problem);
    }
    if !listen.trim().is_empty() && listen.parse::<std::net::SocketAddr>().is_err() {
        p(Located::on(
            &config.admin.listen,
            format!(
                "[admin] `listen`: {} is not an address to listen on (IP:PORT, such as \
                 127.0.0.1:9464; \"\" turns the endpoint off)",
                shown(listen)
            ),
        ));
    }

    for (name, cluster) in &config.kafka {
        if cluster.get_ref().bootstrap.get_ref().trim().is_empty() {
            p(Located::on(
                &cluster.get_ref().bootstrap,
                format!("kafka cluster `{name}`: `bootstrap` is empty"),
            ));
        }
    }
    let cluster_exists = |c: &Spanned<String>, what: &str, p: &mut dyn FnMut(Located)| {
        if !config.kafka.contains_key(c.get_ref()) {
            p(Located::on(
                c,
                format!(
                    "{what}: no kafka cluster named `{}` (declare `[kafka.{}]`)",
                    c.get_ref(),
                    c.get_ref()
                ),
            ));
        }
    };

    for (name, input) in &config.inputs {
        let what = format!("input `{name}`");
        match (&input.get_ref().kafka, &input.get_ref().zmq) {
            (Some(k), None) => {
                let k = k.get_ref();
                cluster_exists(&k.cluster, &what, &mut p);
                if k.topics.get_ref().is_empty() {
                    p(Located::on(&k.topics, format!("{what}: `topics` is empty")));
                }
                for topic in k.topics.get_ref() {
                    if let Some(why) = bad_topic(topic) {
                        p(Located::on(
                            &k.topics,
                            format!("{what}: topic {}: {why}", shown(topic)),
                        ));
                    }
                }
                if k.group.get_ref().trim().is_empty() {
                    p(Located::on(&k.group, format!("{what}: `group` is empty")));
                } else if k.group.get_ref().len() > i16::MAX as usize {
                    p(Located::on(
                        &k.group,
                        format!(
                            "{what}: `group` is {} bytes; Kafka's limit is {}",
                            k.group.get_ref().len(),
                            i16::MAX
                        ),
                    ));
                }
            }
            (None, Some(z)) => check_zmq(&what, z, true, &mut p),
            _ => p(Located::on(
                input,
                format!("{what}: set exactly one of `kafka` or `zmq`"),
            )),
        }
    }
    for (name, output) in &config.outputs {
        let what = format!("output `{name}`");
        match (&output.get_ref().kafka, &output.get_ref().zmq) {
            (Some(k), None) => {
                let k = k.get_ref();
                cluster_exists(&k.cluster, &what, &mut p);
                if let Some(why) = bad_topic(k.topic.get_ref()) {
                    p(Located::on(
                        &k.topic,
                        format!("{what}: topic {}: {why}", shown(k.topic.get_ref())),
                    ));
                }
            }
            (None, Some(z)) => check_zmq(&what, z, false, &mut p),
            _ => p(Located::on(
                output,
                format!("{what}: set exactly one of `kafka` or `zmq`"),
            )),
        }
    }

    let mut names = BTreeSet::new();
    for route in &config.routes {
        let r = route.get_ref();
        let rname = r.name.get_ref();
        let what = format!("route `{rname}`");
        if !names.insert(rname.clone()) {
            p(Located::on(
                &r.name,
                format!("{what}: another route has the same name"),
            ));
        }
        if r.from.is_empty() {
            p(Located::on(route, format!("{what}: `from` names no input")));
        }
        for input in &r.from {
            if !config.inputs.contains_key(input.get_ref()) {
                p(Located::on(
                    input,
                    format!("{what}: no input named `{}`", input.get_ref()),
                ));
            }
        }
        if r.to.is_empty() && r.destinations.is_empty() {
            p(Located::on(
                route,
                format!("{what}: messages go nowhere: set `to` or `destinations`"),
            ));
        }
        for (role, output) in r.targets() {
            let Some(out) = config.outputs.get(output.get_ref()) else {
                p(Located::on(
                    output,
                    format!("{what}: {role} names no output `{}`", output.get_ref()),
                ));
                continue;
            };
            for input in &r.from {
                if let Some(inp) = config.inputs.get(input.get_ref())
                    && let Some(why) = feeds_back(out.get_ref(), inp.get_ref())
                {
                    p(Located::on(
                        output,
                        format!(
                            "{what}: {role} `{}` {why} that input `{}` reads: messages would loop",
                            output.get_ref(),
                            input.get_ref()
                        ),
                    ));
                }
            }
        }
        if let Some(when) = &r.reply_when {
            let replies = r.from.iter().any(|input| {
                config
                    .inputs
                    .get(input.get_ref())
                    .and_then(|i| i.get_ref().zmq.as_ref())
                    .is_some_and(|z| z.get_ref().reply == super::ReplyMode::Ack)
            });
            if !replies {
                p(Located::on(
                    when,
                    format!(
                        "{what}: `reply_when` applies to routes that read a `router` input with `reply = \"ack\"`"
                    ),
                ));
            }
        }
        if let Some(on) = &r.on_plugin_error
            && *on.get_ref() == super::OnPluginError::Pause
        {
            // Only a Kafka input can read a message again; an exactly-once one aborts
            // instead.
            let rereadable = |input: &Spanned<String>| {
                config
                    .inputs
                    .get(input.get_ref())
                    .and_then(|i| i.get_ref().kafka.as_ref())
                    .is_some_and(|k| !k.get_ref().exactly_once())
            };
            if let Some(input) = r.from.iter().find(|i| !rereadable(i)) {
                p(Located::on(
                    on,
                    format!(
                        "{what}: `on_plugin_error = \"pause\"` needs at-least-once Kafka inputs, \
                         which can read a message again; input `{}` is not one",
                        input.get_ref()
                    ),
                ));
            }
        }
        for plugin in &r.plugins {
            check_plugin(&what, plugin, base_dir, runtime, &mut p);
        }
    }
    super::transactions::check(config, &mut p);
    problems
}

/// Why Kafka would refuse `topic` as a topic name, if it would: empty, longer than 249
/// characters, `.` or `..`, or a character other than ASCII letters, digits, `.`, `_`, `-`.
fn bad_topic(topic: &str) -> Option<String> {
    if topic.is_empty() {
        Some("is empty".to_owned())
    } else if topic.len() > 249 {
        Some(format!(
            "is {} characters long; Kafka's limit is 249",
            topic.len()
        ))
    } else if topic == "." || topic == ".." {
        Some("cannot be `.` or `..`".to_owned())
    } else {
        topic
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .map(|c| format!("holds {c:?}; Kafka allows ASCII letters, digits, `.`, `_` and `-`"))
    }
}

/// A value for a message, in backticks, cut to its first 60 characters when it is longer.
fn shown(value: &str) -> String {
    const MAX: usize = 60;
    if value.chars().count() <= MAX {
        format!("`{value}`")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("`{head}…` ({} bytes)", value.len())
    }
}

/// Why an output feeds an input, if it does: the same Kafka topic on the same cluster, or
/// the same ZeroMQ endpoint.
fn feeds_back(output: &super::OutputConfig, input: &super::InputConfig) -> Option<String> {
    if let (Some(o), Some(i)) = (&output.kafka, &input.kafka) {
        let (o, i) = (o.get_ref(), i.get_ref());
        if o.cluster.get_ref() == i.cluster.get_ref()
            && i.topics.get_ref().contains(o.topic.get_ref())
        {
            return Some(format!("writes to topic `{}`", o.topic.get_ref()));
        }
    }
    if let (Some(o), Some(i)) = (&output.zmq, &input.zmq) {
        let endpoints = |z: &ZmqEndpoint| -> BTreeSet<String> {
            z.bind
                .iter()
                .chain(&z.connect)
                .map(|e| e.get_ref().clone())
                .collect()
        };
        if let Some(shared) = endpoints(o.get_ref())
            .intersection(&endpoints(i.get_ref()))
            .next()
        {
            return Some(format!("uses endpoint `{shared}`"));
        }
    }
    None
}

fn check_zmq(what: &str, z: &Spanned<ZmqEndpoint>, input: bool, p: &mut dyn FnMut(Located)) {
    let e = z.get_ref();
    let socket = *e.socket.get_ref();
    if socket.is_input() != input {
        let allowed = if input {
            "sub, pull or router"
        } else {
            "pub, push or dealer"
        };
        p(Located::on(
            &e.socket,
            format!(
                "{what}: a `{}` socket cannot be an {}; use {allowed}",
                socket.as_str(),
                if input { "input" } else { "output" }
            ),
        ));
    }
    if e.bind.is_empty() && e.connect.is_empty() {
        p(Located::on(
            z,
            format!("{what}: set `bind` or `connect` (or both)"),
        ));
    }
    for endpoint in e.bind.iter().chain(&e.connect) {
        let ok = ["tcp://", "ipc://", "inproc://"].iter().any(|scheme| {
            endpoint
                .get_ref()
                .strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty())
        });
        if !ok {
            p(Located::on(
                endpoint,
                format!(
                    "{what}: {} is not a ZeroMQ endpoint (tcp://HOST:PORT, ipc://PATH or inproc://NAME)",
                    shown(endpoint.get_ref())
                ),
            ));
        }
    }
    if !e.subscribe.is_empty() && socket != super::ZmqSocketType::Sub {
        p(Located::on(
            z,
            format!("{what}: `subscribe` applies to `sub` sockets only"),
        ));
    }
    if e.hwm.is_some_and(|h| h < 0) {
        p(Located::on(
            z,
            format!("{what}: `hwm` must be 0 (no limit) or more"),
        ));
    }
    if e.linger_ms.is_some_and(|l| l < 0) {
        p(Located::on(
            z,
            format!("{what}: `linger_ms` must be finite (0 or more)"),
        ));
    }
    if e.when_full != super::WhenFull::Drop && socket != super::ZmqSocketType::Pub {
        p(Located::on(
            z,
            format!("{what}: `when_full` applies to `pub` outputs only (the others block)"),
        ));
    }
    check_reply(what, z, p);
    match e.max_message_bytes {
        Some(_) if !input => p(Located::on(
            z,
            format!("{what}: `max_message_bytes` applies to inputs only"),
        )),
        Some(n) if n < 1 => p(Located::on(
            z,
            format!("{what}: `max_message_bytes` must be 1 or more"),
        )),
        _ => {}
    }
}

/// The gateway's keys: `reply` on a `router` input only, its limits with `reply = "ack"`.
fn check_reply(what: &str, z: &Spanned<ZmqEndpoint>, p: &mut dyn FnMut(Located)) {
    let e = z.get_ref();
    let socket = *e.socket.get_ref();
    if e.reply != super::ReplyMode::None && socket != super::ZmqSocketType::Router {
        p(Located::on(
            z,
            format!(
                "{what}: `reply` applies to `router` inputs only (a `{}` socket cannot answer)",
                socket.as_str()
            ),
        ));
        return;
    }
    let limits = [
        ("reply_timeout_ms", e.reply_timeout_ms.is_some()),
        ("max_in_flight", e.max_in_flight.is_some()),
        ("dedup_window", e.dedup_window.is_some()),
    ];
    if e.reply != super::ReplyMode::Ack {
        for (key, set) in limits {
            if set {
                p(Located::on(
                    z,
                    format!("{what}: `{key}` applies with `reply = \"ack\"` only"),
                ));
            }
        }
        return;
    }
    if e.reply_timeout_ms
        .is_some_and(|t| !(1..=MAX_TIMEOUT_MS).contains(&t))
    {
        p(Located::on(
            z,
            format!("{what}: `reply_timeout_ms` must be from 1 to {MAX_TIMEOUT_MS} (10 minutes)"),
        ));
    }
    if e.max_in_flight == Some(0) {
        p(Located::on(
            z,
            format!("{what}: `max_in_flight` must be 1 or more"),
        ));
    }
    if e.dedup_window
        .is_some_and(|w| w > ZmqEndpoint::MAX_DEDUP_WINDOW)
    {
        p(Located::on(
            z,
            format!(
                "{what}: `dedup_window` must be at most {}",
                ZmqEndpoint::MAX_DEDUP_WINDOW
            ),
        ));
    }
}

fn check_plugin(
    what: &str,
    plugin: &Spanned<PluginRef>,
    base_dir: &Path,
    runtime: Option<&PluginRuntime>,
    p: &mut dyn FnMut(Located),
) {
    let r = plugin.get_ref();
    let path = base_dir.join(r.path.get_ref());
    if !path.is_file() {
        p(Located::on(
            &r.path,
            format!(
                "{what}: plugin file {} does not exist",
                shown(&path.display().to_string())
            ),
        ));
        return;
    }
    if r.timeout_ms
        .is_some_and(|t| !(1..=MAX_TIMEOUT_MS).contains(&t))
    {
        p(Located::on(
            plugin,
            format!("{what}: `timeout_ms` must be from 1 to {MAX_TIMEOUT_MS} (10 minutes)"),
        ));
    }
    if r.memory_mb
        .is_some_and(|m| !(1..=MAX_MEMORY_MB).contains(&m))
    {
        p(Located::on(
            plugin,
            format!(
                "{what}: `memory_mb` must be from 1 to {MAX_MEMORY_MB} (a 32-bit plugin's whole address space)"
            ),
        ));
    }
    let Some(runtime) = runtime else { return };
    let limits = limits(r);
    match runtime.load(&path, limits) {
        Err(e) => p(Located::on(&r.path, format!("{what}: {e}"))),
        Ok(compiled) => {
            if let Err(e) = PluginInstance::new(compiled, r.settings()) {
                p(Located::on(
                    &r.path,
                    format!("{what}: plugin {}: {e}", shown(r.path.get_ref())),
                ));
            }
        }
    }
}

/// The limits a plugin reference asks for, with defaults.
pub fn limits(r: &PluginRef) -> PluginLimits {
    let defaults = PluginLimits::default();
    PluginLimits {
        timeout: r.timeout_ms.map_or(defaults.timeout, Duration::from_millis),
        memory_bytes: r
            .memory_mb
            .map_or(defaults.memory_bytes, |mb| mb.saturating_mul(1 << 20)),
    }
}
