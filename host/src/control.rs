//! The messages that steer a running router: a request to reload (from SIGHUP, the file
//! watcher or `POST /reload`), what a reload did, and why one was refused. A leaf: the
//! router, the admin endpoint and the watcher all speak it, and it imports none of them.

use std::fmt;
use std::time::Duration;

/// A request to reload, and where to send the outcome.
#[derive(Debug)]
pub struct Request {
    /// What asked: `sighup`, `watch` or `http`.
    pub trigger: &'static str,
    /// Where the outcome goes, if someone waits for it.
    pub reply: Option<tokio::sync::oneshot::Sender<Result<ReloadReport, ReloadError>>>,
}

impl Request {
    /// A request whose outcome only the log and the metrics report.
    pub fn unanswered(trigger: &'static str) -> Self {
        Request {
            trigger,
            reply: None,
        }
    }
}

/// What a reload did; `POST /reload` answers with it, as JSON.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadReport {
    /// The file and its plugins are as they were: nothing was swapped, and the generation
    /// stays. In JSON: `"result": "unchanged"`, else `"ok"`.
    #[serde(rename = "result", serialize_with = "result_word")]
    pub unchanged: bool,
    /// The new generation.
    pub generation: u64,
    /// The new version.
    pub version: String,
    /// From reading the file to the last input switching over. In JSON: `took_ms`.
    #[serde(rename = "took_ms", serialize_with = "milliseconds")]
    pub took: Duration,
    /// What happened to the inputs.
    pub inputs: InputChanges,
    /// What happened to the outputs.
    pub outputs: OutputChanges,
}

/// The inputs a reload touched, by name.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct InputChanges {
    /// Inputs that kept running and switched to the new routes.
    pub kept: Vec<String>,
    /// Inputs started (new, or changed).
    pub started: Vec<String>,
    /// Inputs drained and stopped (removed, or changed).
    pub stopped: Vec<String>,
}

/// The outputs a reload touched, by name.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OutputChanges {
    /// Outputs opened.
    pub opened: Vec<String>,
    /// Outputs flushed and closed.
    pub closed: Vec<String>,
}

fn result_word<S: serde::Serializer>(unchanged: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *unchanged { "unchanged" } else { "ok" })
}

fn milliseconds<S: serde::Serializer>(took: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(took.as_secs_f64() * 1000.0)
}

/// Why a reload was refused. In every case the running set stays as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// The file cannot be read or parsed, or its values are invalid; the message names
    /// each problem with FILE:LINE:COLUMN.
    Invalid(String),
    /// The file is valid but the new set cannot be built: a plugin does not compile or its
    /// `init` fails, an output cannot be opened, a cluster cannot be reached.
    Build(String),
}

impl ReloadError {
    /// A short name for logs and JSON: `invalid` or `build`.
    pub fn kind(&self) -> &'static str {
        match self {
            ReloadError::Invalid(_) => "invalid",
            ReloadError::Build(_) => "build",
        }
    }

    /// The full explanation.
    pub fn message(&self) -> &str {
        match self {
            ReloadError::Invalid(m) | ReloadError::Build(m) => m,
        }
    }
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ReloadError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_as_the_admin_endpoint_documents_it() {
        let report = ReloadReport {
            unchanged: false,
            generation: 3,
            version: "5d10e542ca95".into(),
            took: Duration::from_micros(12_500),
            inputs: InputChanges {
                kept: vec!["orders".into()],
                started: vec!["prices".into()],
                stopped: vec![],
            },
            outputs: OutputChanges {
                opened: vec!["alerts".into()],
                closed: vec![],
            },
        };
        assert_eq!(
            serde_json::to_value(&report).expect("JSON"),
            serde_json::json!({
                "result": "ok", "generation": 3, "version": "5d10e542ca95", "took_ms": 12.5,
                "inputs": {"kept": ["orders"], "started": ["prices"], "stopped": []},
                "outputs": {"opened": ["alerts"], "closed": []},
            })
        );
        let unchanged = ReloadReport {
            unchanged: true,
            ..ReloadReport::default()
        };
        assert_eq!(
            serde_json::to_value(&unchanged).expect("JSON")["result"],
            "unchanged"
        );
    }
}
