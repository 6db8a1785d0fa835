//! `switchyard validate` rejects a configuration with an error of each kind, naming the
//! problem and its line and column.

use std::process::Command;

use switchyard_tests::plugins;
use switchyard_tests::procs::Scratch;
use switchyard_tests::switchyard_bin;

/// A valid base configuration; each case replaces one line.
fn base(filter: &str) -> String {
    format!(
        r#"[kafka.main]
bootstrap = "embedded"
[inputs.orders]
kafka = {{ cluster = "main", topics = ["orders"], group = "g" }}
[inputs.feed]
zmq = {{ socket = "pull", bind = ["tcp://127.0.0.1:5999"] }}
[outputs.valid]
kafka = {{ cluster = "main", topic = "orders.valid" }}
[outputs.dead]
kafka = {{ cluster = "main", topic = "orders.dlq" }}
[[routes]]
name = "orders"
from = ["orders"]
plugins = [{{ path = "{filter}", config = {{ field = "a", op = "exists" }} }}]
to = ["valid"]
dead_letter = "dead"
"#
    )
}

fn validate(scratch: &Scratch, name: &str, text: &str) -> (Option<i32>, String) {
    let file = scratch.write(name, text);
    let out = Command::new(switchyard_bin())
        .arg("validate")
        .arg(&file)
        .env_remove("SWITCHYARD_TEST_UNSET")
        .output()
        .expect("run validate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_kind_of_error_is_named_with_its_place() {
    let scratch = Scratch::new("validate");
    let good = base(plugins::JSON_FILTER);
    let (code, err) = validate(&scratch, "good.toml", &good);
    assert_eq!(code, Some(0), "{err}");

    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "syntax",
            "to = [\"valid\"]",
            "to = [\"valid\"",
            "16:1: missing comma between array elements",
        ),
        (
            "unknown-field",
            "dead_letter = \"dead\"",
            "dead_lettr = \"dead\"",
            "unknown field `dead_lettr`",
        ),
        (
            "dangling-output",
            "to = [\"valid\"]",
            "to = [\"vaild\"]",
            "15:7: route `orders`: `to` names no output `vaild`",
        ),
        (
            "dangling-input",
            "from = [\"orders\"]",
            "from = [\"ordres\"]",
            "13:9: route `orders`: no input named `ordres`",
        ),
        (
            "missing-variable",
            "bootstrap = \"embedded\"",
            "bootstrap = \"${SWITCHYARD_TEST_UNSET}\"",
            "2:14: environment variable `SWITCHYARD_TEST_UNSET` is not set",
        ),
        (
            "missing-cluster",
            "cluster = \"main\", topic = \"orders.dlq\"",
            "cluster = \"mian\", topic = \"orders.dlq\"",
            "10:21: output `dead`: no kafka cluster named `mian`",
        ),
        (
            "loop",
            "topic = \"orders.valid\"",
            "topic = \"orders\"",
            "writes to topic `orders` that input `orders` reads: messages would loop",
        ),
        (
            "socket-direction",
            "socket = \"pull\"",
            "socket = \"push\"",
            "6:18: input `feed`: a `push` socket cannot be an input",
        ),
        (
            "endpoint",
            "tcp://127.0.0.1:5999",
            "127.0.0.1:5999",
            "is not a ZeroMQ endpoint",
        ),
        (
            "endpoint-as-one-string",
            "bind = [\"tcp://127.0.0.1:5999\"]",
            "bind = \"127.0.0.1:5999\"",
            "6:33: input `feed`: `127.0.0.1:5999` is not a ZeroMQ endpoint",
        ),
        (
            "endpoint-in-a-list",
            "bind = [\"tcp://127.0.0.1:5999\"]",
            "bind = [\"tcp://127.0.0.1:5998\", \"127.0.0.1:5999\"]",
            "6:58: input `feed`: `127.0.0.1:5999` is not a ZeroMQ endpoint",
        ),
        (
            "endpoint-not-a-string",
            "bind = [\"tcp://127.0.0.1:5999\"]",
            "bind = 5999",
            "an endpoint string or a list of endpoint strings",
        ),
        (
            "reply-on-pull",
            "socket = \"pull\"",
            "socket = \"pull\", reply = \"ack\"",
            "6:7: input `feed`: `reply` applies to `router` inputs only",
        ),
        (
            "reply-limit-without-reply",
            "socket = \"pull\"",
            "socket = \"router\", dedup_window = 10",
            "6:7: input `feed`: `dedup_window` applies with `reply = \"ack\"` only",
        ),
        (
            "reply-timeout",
            "socket = \"pull\"",
            "socket = \"router\", reply = \"ack\", reply_timeout_ms = 0",
            "input `feed`: `reply_timeout_ms` must be from 1 to 600000",
        ),
        (
            "reply-mode",
            "socket = \"pull\"",
            "socket = \"router\", reply = \"always\"",
            "unknown variant `always`, expected `none` or `ack`",
        ),
        (
            "reply-when-without-a-replying-input",
            "dead_letter = \"dead\"",
            "dead_letter = \"dead\"\nreply_when = \"immediate\"",
            "17:14: route `orders`: `reply_when` applies to routes that read a `router` input",
        ),
        (
            "pause-on-plugin-error-from-zeromq",
            "from = [\"orders\"]",
            "from = [\"orders\", \"feed\"]\non_plugin_error = \"pause\"",
            "route `orders`: `on_plugin_error = \"pause\"` needs at-least-once Kafka inputs, \
             which can read a message again; input `feed` is not one",
        ),
        (
            "plugin-dir",
            "[kafka.main]",
            "plugin_dir = \"nowhere\"\n[kafka.main]",
            "1:14: `plugin_dir`:",
        ),
        (
            "plugin-missing",
            plugins::JSON_FILTER,
            "/nonexistent/filter.wasm",
            "plugin file `/nonexistent/filter.wasm` does not exist",
        ),
        (
            "plugin-init",
            "field = \"a\", op = \"exists\"",
            "field = \"a\", op = \"like\"",
            "init failed: setting `op` = \"like\" is invalid",
        ),
    ];
    let long_topic = "t".repeat(250);
    let long_topic_line = format!("topic = \"{long_topic}\"");
    let cases = [
        cases,
        &[
            (
                "topic-character",
                "topic = \"orders.valid\"",
                "topic = \"orders valid\"",
                "8:37: output `valid`: topic `orders valid`: holds ' '; Kafka allows",
            ),
            (
                "topic-length",
                "topic = \"orders.valid\"",
                long_topic_line.as_str(),
                "is 250 characters long; Kafka's limit is 249",
            ),
        ],
    ]
    .concat();
    for (name, from, to, expected) in &cases {
        assert!(good.contains(from), "{name}: base lacks {from}");
        let text = good.replacen(from, to, 1);
        let (code, err) = validate(&scratch, &format!("{name}.toml"), &text);
        assert_eq!(code, Some(1), "{name}: exit status; stderr: {err}");
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in:\n{err}"
        );
        assert!(
            err.contains(&format!("{name}.toml:")),
            "{name}: no file:line in:\n{err}"
        );
    }
}

