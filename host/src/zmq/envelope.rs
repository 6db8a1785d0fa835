//! The envelope frames that carry a record's key, timestamp and headers across a ZeroMQ
//! hop (see the module documentation of `zmq` for the layout).

/// First frame of an envelope.
pub const MARKER: &[u8] = b"switchyard-envelope-1";

/// A record's metadata, owned.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub key: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The five envelope frames for a record.
pub fn encode(
    key: Option<&[u8]>,
    timestamp: Option<i64>,
    headers: &[(&str, &[u8])],
    payload: &[u8],
) -> [Vec<u8>; 5] {
    let mut meta = Vec::with_capacity(9);
    meta.push(u8::from(key.is_some()) | (u8::from(timestamp.is_some()) << 1));
    meta.extend_from_slice(&timestamp.unwrap_or(0).to_le_bytes());
    let mut block = Vec::new();
    block.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (name, value) in headers {
        block.extend_from_slice(&(name.len() as u32).to_le_bytes());
        block.extend_from_slice(name.as_bytes());
        block.extend_from_slice(&(value.len() as u32).to_le_bytes());
        block.extend_from_slice(value);
    }
    [
        MARKER.to_vec(),
        key.unwrap_or_default().to_vec(),
        meta,
        block,
        payload.to_vec(),
    ]
}

/// Decodes the four frames after the marker: key, meta, headers, payload.
pub fn decode<F: std::ops::Deref<Target = [u8]>>(frames: Vec<F>) -> Result<(Meta, F), String> {
    let [key, meta, block, payload]: [F; 4] = frames
        .try_into()
        .map_err(|f: Vec<F>| format!("an envelope has 5 frames, this one {}", f.len() + 1))?;
    let [flags, ts @ ..] = &*meta else {
        return Err("envelope meta frame is empty".to_owned());
    };
    let ts: [u8; 8] = ts
        .try_into()
        .map_err(|_| "envelope meta frame is not 9 bytes".to_owned())?;
    let mut headers = Vec::new();
    let mut rest = &*block;
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
        headers.push((name, take(n)?.to_vec()));
    }
    Ok((
        Meta {
            key: (flags & 1 != 0).then(|| key.to_vec()),
            timestamp: (flags & 2 != 0).then_some(i64::from_le_bytes(ts)),
            headers,
        },
        payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_junk() {
        let [marker, rest @ ..] = encode(Some(b"k"), Some(7), &[("a", b"1"), ("a", b"\xff")], b"p");
        assert_eq!(marker, MARKER);
        let frames = rest.to_vec();
        let (meta, payload) = decode(frames).expect("valid");
        assert_eq!(payload, b"p");
        assert_eq!(
            meta,
            Meta {
                key: Some(b"k".to_vec()),
                timestamp: Some(7),
                headers: vec![("a".into(), b"1".to_vec()), ("a".into(), vec![0xff])],
            }
        );
        let short = vec![vec![], vec![1], vec![0, 0, 0, 9], vec![]];
        assert!(decode(short).is_err());
        let few = vec![vec![]];
        assert!(decode(few).is_err());
    }
}
