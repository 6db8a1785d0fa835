//! Zero-copy decoding: a batch into borrowed message views (guest side), a result into
//! owned outcomes (host side).

use crate::{ABSENT, DecodeError, Origin, Outcome, Output, VERSION};

/// A bounds-checked reader over a byte slice.
#[derive(Clone)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn err(&self, what: impl Into<String>) -> DecodeError {
        DecodeError {
            offset: self.pos,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| self.err(format!("truncated {what}")))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &str) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    fn opt_bytes(&mut self, what: &str) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.u32(what)? {
            ABSENT => Ok(None),
            len => self.take(len as usize, what).map(Some),
        }
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        self.opt_bytes(what)?.ok_or_else(|| DecodeError {
            offset: at,
            what: format!("{what} is absent but required"),
        })
    }

    fn opt_str(&mut self, what: &str) -> Result<Option<&'a str>, DecodeError> {
        let at = self.pos;
        match self.opt_bytes(what)? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b).map(Some).map_err(|_| DecodeError {
                offset: at,
                what: format!("{what} is not UTF-8"),
            }),
        }
    }

    fn str(&mut self, what: &str) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        self.opt_str(what)?.ok_or_else(|| DecodeError {
            offset: at,
            what: format!("{what} is absent but required"),
        })
    }

    fn opt_i64(&mut self, what: &str) -> Result<Option<i64>, DecodeError> {
        let present = self.u8(what)?;
        let value = self.i64(what)?;
        Ok((present != 0).then_some(value))
    }

    fn opt_i32(&mut self, what: &str) -> Result<Option<i32>, DecodeError> {
        let present = self.u8(what)?;
        let value = self.i32(what)?;
        Ok((present != 0).then_some(value))
    }

    fn version(&mut self) -> Result<(), DecodeError> {
        match self.u32("version")? {
            VERSION => Ok(()),
            other => Err(DecodeError {
                offset: 0,
                what: format!("unsupported wire format version {other} (expected {VERSION})"),
            }),
        }
    }
}

/// The headers of a message: validated once when the message is decoded, then iterated
/// without allocating.
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    data: &'a [u8],
    count: u32,
}

impl<'a> Headers<'a> {
    /// Number of headers (names may repeat).
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The headers in order, as (name, value) pairs.
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter {
            cursor: Cursor::new(self.data),
            left: self.count,
        }
    }

    /// The value of the first header with this name.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Every value of headers with this name, in order.
    pub fn get_all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl std::fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(n, v)| (n, String::from_utf8_lossy(v).into_owned())),
            )
            .finish()
    }
}

impl<'a> IntoIterator for Headers<'a> {
    type Item = (&'a str, &'a [u8]);
    type IntoIter = HeaderIter<'a>;
    fn into_iter(self) -> HeaderIter<'a> {
        self.iter()
    }
}

/// Iterator over the headers of a message.
#[derive(Clone)]
pub struct HeaderIter<'a> {
    cursor: Cursor<'a>,
    left: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The block was validated by `read_headers`, so these cannot fail; stop if they do.
        let name = self.cursor.str("header name").ok()?;
        let value = self.cursor.bytes("header value").ok()?;
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

/// Reads and validates a header block, returning a view of it.
fn read_headers<'a>(c: &mut Cursor<'a>) -> Result<Headers<'a>, DecodeError> {
    let count = c.u32("header count")?;
    let start = c.pos;
    for _ in 0..count {
        c.str("header name")?;
        c.bytes("header value")?;
    }
    Ok(Headers {
        data: &c.buf[start..c.pos],
        count,
    })
}

/// One message of a batch, borrowed from the batch buffer.
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    /// Where the message came from.
    pub origin: Origin<'a>,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Timestamp in milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Headers in order.
    pub headers: Headers<'a>,
    /// Payload bytes.
    pub payload: &'a [u8],
}

fn read_origin<'a>(c: &mut Cursor<'a>) -> Result<Origin<'a>, DecodeError> {
    let at = c.pos;
    Ok(match c.u8("origin kind")? {
        0 => Origin::None,
        1 => Origin::Kafka {
            topic: c.str("kafka topic")?,
            partition: c.i32("kafka partition")?,
            offset: c.i64("kafka offset")?,
        },
        2 => Origin::Zmq {
            endpoint: c.str("zmq endpoint")?,
            socket_type: c.str("zmq socket type")?,
            topic: c.opt_bytes("zmq topic frame")?,
            peer: c.opt_bytes("zmq peer identity")?,
        },
        other => {
            return Err(DecodeError {
                offset: at,
                what: format!("unknown origin kind {other}"),
            });
        }
    })
}

