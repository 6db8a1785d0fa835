//! What `delivery = "exactly-once"` needs of the file: a real Kafka cluster, and routes
//! whose every output (dead letters included) is a Kafka topic on the input's own cluster,
//! so that one transaction can hold them all with the input's offsets. Anything else is
//! refused by name, never quietly run at-least-once.

use serde::Deserialize;

use super::{ConfigFile, KafkaInput, Located};

impl KafkaInput {
    /// How long a transaction stays open unless the input says otherwise.
    pub const TRANSACTION_MS: u64 = 100;
    /// The longest a transaction may stay open: well inside the producer's
    /// `transaction.timeout.ms` (60 s), after which the broker aborts it.
    pub const MAX_TRANSACTION_MS: u64 = 30_000;

    /// Whether the input is exactly-once.
    pub fn exactly_once(&self) -> bool {
        self.delivery
            .as_ref()
            .is_some_and(|d| *d.get_ref() == Delivery::ExactlyOnce)
    }
}

/// What a Kafka input promises about its records' outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Every record's outputs are written at least once: a crash can write some twice.
    #[default]
    AtLeastOnce,
    /// Every record's outputs are written exactly once, as seen by `read_committed`
    /// consumers: Kafka transactions.
    ExactlyOnce,
}

/// The problems of the file's exactly-once inputs, and of `transaction_ms` where it does
/// not apply.
pub(super) fn check(config: &ConfigFile, p: &mut dyn FnMut(Located)) {
    for (name, input) in &config.inputs {
        let Some(kafka) = &input.get_ref().kafka else {
            continue;
        };
        let k = kafka.get_ref();
        let what = format!("input `{name}`");
        if !k.exactly_once() {
            if let Some(ms) = &k.transaction_ms {
                p(Located::on(
                    ms,
                    format!(
                        "{what}: `transaction_ms` applies only with `delivery = \"exactly-once\"`"
                    ),
                ));
            }
            continue;
        }
        if let Some(ms) = &k.transaction_ms
            && !(1..=KafkaInput::MAX_TRANSACTION_MS).contains(ms.get_ref())
        {
            p(Located::on(
                ms,
                format!(
                    "{what}: `transaction_ms` is {}; it must be from 1 to {} (the broker aborts \
                     a transaction open for longer than the producer's `transaction.timeout.ms`)",
                    ms.get_ref(),
                    KafkaInput::MAX_TRANSACTION_MS
                ),
            ));
        }
        let cluster = k.cluster.get_ref();
        if config
            .kafka
            .get(cluster)
            .is_some_and(|c| c.get_ref().bootstrap.get_ref().trim() == "embedded")
        {
            p(Located::on(
                &k.cluster,
                format!(
                    "{what}: `delivery = \"exactly-once\"` needs a real Kafka cluster, and \
                     cluster `{cluster}` is the embedded one, whose transactions are not \
                     real (it accepts them and guarantees nothing); start Apache Kafka with \
                     `switchyard kafka-dev --apache` and give its address as `bootstrap`"
                ),
            ));
        }
        for route in &config.routes {
            let r = route.get_ref();
            if !r.from.iter().any(|f| f.get_ref() == name) {
                continue;
            }
            for (role, output) in r.targets() {
                let Some(out) = config.outputs.get(output.get_ref()) else {
                    continue;
                };
                let why = match (&out.get_ref().kafka, &out.get_ref().zmq) {
                    (Some(o), _) if o.get_ref().cluster.get_ref() != cluster => format!(
                        "writes to cluster `{}`, and a transaction of input `{name}` can only \
                         hold records of its own cluster `{cluster}`",
                        o.get_ref().cluster.get_ref()
                    ),
                    (None, Some(_)) => format!(
                        "is a ZeroMQ socket, which cannot take part in a Kafka transaction of \
                         input `{name}`"
                    ),
                    _ => continue,
                };
                p(Located::on(
                    output,
                    format!(
                        "route `{}`: {role} `{}` {why}; {what} is `delivery = \"exactly-once\"`, \
                         so every output of the routes reading it must be a Kafka topic of its \
                         cluster (read the input at-least-once, or route through another input)",
                        r.name.get_ref(),
                        output.get_ref()
                    ),
                ));
            }
        }
    }
}
