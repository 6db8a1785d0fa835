//! Zero-copy decoding: a batch into borrowed message views (guest side), a result into
//! owned outcomes (host side).
//!
//! Batch decoding is on every plugin's hot path, so it does the least work that keeps it
//! safe: fields are sliced in place, the header block is skipped by its size and its entries
//! are decoded only when a plugin reads them.

use crate::write::FIXED;
use crate::{
    ABSENT, BATCH_VERSION_NULLS, DecodeError, Header, Origin, Outcome, Output, Problem,
    RESULT_VERSION_NULLS, Reply, VERSION, VERSION_REPLY,
};

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

    fn fail<T>(&self, problem: Problem) -> Result<T, DecodeError> {
        Err(DecodeError {
            offset: self.pos,
            problem,
        })
    }

    #[inline]
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        match self.buf.get(self.pos..self.pos.saturating_add(n)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            _ => self.fail(Problem::Truncated(field)),
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    #[inline]
    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    #[inline]
    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    #[inline]
    fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array(field)?))
    }

    #[inline]
    fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }

    #[inline]
    fn opt_bytes(&mut self, field: &'static str) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.u32(field)? {
            ABSENT => Ok(None),
            len => self.take(len as usize, field).map(Some),
        }
    }

    #[inline]
    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        match self.opt_bytes(field)? {
            Some(bytes) => Ok(bytes),
            None => self.fail(Problem::Absent(field)),
        }
    }

    fn opt_str(&mut self, field: &'static str) -> Result<Option<&'a str>, DecodeError> {
        let at = self.pos;
        match self.opt_bytes(field)? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b).map(Some).map_err(|_| DecodeError {
                offset: at,
                problem: Problem::NotUtf8(field),
            }),
        }
    }

    fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        match self.opt_str(field)? {
            Some(s) => Ok(s),
            None => self.fail(Problem::Absent(field)),
        }
    }

    #[inline]
    fn opt_i64(&mut self, field: &'static str) -> Result<Option<i64>, DecodeError> {
        let present = self.u8(field)?;
        let value = self.i64(field)?;
        Ok((present != 0).then_some(value))
    }

    fn opt_i32(&mut self, field: &'static str) -> Result<Option<i32>, DecodeError> {
        let present = self.u8(field)?;
        let value = self.i32(field)?;
        Ok((present != 0).then_some(value))
    }

    /// Reads the version, which must be one of `known`.
    fn version_of(&mut self, known: &[u32]) -> Result<u32, DecodeError> {
        match self.u32("version")? {
            v if known.contains(&v) => Ok(v),
            other => Err(DecodeError {
                offset: 0,
                problem: Problem::Version(other),
            }),
        }
    }

    /// A header block: its count and size, then the block itself, undecoded.
    fn headers(&mut self) -> Result<Headers<'a>, DecodeError> {
        let count = self.u32("header count")?;
        let size = self.u32("header block size")?;
        let data = self.take(size as usize, "header block")?;
        Ok(Headers { data, count })
    }
}

/// The headers of a message, decoded only as they are read.
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

    /// The headers in order, as (name, value) pairs; a `None` value is a null one. The
    /// host always writes well-formed blocks; iteration stops at the first malformed entry
    /// of one that is not.
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter {
            cursor: Cursor::new(self.data),
            left: self.count,
        }
    }

    /// The value of the first header with this name; a null value reads as empty (see
    /// [`Headers::iter`] to tell them apart).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.unwrap_or_default())
    }

    /// Every value of headers with this name, in order; null values read as empty.
    pub fn get_all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.unwrap_or_default())
    }

    /// Decodes every entry, failing on the first malformed one or on bytes after the last:
    /// for blocks from an untrusted writer. With `nulls`, an absent value is a null one; without, it is an
    /// error (versions before null values).
    fn to_owned_checked(self, nulls: bool) -> Result<Vec<Header>, DecodeError> {
        let mut c = Cursor::new(self.data);
        let mut out = Vec::with_capacity((self.count as usize).min(self.data.len() / 8));
        for _ in 0..self.count {
            let name = c.str("header name")?;
            let value = if nulls {
                c.opt_bytes("header value")?
            } else {
                Some(c.bytes("header value")?)
            };
            out.push((name.to_owned(), value.map(<[u8]>::to_vec)));
        }
        // The block's size must be its entries' size: no bytes hidden after them.
        if c.pos != self.data.len() {
            return c.fail(Problem::Trailing(self.data.len() - c.pos));
        }
        Ok(out)
    }
}

