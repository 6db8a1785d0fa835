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

/// What a reload did.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// The file and its plugins are as they were: nothing was swapped, and the generation
    /// stays.
    pub unchanged: bool,
    /// The new generation.
    pub generation: u64,
    /// The new version.
    pub version: String,
    /// Inputs that kept running and switched to the new routes.
    pub inputs_kept: Vec<String>,
    /// Inputs started (new, or changed).
    pub inputs_started: Vec<String>,
    /// Inputs drained and stopped (removed, or changed).
    pub inputs_stopped: Vec<String>,
    /// Outputs opened.
    pub outputs_opened: Vec<String>,
    /// Outputs flushed and closed.
    pub outputs_closed: Vec<String>,
    /// From reading the file to the last input switching over.
    pub took: Duration,
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
