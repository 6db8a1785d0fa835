//! librdkafka's log lines and client errors, written through `tracing` at most once per
//! kind (level and facility, or error code) per [`EVERY`], with a count of the lines held
//! back since: an outage says what happens without a line per retry.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// The shortest time between two lines of one kind.
const EVERY: Duration = Duration::from_secs(10);

/// When each kind was last written, and how many of it were held back since.
fn kinds() -> &'static Mutex<HashMap<String, (Instant, u64)>> {
    static KINDS: OnceLock<Mutex<HashMap<String, (Instant, u64)>>> = OnceLock::new();
    KINDS.get_or_init(Mutex::default)
}

/// Whether a line of `kind` is written now: `Some` with the number held back since the
/// last one, or `None` to hold this one back.
fn admit(kind: String) -> Option<u64> {
    let mut kinds = kinds().lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    match kinds.get_mut(&kind) {
        Some((last, held)) if now.duration_since(*last) < EVERY => {
            *held += 1;
            None
        }
        Some((last, held)) => {
            *last = now;
            Some(std::mem::take(held))
        }
        None => {
            kinds.insert(kind, (now, 0));
            Some(0)
        }
    }
}

/// What to add to a line after `held` like it were held back.
fn held_back(held: u64) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(" ({held} more like it in the last {} s)", EVERY.as_secs())
    }
}

/// A librdkafka log line (`ClientContext::log`).
pub fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    if matches!(level, RDKafkaLogLevel::Debug) {
        tracing::debug!(target: "librdkafka", "{facility} {message}");
        return;
    }
    let Some(held) = admit(format!("{level:?} {facility}")) else {
        return;
    };
    let more = held_back(held);
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", "{facility} {message}{more}");
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", "{facility} {message}{more}");
        }
        _ => tracing::info!(target: "librdkafka", "{facility} {message}{more}"),
    }
}

/// A client error librdkafka reports (`ClientContext::error`): the brokers down, a fatal
/// error.
pub fn error(error: &KafkaError, reason: &str) {
    let kind = match error.rdkafka_error_code() {
        Some(code) => format!("error {code:?}"),
        None => format!("error {error}"),
    };
    if let Some(held) = admit(kind) {
        tracing::error!(target: "librdkafka", "{error}: {reason}{}", held_back(held));
    }
}

/// A record output `output` could not deliver (`error`), with what becomes of it
/// (`then`): at WARN for a refusal the route dead-letters, at ERROR otherwise, at most one
/// line per output and error per [`EVERY`].
pub fn delivery(output: &str, error: &KafkaError, refused: bool, then: &str) {
    let code = error
        .rdkafka_error_code()
        .map_or_else(|| "other".to_owned(), |c| format!("{c:?}"));
    let Some(held) = admit(format!("delivery {output} {code}")) else {
        return;
    };
    let more = held_back(held);
    if refused {
        tracing::warn!(output, error = %error, "{then}{more}");
    } else {
        tracing::error!(output, error = %error, "{then}{more}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval() {
        let kind = || "test kind".to_owned();
        assert_eq!(admit(kind()), Some(0));
        assert_eq!(admit(kind()), None);
        assert_eq!(admit(kind()), None);
        assert_eq!(admit("another kind".to_owned()), Some(0));
        // The interval passes: the next line says how many were held back.
        if let Some((last, _)) = kinds()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut("test kind")
        {
            *last -= EVERY;
        }
        assert_eq!(admit(kind()), Some(2));
        assert_eq!(admit(kind()), None);
    }
}