impl std::fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(n, v)| (n, v.map(|v| String::from_utf8_lossy(v).into_owned()))),
            )
            .finish()
    }
}

impl<'a> IntoIterator for Headers<'a> {
    type Item = (&'a str, Option<&'a [u8]>);
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
    type Item = (&'a str, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let entry = (|| {
            Ok::<_, DecodeError>((
                self.cursor.str("header name")?,
                self.cursor.opt_bytes("header value")?,
            ))
        })();
        if entry.is_err() {
            self.left = 0;
        }
        entry.ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

/// One message of a batch, borrowed from the batch buffer.
#[derive(Clone, Copy)]
pub struct MessageView<'a> {
    /// The origin's kind and encoded fields, decoded on demand by [`MessageView::origin`].
    origin: (u8, &'a [u8]),
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Timestamp in milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Headers in order.
    pub headers: Headers<'a>,
    /// Payload bytes; `None` for a record with no value (a Kafka tombstone).
    pub payload: Option<&'a [u8]>,
}

impl<'a> MessageView<'a> {
    /// Where the message came from. Decoded on each call (most plugins never ask); the
    /// host always writes a well-formed origin, and a malformed one, or one of a kind this
    /// version does not know (a later host's), reads as [`Origin::None`].
    pub fn origin(&self) -> Origin<'a> {
        let (kind, fields) = self.origin;
        read_origin(kind, &mut Cursor::new(fields)).unwrap_or(Origin::None)
    }
}

impl std::fmt::Debug for MessageView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageView")
            .field("origin", &self.origin())
            .field("key", &self.key)
            .field("timestamp", &self.timestamp)
            .field("headers", &self.headers)
            .field("payload", &self.payload)
            .finish()
    }
}

fn read_origin<'a>(kind: u8, c: &mut Cursor<'a>) -> Result<Origin<'a>, DecodeError> {
    Ok(match kind {
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
        _ => Origin::None,
    })
}

/// Decodes one message body: its fixed part, then four spans sliced in place. Bytes after
/// the payload are fields of a later minor version and are ignored by design.
#[inline]
fn read_message(body: &[u8]) -> Result<MessageView<'_>, DecodeError> {
    let Some((fixed, rest)) = body.split_first_chunk::<FIXED>() else {
        return Err(DecodeError {
            offset: 0,
            problem: Problem::Truncated("message fixed part"),
        });
    };
    let u32_at =
        |i: usize| u32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
    let kind = fixed[0];
    let flags = fixed[1];
    let mut c = Cursor::new(rest);
    let origin = c.take(u32_at(4) as usize, "origin")?;
    let key = c.take(u32_at(8) as usize, "key")?;
    let header_count = u32_at(12);
    let header_block = c.take(u32_at(16) as usize, "header block")?;
    let payload = c.take(u32_at(20) as usize, "payload")?;
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&fixed[24..32]);
    Ok(MessageView {
        origin: (kind, origin),
        key: (flags & 1 != 0).then_some(key),
        timestamp: (flags & 2 != 0).then_some(i64::from_le_bytes(ts)),
        headers: Headers {
            data: header_block,
            count: header_count,
        },
        payload: (flags & 4 == 0).then_some(payload),
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
        cursor.version_of(&[VERSION, BATCH_VERSION_NULLS])?;
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

    fn next_message(&mut self) -> Result<MessageView<'a>, DecodeError> {
        let size = self.cursor.u32("message size")? as usize;
        let base = self.cursor.pos;
        let body = self.cursor.take(size, "message body")?;
        read_message(body).map_err(|e| DecodeError {
            // Offsets inside the body count from after its fixed part.
            offset: base + FIXED + e.offset,
            problem: e.problem,
        })
    }
}

