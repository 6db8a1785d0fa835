//! Test fixture: for every message, tries to read the environment, the arguments, a file,
//! the current directory and the network, and emits a report of what succeeded. Inside
//! Switchyard every attempt must fail.

use std::io::Read;

use switchyard_plugin_sdk::{Config, Message, Outcome, Output, Plugin, export};

pub struct SandboxProbe;

fn attempt<T>(what: &str, result: std::io::Result<T>) -> String {
    match result {
        Ok(_) => format!("{what}=granted"),
        Err(_) => format!("{what}=denied"),
    }
}

impl Plugin for SandboxProbe {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(SandboxProbe)
    }

    fn process(&mut self, message: &Message<'_>) -> Outcome {
        let path = message.payload_str().unwrap_or("/etc/hostname");
        let report = [
            format!("env={}", std::env::vars_os().count()),
            format!("args={}", std::env::args_os().count()),
            attempt(
                "file",
                std::fs::File::open(path).and_then(|mut f| f.read(&mut [0u8; 1])),
            ),
            attempt("dir", std::fs::read_dir(".")),
            attempt("tcp", std::net::TcpStream::connect("127.0.0.1:1")),
            attempt("listen", std::net::TcpListener::bind("127.0.0.1:0")),
            attempt("udp", std::net::UdpSocket::bind("127.0.0.1:0")),
        ];
        Outcome::Emit(vec![Output::new(report.join(" "))])
    }
}

export!(SandboxProbe);
