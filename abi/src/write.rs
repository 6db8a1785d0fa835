//! Encoding: a batch (host side) and a result (guest side), into reusable buffers.

use crate::{
    ABSENT, BATCH_VERSION_NULLS, Header, MessageBuf, Origin, Output, RESULT_VERSION_NULLS, VERSION,
    VERSION_REPLY,
};

#[inline]
fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    // The host never builds a field of 4 GiB; saturating keeps the writer total.
    let len = u32::try_from(bytes.len()).unwrap_or(ABSENT - 1);
    put_u32(buf, len);
    buf.extend_from_slice(&bytes[..len as usize]);
}

#[inline]
fn put_opt_bytes(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => put_bytes(buf, b),
        None => put_u32(buf, ABSENT),
    }
}

fn put_opt_i64(buf: &mut Vec<u8>, v: Option<i64>) {
    buf.push(u8::from(v.is_some()));
    buf.extend_from_slice(&v.unwrap_or(0).to_le_bytes());
}

fn put_opt_i32(buf: &mut Vec<u8>, v: Option<i32>) {
    buf.push(u8::from(v.is_some()));
    buf.extend_from_slice(&v.unwrap_or(0).to_le_bytes());
}

fn put_headers(buf: &mut Vec<u8>, headers: &[Header]) {
    encode_headers(buf, headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())));
}

/// Appends a header block, `u32 header-count | u32 header-size | header{header-count}`,
/// to `buf`; a `None` value is written as absent (a null value). The ZeroMQ envelope
/// carries headers in this block too.
pub fn encode_headers<'h>(
    buf: &mut Vec<u8>,
    headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
) {
    let count_at = buf.len();
    put_u32(buf, 0);
    put_u32(buf, 0);
    let mut count = 0u32;
    for (name, value) in headers {
        put_bytes(buf, name.as_bytes());
        put_opt_bytes(buf, value);
        count += 1;
    }
    let size = u32::try_from(buf.len() - count_at - 8).unwrap_or(u32::MAX);
    buf[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    buf[count_at + 4..count_at + 8].copy_from_slice(&size.to_le_bytes());
}

/// Writes an origin's fields and returns its kind.
#[inline]
fn put_origin(buf: &mut Vec<u8>, origin: &Origin<'_>) -> u8 {
    match *origin {
        Origin::None => 0,
        Origin::Kafka {
            topic,
            partition,
            offset,
        } => {
            put_bytes(buf, topic.as_bytes());
            buf.extend_from_slice(&partition.to_le_bytes());
            buf.extend_from_slice(&offset.to_le_bytes());
            1
        }
        Origin::Zmq {
            endpoint,
            socket_type,
            topic,
            peer,
        } => {
            put_bytes(buf, endpoint.as_bytes());
            put_bytes(buf, socket_type.as_bytes());
            put_opt_bytes(buf, topic);
            put_opt_bytes(buf, peer);
            2
        }
    }
}

/// Size of a message's fixed part, after its `size` field.
pub(crate) const FIXED: usize = 32;

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Builds a batch in a buffer that is reused from one batch to the next.
#[derive(Debug)]
pub struct BatchWriter {
    buf: Vec<u8>,
    count: u32,
    /// Whether null payloads and header values are written as such (batch version 2), or
    /// as empty ones (version 1, for plugins of contract 0.1.0 and 0.1.1).
    nulls: bool,
}

impl Default for BatchWriter {
    fn default() -> Self {
        BatchWriter::new()
    }
}

impl BatchWriter {
    /// An empty writer of the latest batch version; call [`BatchWriter::start`] before
    /// pushing messages.
    pub fn new() -> Self {
        BatchWriter::of_version(BATCH_VERSION_NULLS)
    }

    /// An empty writer of batch `version`: [`VERSION`] for a plugin of contract 0.1.0 or
    /// 0.1.1 (null values are written as empty ones), [`BATCH_VERSION_NULLS`] for a later
    /// one.
    pub fn of_version(version: u32) -> Self {
        let mut writer = BatchWriter {
            buf: Vec::new(),
            count: 0,
            nulls: true,
        };
        writer.set_version(version);
        writer
    }

    /// Makes the batches started from now on of `version` (see [`BatchWriter::of_version`]).
    pub fn set_version(&mut self, version: u32) {
        self.nulls = version >= BATCH_VERSION_NULLS;
    }

    /// Starts a new batch of messages from `input`, keeping the buffer's capacity.
    pub fn start(&mut self, input: &str) {
        self.buf.clear();
        self.count = 0;
        let version = if self.nulls {
            BATCH_VERSION_NULLS
        } else {
            VERSION
        };
        put_u32(&mut self.buf, version);
        put_u32(&mut self.buf, 0);
        put_bytes(&mut self.buf, input.as_bytes());
    }

    /// Appends one message. A `None` payload or header value is a null one.
    pub fn push<'h>(
        &mut self,
        origin: &Origin<'_>,
        key: Option<&[u8]>,
        timestamp: Option<i64>,
        headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
        payload: Option<&[u8]>,
    ) {
        let buf = &mut self.buf;
        let start = buf.len();
        buf.resize(start + 4 + FIXED, 0);
        let origin_start = buf.len();
        let kind = put_origin(buf, origin);
        let origin_size = buf.len() - origin_start;
        buf.extend_from_slice(key.unwrap_or_default());
        let headers_start = buf.len();
        let mut header_count = 0u32;
        for (name, value) in headers {
            put_bytes(buf, name.as_bytes());
            match value {
                None if self.nulls => put_u32(buf, ABSENT),
                _ => put_bytes(buf, value.unwrap_or_default()),
            }
            header_count += 1;
        }
        let header_size = buf.len() - headers_start;
        let null_payload = payload.is_none() && self.nulls;
        let payload = payload.unwrap_or_default();
        buf.extend_from_slice(payload);
        let size = buf.len() - start - 4;

        let flags = u8::from(key.is_some())
            | (u8::from(timestamp.is_some()) << 1)
            | (u8::from(null_payload) << 2);
        let head = &mut buf[start..start + 4 + FIXED];
        head[0..4].copy_from_slice(&len32(size).to_le_bytes());
        head[4] = kind;
        head[5] = flags;
        head[8..12].copy_from_slice(&len32(origin_size).to_le_bytes());
        head[12..16].copy_from_slice(&len32(key.map_or(0, <[u8]>::len)).to_le_bytes());
        head[16..20].copy_from_slice(&header_count.to_le_bytes());
        head[20..24].copy_from_slice(&len32(header_size).to_le_bytes());
        head[24..28].copy_from_slice(&len32(payload.len()).to_le_bytes());
        head[28..36].copy_from_slice(&timestamp.unwrap_or(0).to_le_bytes());
        self.count += 1;
        buf[4..8].copy_from_slice(&self.count.to_le_bytes());
    }

    /// Appends one owned message.
    pub fn push_buf(&mut self, m: &MessageBuf) {
        let origin = match &m.kafka {
            Some((topic, partition, offset)) => Origin::Kafka {
                topic,
                partition: *partition,
                offset: *offset,
            },
            None => Origin::None,
        };
        self.push(
            &origin,
            m.key.as_deref(),
            m.timestamp,
            m.headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())),
            m.payload.as_deref(),
        );
    }

    /// Number of messages pushed since [`BatchWriter::start`].
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no message was pushed since [`BatchWriter::start`].
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded batch.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Builds a result, one outcome per message in batch order, of the lowest version that
/// holds what it was given.
#[derive(Debug)]
pub struct ResultWriter {
    buf: Vec<u8>,
    count: u32,
    version: u32,
}