fn read_message<'a>(body: &'a [u8], base: usize) -> Result<MessageView<'a>, DecodeError> {
    let mut c = Cursor::new(body);
    let parsed = (|| {
        let origin = read_origin(&mut c)?;
        let key = c.opt_bytes("key")?;
        let timestamp = c.opt_i64("timestamp")?;
        let headers = read_headers(&mut c)?;
        let payload = c.bytes("payload")?;
        // Trailing bytes are fields of a later minor version: ignored by design.
        Ok(MessageView {
            origin,
            key,
            timestamp,
            headers,
            payload,
        })
    })();
    parsed.map_err(|e: DecodeError| DecodeError {
        offset: base + e.offset,
        what: e.what,
    })
}

/// Reads a batch: its input name, then its messages one at a time.
#[derive(Clone)]
pub struct BatchReader<'a> {
    input: &'a str,
    count: u32,
    left: u32,
    cursor: Cursor<'a>,
}

impl<'a> BatchReader<'a> {
    /// Checks the batch header. Messages are decoded as they are iterated.
    pub fn new(batch: &'a [u8]) -> Result<Self, DecodeError> {
        let mut cursor = Cursor::new(batch);
        cursor.version()?;
        let count = cursor.u32("message count")?;
        let input = cursor.str("input name")?;
        Ok(BatchReader {
            input,
            count,
            left: count,
            cursor,
        })
    }

    /// The configured input every message of this batch came from.
    pub fn input(&self) -> &'a str {
        self.input
    }

    /// Number of messages in the batch.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl<'a> Iterator for BatchReader<'a> {
    type Item = Result<MessageView<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = (|| {
            let size = self.cursor.u32("message size")? as usize;
            let base = self.cursor.pos;
            let body = self.cursor.take(size, "message body")?;
            read_message(body, base)
        })();
        if item.is_err() {
            // A malformed message makes the rest of the batch unreadable.
            self.left = 0;
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

fn read_output(c: &mut Cursor<'_>) -> Result<Output, DecodeError> {
    let destination = c.opt_str("destination")?.map(str::to_owned);
    let key = c.opt_bytes("key")?.map(<[u8]>::to_vec);
    let payload = c.opt_bytes("payload")?.unwrap_or_default().to_vec();
    let headers = read_headers(c)?
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_vec()))
        .collect();
    let partition = c.opt_i32("partition")?;
    let timestamp = c.opt_i64("timestamp")?;
    Ok(Output {
        destination,
        key,
        payload,
        headers,
        partition,
        timestamp,
    })
}

/// Decodes a plugin's result, which must hold exactly `expected` outcomes.
pub fn decode_result(result: &[u8], expected: usize) -> Result<Vec<Outcome>, DecodeError> {
    let mut c = Cursor::new(result);
    c.version()?;
    let at = c.pos;
    let count = c.u32("outcome count")? as usize;
    if count != expected {
        return Err(DecodeError {
            offset: at,
            what: format!("{count} outcomes for a batch of {expected}"),
        });
    }
    let mut outcomes = Vec::with_capacity(count);
    for _ in 0..count {
        let at = c.pos;
        outcomes.push(match c.u8("outcome tag")? {
            0 => Outcome::Pass,
            1 => Outcome::Drop,
            2 => Outcome::Reject(c.str("reject reason")?.to_owned()),
            3 => {
                let n = c.u32("emit count")? as usize;
                // Each output takes at least 30 bytes: never trust `n` for an allocation.
                let mut outputs = Vec::with_capacity(n.min(c.buf.len() / 30 + 1));
                for _ in 0..n {
                    outputs.push(read_output(&mut c)?);
                }
                Outcome::Emit(outputs)
            }
            other => {
                return Err(DecodeError {
                    offset: at,
                    what: format!("unknown outcome tag {other}"),
                });
            }
        });
    }
    if c.pos != result.len() {
        return Err(c.err(format!(
            "{} unexpected trailing bytes",
            result.len() - c.pos
        )));
    }
    Ok(outcomes)
}
