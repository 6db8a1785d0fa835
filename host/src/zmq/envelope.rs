//! The envelope frames that carry a record's key, timestamp, headers and payload (null
//! ones included) across a ZeroMQ hop (see the module documentation of `zmq` for the
//! layout). Envelopes are written as version 2; version 1 is still read.

use switchyard_abi::Header;

/// First frame of an envelope, as written.
pub const MARKER: &[u8] = b"switchyard-envelope-2";

/// First frame of an envelope of version 1, read still: its headers frame is a u32 count
/// and, per header, a u32 name length, the name, a u32 value length and the value.
pub const MARKER_1: &[u8] = b"switchyard-envelope-1";

/// Whether `frame` opens an envelope of either version.
pub fn is_marker(frame: &[u8]) -> bool {
    frame == MARKER || frame == MARKER_1
}

/// A record's metadata, owned.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub key: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    /// Headers in order; a `None` value is a null one.
    pub headers: Vec<Header>,
    /// The record has no payload at all (a Kafka tombstone); the payload frame is empty.
    pub null_payload: bool,
}

/// The five envelope frames for a record; a `None` payload or header value is a null one.
pub fn encode(
    key: Option<&[u8]>,
    timestamp: Option<i64>,
    headers: &[(&str, Option<&[u8]>)],
    payload: Option<&[u8]>,
) -> [Vec<u8>; 5] {
    let mut meta = Vec::with_capacity(9);
    meta.push(
        u8::from(key.is_some())
            | (u8::from(timestamp.is_some()) << 1)
            | (u8::from(payload.is_none()) << 2),
    );
    meta.extend_from_slice(&timestamp.unwrap_or(0).to_le_bytes());
    let mut block = Vec::new();
    switchyard_abi::encode_headers(&mut block, headers.iter().copied());
    [
        MARKER.to_vec(),
        key.unwrap_or_default().to_vec(),
        meta,
        block,
        payload.unwrap_or_default().to_vec(),
    ]
}

/// Decodes the four frames after `marker` (of either version): key, meta, headers,
/// payload.
pub fn decode<F: std::ops::Deref<Target = [u8]>>(
    marker: &[u8],
    frames: Vec<F>,
) -> Result<(Meta, F), String> {
    let [key, meta, block, payload]: [F; 4] = frames
        .try_into()
        .map_err(|f: Vec<F>| format!("an envelope has 5 frames, this one {}", f.len() + 1))?;
    let [flags, ts @ ..] = &*meta else {
        return Err("envelope meta frame is empty".to_owned());
    };
    let ts: [u8; 8] = ts
        .try_into()
        .map_err(|_| "envelope meta frame is not 9 bytes".to_owned())?;
    let headers = if marker == MARKER_1 {
        headers_1(&block)?
    } else {
        switchyard_abi::decode_headers(&block)
            .map_err(|e| format!("envelope headers frame: {e}"))?
    };
    let null_payload = marker != MARKER_1 && flags & 4 != 0;
    if null_payload && !payload.is_empty() {
        return Err("envelope says the payload is null, but its payload frame is not empty".into());
    }
    Ok((
        Meta {
            key: (flags & 1 != 0).then(|| key.to_vec()),
            timestamp: (flags & 2 != 0).then_some(i64::from_le_bytes(ts)),
            headers,
            null_payload,
        },
        payload,
    ))
}

/// The headers frame of an envelope of version 1.
fn headers_1(block: &[u8]) -> Result<Vec<Header>, String> {
    let mut headers = Vec::new();
    let mut rest = block;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err("truncated envelope headers frame".to_owned());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let u32_of = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = u32_of(take(4)?);
    for _ in 0..count {
        let n = u32_of(take(4)?);
        let name = String::from_utf8(take(n)?.to_vec())
            .map_err(|_| "header name is not UTF-8".to_owned())?;
        let n = u32_of(take(4)?);
        headers.push((name, Some(take(n)?.to_vec())));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_junk() {
        let headers = [
            ("a", Some(&b"1"[..])),
            ("a", Some(&b"\xff"[..])),
            ("n", None),
        ];
        let [marker, rest @ ..] = encode(Some(b"k"), Some(7), &headers, Some(b"p"));
        assert_eq!(marker, MARKER);
        let (meta, payload) = decode(&marker, rest.to_vec()).expect("valid");
        assert_eq!(payload, b"p");
        assert_eq!(
            meta,
            Meta {
                key: Some(b"k".to_vec()),
                timestamp: Some(7),
                headers: vec![
                    ("a".into(), Some(b"1".to_vec())),
                    ("a".into(), Some(vec![0xff])),
                    ("n".into(), None)
                ],
                null_payload: false,
            }
        );
        let short = vec![vec![], vec![1], vec![0, 0, 0, 9], vec![]];
        assert!(decode(MARKER, short.clone()).is_err());
        assert!(decode(MARKER_1, short).is_err());
        let few = vec![vec![]];
        assert!(decode(MARKER, few).is_err());
        // A header block whose lengths run past its end is refused, not read short.
        let [_, key, meta, mut block, payload] = encode(None, None, &headers, Some(b""));
        block.truncate(block.len() - 1);
        assert!(decode(MARKER, vec![key, meta, block, payload]).is_err());
    }

    #[test]
    fn a_tombstone_round_trips() {
        let [marker, rest @ ..] = encode(Some(b"k"), None, &[], None);
        let (meta, payload) = decode(&marker, rest.to_vec()).expect("valid");
        assert!(meta.null_payload);
        assert!(payload.is_empty());
    }

    #[test]
    fn version_1_is_still_read() {
        let mut block = 1u32.to_le_bytes().to_vec();
        block.extend_from_slice(&1u32.to_le_bytes());
        block.extend_from_slice(b"h");
        block.extend_from_slice(&2u32.to_le_bytes());
        block.extend_from_slice(b"v1");
        let mut meta = vec![1u8];
        meta.extend_from_slice(&0i64.to_le_bytes());
        let frames = vec![b"k".to_vec(), meta, block, b"body".to_vec()];
        let (meta, payload) = decode(MARKER_1, frames).expect("valid version 1");
        assert_eq!(payload, b"body");
        assert_eq!(meta.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(meta.headers, vec![("h".into(), Some(b"v1".to_vec()))]);
        assert!(!meta.null_payload);
    }
}