#[test]
fn a_variables_value_arrives_as_text_and_cannot_add_structure() {
    let scratch = Scratch::new("validate-injection");
    let good = base(plugins::JSON_FILTER);
    let text = good.replacen("group = \"g\"", "group = \"${SWITCHYARD_TEST_EVIL}\"", 1);
    assert_ne!(text, good);
    let file = scratch.write("evil.toml", &text);
    let evil = "g\"\n[inputs.evil]\nzmq = { socket = \"pull\", bind = [\"tcp://127.0.0.1:1\"] }\n#";
    let out = Command::new(switchyard_bin())
        .arg("validate")
        .arg(&file)
        .env("SWITCHYARD_TEST_EVIL", evil)
        .output()
        .expect("run validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("(2 inputs,"),
        "an input was added: {stdout}"
    );

    // Outside a string only a plain scalar may be substituted.
    let bare = good.replacen(
        "bootstrap = \"embedded\"",
        "bootstrap = ${SWITCHYARD_TEST_EVIL}",
        1,
    );
    let file = scratch.write("bare.toml", &bare);
    let out = Command::new(switchyard_bin())
        .arg("validate")
        .arg(&file)
        .env("SWITCHYARD_TEST_EVIL", evil)
        .output()
        .expect("run validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bare.toml:2:13: the value of `${SWITCHYARD_TEST_EVIL}`"),
        "{stderr}"
    );
}