impl ResultWriter {
    /// A result sized for a batch of `messages` messages.
    pub fn with_capacity(messages: usize) -> Self {
        let mut buf = Vec::with_capacity(8 + messages);
        put_u32(&mut buf, VERSION);
        put_u32(&mut buf, 0);
        ResultWriter {
            buf,
            count: 0,
            version: VERSION,
        }
    }

    fn needs(&mut self, version: u32) {
        self.version = self.version.max(version);
    }

    fn tag(&mut self, tag: u8) {
        self.buf.push(tag);
        self.count += 1;
    }

    /// Appends `pass`.
    pub fn pass(&mut self) {
        self.tag(0);
    }

    /// Appends `drop`.
    pub fn drop_message(&mut self) {
        self.tag(1);
    }

    /// Appends `reject` with its reason.
    pub fn reject(&mut self, reason: &str) {
        self.tag(2);
        put_bytes(&mut self.buf, reason.as_bytes());
    }

    /// Appends `emit` with its outputs.
    pub fn emit(&mut self, outputs: &[Output]) {
        self.tag(3);
        self.outputs(outputs);
    }

    /// Appends `reply`: the answer's payload and headers, and the outputs it writes. The
    /// result becomes version [`VERSION_REPLY`] at least.
    pub fn reply(&mut self, reply: &crate::Reply) {
        self.needs(VERSION_REPLY);
        self.tag(4);
        put_bytes(&mut self.buf, &reply.payload);
        self.headers(&reply.headers);
        self.outputs(&reply.emit);
    }

    /// A header block; a null value makes the result version [`RESULT_VERSION_NULLS`].
    fn headers(&mut self, headers: &[Header]) {
        if headers.iter().any(|(_, v)| v.is_none()) {
            self.needs(RESULT_VERSION_NULLS);
        }
        put_headers(&mut self.buf, headers);
    }

    /// `u32 n | output{n}`.
    fn outputs(&mut self, outputs: &[Output]) {
        put_u32(
            &mut self.buf,
            u32::try_from(outputs.len()).unwrap_or(u32::MAX),
        );
        for out in outputs {
            put_opt_bytes(&mut self.buf, out.destination.as_deref().map(str::as_bytes));
            put_opt_bytes(&mut self.buf, out.key.as_deref());
            if out.payload.is_none() {
                self.needs(RESULT_VERSION_NULLS);
            }
            put_opt_bytes(&mut self.buf, out.payload.as_deref());
            self.headers(&out.headers);
            put_opt_i32(&mut self.buf, out.partition);
            put_opt_i64(&mut self.buf, out.timestamp);
        }
    }

    /// Appends an already decoded outcome.
    pub fn outcome(&mut self, outcome: &crate::Outcome) {
        match outcome {
            crate::Outcome::Pass => self.pass(),
            crate::Outcome::Drop => self.drop_message(),
            crate::Outcome::Reject(reason) => self.reject(reason),
            crate::Outcome::Emit(outputs) => self.emit(outputs),
            crate::Outcome::Reply(reply) => self.reply(reply),
        }
    }

    /// Number of outcomes written.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no outcome was written.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded result.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[0..4].copy_from_slice(&self.version.to_le_bytes());
        self.buf[4..8].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }
}
