//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their
//! corpora (`tests/tests/fuzz_corpora.rs`): each takes arbitrary bytes, goes through the
//! code that reads untrusted input, and must return without panicking whatever the bytes
//! hold. Not part of the router's interface.

use std::path::Path;

use switchyard_abi::{BatchWriter, decode_result, is_all_pass};

use crate::config::{self, ZmqSocketType};

/// A configuration file from an operator (or an attacker who controls a variable): `${VAR}`
/// interpolation with variables holding quotes, newlines and references, parsing,
/// validation short of loading plugins, every librdkafka configuration built, and the
/// problems rendered as FILE:LINE:COLUMN.
pub fn configuration(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let lookup = |name: &str| match name {
        "QUOTE" => Some("a\"b'c".to_owned()),
        "NEWLINE" => Some("x\n[inputs.evil]\nzmq = {}".to_owned()),
        "NESTED" => Some("${QUOTE}".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let path = Path::new("/nonexistent/fuzz.toml");
    let rendered = match config::parse_with(path, raw, lookup) {
        Ok((config, text)) => {
            let base = config.plugin_base(path);
            let problems = crate::router::check(&config, &base, None);
            config::error(path, &text, problems).to_string()
        }
        Err(e) => e.to_string(),
    };
    std::hint::black_box(rendered);
}

/// What a hostile plugin returns for a batch: the first byte is the batch's message count,
/// the rest the result.
pub fn plugin_result(data: &[u8]) {
    let Some((&count, result)) = data.split_first() else {
        return;
    };
    let count = usize::from(count);
    let _ = is_all_pass(result, count);
    let _ = std::hint::black_box(decode_result(result, count));
}

/// A message as a ZeroMQ input receives it: frames split at each 0xFF byte, decoded on every
/// socket type with and without envelopes, as the input would (a ROUTER's identity and
/// routing envelope, a SUB's topic, a Switchyard envelope of either version, a gateway's
/// request id). Whatever is decoded is then written to a batch, as the plugin would see it.
pub fn zmq_frames(data: &[u8]) {
    let parts: Vec<&[u8]> = data.split(|b| *b == 0xFF).collect();
    let mut writer = BatchWriter::new();
    for kind in [
        ZmqSocketType::Sub,
        ZmqSocketType::Pull,
        ZmqSocketType::Router,
        ZmqSocketType::Dealer,
    ] {
        for envelope in [false, true] {
            let frames = parts
                .iter()
                .map(|p| crate::pipeline::Frame::from(*p))
                .collect();
            if let Ok((record, id)) = crate::zmq::decode_received(frames, kind, envelope) {
                use crate::pipeline::Incoming as _;
                writer.start("fuzz");
                writer.push(
                    &record.origin(),
                    record.key(),
                    record.timestamp(),
                    record.headers(),
                    record.payload(),
                );
                std::hint::black_box((writer.as_bytes(), id));
            }
        }
    }
}

/// A line of `switchyard plugin test` input.
pub fn plugin_test_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = std::hint::black_box(crate::cli::parse_test_line(1, text));
}