#[test]
fn validate_and_run_refuse_the_same_files_with_the_same_words() {
    let scratch = Scratch::new("validate-agree");
    let good = base(plugins::JSON_FILTER);
    let cluster = "bootstrap = \"embedded\"";
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown-option",
            good.replacen(
                cluster,
                &format!("{cluster}\noptions = {{ \"no.such.option\" = \"1\" }}"),
                1,
            ),
            "3:32: kafka cluster `main`: option `no.such.option`",
        ),
        (
            "bad-value",
            good.replacen(
                cluster,
                &format!("{cluster}\noptions = {{ \"linger.ms\" = \"soon\" }}"),
                1,
            ),
            "3:27: kafka cluster `main`: option `linger.ms`",
        ),
        (
            "refused-combination",
            good.replacen(
                cluster,
                &format!("{cluster}\noptions = {{ \"acks\" = \"1\" }}"),
                1,
            ),
            "librdkafka refuses these options for a producer",
        ),
        (
            "admin-address",
            format!("[admin]\nlisten = \"nonsense\"\n{good}"),
            "2:10: [admin] `listen`: `nonsense` is not an address to listen on",
        ),
        (
            "admin-remote",
            format!("[admin]\nlisten = \"0.0.0.0:9464\"\n{good}"),
            "2:10: [admin] `listen`: 0.0.0.0:9464 can be reached from other machines",
        ),
        (
            "admin-remote-without-token",
            format!("[admin]\nlisten = \"0.0.0.0:9464\"\nallow_remote = true\n{good}"),
            "2:10: [admin] `listen`: 0.0.0.0:9464 with no `token`",
        ),
        (
            "admin-token-file",
            format!("[admin]\ntoken_file = \"secrets/token\"\n{good}"),
            "2:14: [admin] `token_file`: secrets/token is not an absolute path",
        ),
        (
            "timeout",
            good.replacen(
                "op = \"exists\" }",
                "op = \"exists\" }, timeout_ms = 9223372036854775807",
                1,
            ),
            "`timeout_ms` must be from 1 to 600000",
        ),
        (
            "memory",
            good.replacen(
                "op = \"exists\" }",
                "op = \"exists\" }, memory_mb = 100000",
                1,
            ),
            "`memory_mb` must be from 1 to 4096",
        ),
    ];
    for (name, text, expected) in cases {
        assert_ne!(text, &good, "{name}: the case changes nothing");
        let file = scratch.write(&format!("{name}.toml"), text);
        let validated = Command::new(switchyard_bin())
            .arg("validate")
            .arg(&file)
            .output()
            .expect("run validate");
        let said = String::from_utf8_lossy(&validated.stderr);
        assert_eq!(
            validated.status.code(),
            Some(1),
            "{name}: validate passed it:\n{said}"
        );
        assert!(said.contains(expected), "{name}: validate says\n{said}");

        let ran = Command::new(switchyard_bin())
            .arg("run")
            .arg(&file)
            .env("SWITCHYARD_ADMIN_LISTEN", "127.0.0.1:0")
            .output()
            .expect("run switchyard run");
        let said = String::from_utf8_lossy(&ran.stderr);
        assert!(!ran.status.success(), "{name}: run accepted it:\n{said}");
        assert!(said.contains(expected), "{name}: run says\n{said}");
        assert!(
            !said.contains("switchyard running"),
            "{name}: run started:\n{said}"
        );
    }
}

