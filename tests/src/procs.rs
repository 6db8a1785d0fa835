//! Child processes of the real binary: the embedded Kafka cluster (`switchyard kafka-dev`)
//! and routers (`switchyard run`), stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::switchyard_bin;

/// The logs at `paths`, each under its file's name, for a failed test to print.
pub fn logs(paths: &[&Path]) -> String {
    paths
        .iter()
        .map(|p| {
            format!(
                "{}:\n{}",
                p.display(),
                std::fs::read_to_string(p).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A child process killed when dropped.
pub struct Proc {
    child: Child,
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name: `TERM`, `INT`, `KILL`, `HUP`, `STOP` or `CONT`.
    pub fn signal(&self, name: &str) {
        let signal = match name {
            "TERM" => libc::SIGTERM,
            "INT" => libc::SIGINT,
            "KILL" => libc::SIGKILL,
            "HUP" => libc::SIGHUP,
            "STOP" => libc::SIGSTOP,
            "CONT" => libc::SIGCONT,
            other => panic!("unknown signal {other}"),
        };
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid this process spawned and has not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill -{name} failed");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl From<Child> for Proc {
    /// Takes charge of a child spawned elsewhere (the benchmark harness's routers and
    /// peers): killed when dropped.
    fn from(child: Child) -> Self {
        Proc { child }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `switchyard kafka-dev` with these topics (`NAME:PARTITIONS`); returns the process and
/// its bootstrap address.
pub fn kafka_dev(topics: &[&str]) -> (Proc, String) {
    let mut cmd = Command::new(switchyard_bin());
    cmd.arg("kafka-dev");
    for t in topics {
        cmd.args(["--topic", t]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kafka-dev");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the bootstrap address");
    let bootstrap = line.trim().to_owned();
    assert!(!bootstrap.is_empty(), "kafka-dev printed no address");
    (Proc { child }, bootstrap)
}

/// `switchyard run CONFIG`, its log written to `log`.
pub fn router(config: &Path, log: &Path) -> Proc {
    router_env(config, log, &[])
}

/// `switchyard run CONFIG` with its admin endpoint on a free loopback port: the process
/// and the endpoint's address.
pub fn router_with_admin(config: &Path, log: &Path) -> (Proc, String) {
    let admin = format!("127.0.0.1:{}", crate::free_port());
    let proc = router_env(
        config,
        log,
        &[("SWITCHYARD_ADMIN_LISTEN".into(), admin.clone())],
    );
    (proc, admin)
}

/// `switchyard run CONFIG` with extra environment variables.
pub fn router_env(config: &Path, log: &Path, env: &[(String, String)]) -> Proc {
    let log_file = std::fs::File::create(log).expect("create log file");
    let child = Command::new(switchyard_bin())
        .arg("run")
        .arg(config)
        // Admin endpoints on ports of their own; a test that wants one sets it in `env`.
        .env("SWITCHYARD_ADMIN_LISTEN", "127.0.0.1:0")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(
            "SWITCHYARD_LOG",
            std::env::var("SWITCHYARD_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start switchyard run");
    Proc { child }
}

/// A scratch directory for one test, removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A fresh directory whose name starts with `switchyard-NAME-`.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("switchyard-{name}-"))
            .tempdir()
            .expect("create scratch dir");
        Scratch { dir }
    }

    /// A path inside the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Writes a file and returns its path.
    pub fn write(&self, file: &str, contents: &str) -> PathBuf {
        let path = self.path(file);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }
}
