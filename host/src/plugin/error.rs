//! Plugin failures and their classification.

use std::path::PathBuf;
use std::time::Duration;

/// What kind of failure a [`PluginError`] is: the value of the `error-kind` dead-letter
/// header and of the `kind` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The plugin could not be read, compiled or linked.
    Load,
    /// `init` returned an error or trapped.
    Init,
    /// A call ran past its deadline.
    Timeout,
    /// The plugin tried to grow its memory past its cap.
    Memory,
    /// The plugin overflowed its stack.
    Stack,
    /// Any other trap: a panic, `unreachable`, an out-of-bounds access.
    Trap,
    /// The plugin's result did not follow the wire format or had the wrong count.
    BadOutput,
    /// The plugin emitted to a destination its route does not declare.
    Destination,
    /// The plugin was not called: every message of its last batches failed, and it rests
    /// before the next try (its circuit is open).
    Unavailable,
}

impl ErrorKind {
    /// The kind's name as users see it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Load => "load",
            ErrorKind::Init => "init",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Memory => "memory",
            ErrorKind::Stack => "stack",
            ErrorKind::Trap => "trap",
            ErrorKind::BadOutput => "bad-output",
            ErrorKind::Destination => "destination",
            ErrorKind::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin failure.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin file could not be read.
    #[error("cannot read plugin {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a component the runtime can compile.
    #[error("{} is not a valid plugin component: {message}", path.display())]
    Compile {
        /// The file.
        path: PathBuf,
        /// The compiler's message.
        message: String,
    },
    /// The component imports something the sandbox does not grant.
    #[error(
        "{} imports `{import}`, which Switchyard does not grant: plugins may import only \
         `switchyard:plugin/host` and WASI 0.2 (which runs with no files, sockets or environment)",
        path.display()
    )]
    Import {
        /// The file.
        path: PathBuf,
        /// The refused import.
        import: String,
    },
    /// The component could not be linked or instantiated.
    #[error("{} cannot be instantiated: {message}", path.display())]
    Link {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `init` failed.
    #[error("init failed: {0}")]
    Init(String),
    /// The call ran past its deadline.
    #[error("call interrupted after its {}ms deadline", .0.as_millis())]
    Timeout(Duration),
    /// The plugin tried to grow its memory past its cap.
    #[error("plugin exceeded its memory limit of {limit} bytes")]
    Memory {
        /// The cap in bytes.
        limit: usize,
    },
    /// The plugin overflowed its stack.
    #[error("plugin overflowed its stack")]
    Stack,
    /// Another trap.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// A malformed result.
    #[error("plugin returned a malformed result: {0}")]
    BadOutput(String),
    /// An emit to an undeclared destination.
    #[error("plugin emitted to `{0}`, which the route does not declare as a destination")]
    Destination(String),
    /// Not called: its circuit is open.
    #[error(
        "plugin not called: every message of its last {failures} batches failed; it is \
         tried again in {} ms",
        retry_in.as_millis()
    )]
    Unavailable {
        /// Failed batches in a row.
        failures: u32,
        /// When it is tried again.
        retry_in: Duration,
    },
}

impl PluginError {
    /// The failure's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PluginError::Read { .. }
            | PluginError::Compile { .. }
            | PluginError::Import { .. }
            | PluginError::Link { .. } => ErrorKind::Load,
            PluginError::Init(_) => ErrorKind::Init,
            PluginError::Timeout(_) => ErrorKind::Timeout,
            PluginError::Memory { .. } => ErrorKind::Memory,
            PluginError::Stack => ErrorKind::Stack,
            PluginError::Trap(_) => ErrorKind::Trap,
            PluginError::BadOutput(_) => ErrorKind::BadOutput,
            PluginError::Unavailable { .. } => ErrorKind::Unavailable,
            PluginError::Destination(_) => ErrorKind::Destination,
        }
    }
}