/// An exactly-once input on `cluster`, with `extra` appended to the file.
fn exactly_once(bootstrap: &str, input_extra: &str, extra: &str) -> String {
    format!(
        r#"[kafka.main]
bootstrap = "{bootstrap}"
[kafka.other]
bootstrap = "127.0.0.1:9093"
[inputs.orders]
kafka = {{ cluster = "main", topics = ["orders"], group = "g", delivery = "exactly-once"{input_extra} }}
[outputs.valid]
kafka = {{ cluster = "main", topic = "orders.valid" }}
[outputs.elsewhere]
kafka = {{ cluster = "other", topic = "orders.copy" }}
[outputs.tap]
zmq = {{ socket = "push", bind = "tcp://127.0.0.1:5998" }}
[outputs.dead]
kafka = {{ cluster = "main", topic = "orders.dlq" }}
[[routes]]
name = "orders"
from = ["orders"]
plugins = [{{ path = "{passthrough}" }}]
{extra}
"#,
        passthrough = plugins::PASSTHROUGH
    )
}

#[test]
fn what_cannot_be_exactly_once_is_refused_by_name() {
    let scratch = Scratch::new("validate-exactly-once");
    let real = "127.0.0.1:9092";
    let good = exactly_once(real, "", "to = [\"valid\"]\ndead_letter = \"dead\"");
    let (code, err) = validate(&scratch, "good.toml", &good);
    assert_eq!(code, Some(0), "{err}");

    let cases = [
        (
            "embedded",
            exactly_once("embedded", "", "to = [\"valid\"]"),
            "6:21: input `orders`: `delivery = \"exactly-once\"` needs a real Kafka cluster, and \
             cluster `main` is the embedded one, whose transactions are not real",
        ),
        (
            "zmq-dead-letter",
            exactly_once(real, "", "to = [\"valid\"]\ndead_letter = \"tap\""),
            "20:15: route `orders`: `dead_letter` `tap` is a ZeroMQ socket, which cannot take \
             part in a Kafka transaction of input `orders`",
        ),
        (
            "zmq-to",
            exactly_once(real, "", "to = [\"valid\", \"tap\"]"),
            "route `orders`: `to` `tap` is a ZeroMQ socket",
        ),
        (
            "other-cluster",
            exactly_once(real, "", "destinations = { copy = \"elsewhere\" }"),
            "route `orders`: destination `copy` `elsewhere` writes to cluster `other`, and a \
             transaction of input `orders` can only hold records of its own cluster `main`",
        ),
        (
            "transaction-ms-zero",
            exactly_once(real, ", transaction_ms = 0", "to = [\"valid\"]"),
            "input `orders`: `transaction_ms` is 0; it must be from 1 to 30000",
        ),
        (
            "transaction-ms-at-least-once",
            exactly_once(real, ", transaction_ms = 50", "to = [\"valid\"]")
                .replace(", delivery = \"exactly-once\"", ""),
            "input `orders`: `transaction_ms` applies only with `delivery = \"exactly-once\"`",
        ),
        (
            "delivery-unknown",
            exactly_once(real, "", "to = [\"valid\"]").replace("exactly-once", "exactly-twice"),
            "unknown variant `exactly-twice`, expected `at-least-once` or `exactly-once`",
        ),
    ];
    for (name, text, expected) in &cases {
        let (code, err) = validate(&scratch, &format!("{name}.toml"), text);
        assert_eq!(code, Some(1), "{name}: exit status; stderr: {err}");
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in:\n{err}"
        );
    }
}