impl<'a> Iterator for BatchReader<'a> {
    type Item = Result<MessageView<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = self.next_message();
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

/// `u32 n | output{n}`.
/// Decodes a whole header block (see [`crate::encode_headers`]), null values included; the
/// block must end where its last entry does.
pub fn decode_headers(block: &[u8]) -> Result<Vec<Header>, DecodeError> {
    let mut c = Cursor::new(block);
    let headers = c.headers()?.to_owned_checked(true)?;
    if c.pos != block.len() {
        return c.fail(Problem::Trailing(block.len() - c.pos));
    }
    Ok(headers)
}

/// `u32 n | output{n}`; with `nulls` (result version 3), an absent payload or header
/// value is a null one.
fn read_outputs(c: &mut Cursor<'_>, nulls: bool) -> Result<Vec<Output>, DecodeError> {
    let n = c.u32("emit count")? as usize;
    // Each output takes at least 34 bytes: never trust `n` for an allocation.
    let mut outputs = Vec::with_capacity(n.min(c.buf.len() / 34 + 1));
    for _ in 0..n {
        outputs.push(read_output(c, nulls)?);
    }
    Ok(outputs)
}

fn read_output(c: &mut Cursor<'_>, nulls: bool) -> Result<Output, DecodeError> {
    let destination = c.opt_str("destination")?.map(str::to_owned);
    let key = c.opt_bytes("key")?.map(<[u8]>::to_vec);
    let payload = match c.opt_bytes("payload")? {
        Some(bytes) => Some(bytes.to_vec()),
        // Before version 3, an absent payload is an empty one.
        None if !nulls => Some(Vec::new()),
        None => None,
    };
    let headers = c.headers()?.to_owned_checked(nulls)?;
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

/// Whether `result` is a well-formed result of `expected` outcomes that are all `pass`: the
/// common case, answered without building a list of outcomes.
#[inline]
pub fn is_all_pass(result: &[u8], expected: usize) -> bool {
    result.len() == 8 + expected
        && result[0..4] == VERSION.to_le_bytes()
        && u32::try_from(expected).is_ok_and(|n| result[4..8] == n.to_le_bytes())
        && result[8..].iter().all(|&tag| tag == 0)
}

/// Decodes a plugin's result, which must hold exactly `expected` outcomes. Every field is
/// checked: the result comes from untrusted code.
pub fn decode_result(result: &[u8], expected: usize) -> Result<Vec<Outcome>, DecodeError> {
    let mut c = Cursor::new(result);
    let version = c.version_of(&[VERSION, VERSION_REPLY, RESULT_VERSION_NULLS])?;
    let nulls = version >= RESULT_VERSION_NULLS;
    let at = c.pos;
    let count = c.u32("outcome count")?;
    if count as usize != expected {
        return Err(DecodeError {
            offset: at,
            problem: Problem::Count {
                found: count,
                expected,
            },
        });
    }
    let mut outcomes = Vec::with_capacity(expected);
    for _ in 0..count {
        let at = c.pos;
        outcomes.push(match c.u8("outcome tag")? {
            0 => Outcome::Pass,
            1 => Outcome::Drop,
            2 => Outcome::Reject(c.str("reject reason")?.to_owned()),
            3 => Outcome::Emit(read_outputs(&mut c, nulls)?),
            4 if version >= VERSION_REPLY => {
                let payload = c.bytes("reply payload")?.to_vec();
                let headers = c.headers()?.to_owned_checked(nulls)?;
                let emit = read_outputs(&mut c, nulls)?;
                Outcome::Reply(Reply {
                    payload,
                    headers,
                    emit,
                })
            }
            other => {
                return Err(DecodeError {
                    offset: at,
                    problem: Problem::UnknownOutcome(other),
                });
            }
        });
    }
    if c.pos != result.len() {
        return c.fail(Problem::Trailing(result.len() - c.pos));
    }
    Ok(outcomes)
}
