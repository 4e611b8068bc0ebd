//! Bodies shaped to hurt a parser: cheap to send, costly to decode naively. The services' own
//! hostile-input tests and the end-to-end suite against the deployed stack send the same ones.

/// `[{},{},…]` with `n` empty objects: three million are a 9 MB body that a decoder turning each
/// element into a struct before checking it would blow up to gigabytes.
pub fn empty_objects(n: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(n * 3 + 2);
    body.push(b'[');
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{}");
    }
    body.push(b']');
    body
}

/// `depth` nested JSON arrays (`[[[…]]]`): deeper than any decoder's recursion limit for large
/// depths, a stack overflow for a recursive decoder without one.
pub fn nested_arrays(depth: usize) -> String {
    let mut s = String::with_capacity(depth * 2);
    s.extend(std::iter::repeat_n('[', depth));
    s.extend(std::iter::repeat_n(']', depth));
    s
}

/// Kafka wire-protocol frames a broker must refuse by closing the connection (never by crashing
/// or allocating what they claim): oversized and negative sizes, a frame too short for a header,
/// an unknown API key, a truncated Metadata body, array lengths claiming 54 million and 2³¹
/// entries in a few bytes, and random bytes. kafka-broker's own tests and the end-to-end suite against the
/// deployed stack send the same ones.
pub fn kafka_frames() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a 2 GiB size", i32::MAX.to_be_bytes().to_vec()),
        ("a negative size", (-1i32).to_be_bytes().to_vec()),
        (
            "a frame too short for a header",
            [0, 0, 0, 2, 0, 3].to_vec(),
        ),
        (
            "unknown API key 999",
            [&[0, 0, 0, 10][..], &[3, 231, 0, 0, 0, 0, 0, 1, 0, 0]].concat(),
        ),
        (
            "Metadata v12 with a truncated body",
            [&[0, 0, 0, 12][..], &[0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 9]].concat(),
        ),
        (
            "Metadata v0 whose topic array claims 54 million entries in 5 bytes",
            [
                &[0, 0, 0, 15][..],
                &[0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 3, 0x3c, 0x0c, 0, 0xb6],
            ]
            .concat(),
        ),
        (
            "Metadata v0 whose topic array claims 2^31 - 1 entries in 5 bytes (aborted kafka-broker \
             before vendor/kafka-protocol)",
            [
                &[0, 0, 0, 15][..],
                &[0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0],
            ]
            .concat(),
        ),
        (
            "a compact (v9+) Metadata topic array claiming 2^31 entries",
            [
                &[0, 0, 0, 17][..],
                &[
                    0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x08, 0,
                ],
            ]
            .concat(),
        ),
        (
            "64 random bytes",
            (0..64u8)
                .map(|i| i.wrapping_mul(37).wrapping_add(11))
                .collect(),
        ),
    ]
}

/// A body of `len` bytes without a Content-Length (sent chunked), generated as it is sent: a
/// server learns its size only by counting it as it streams.
pub fn chunked(len: usize) -> reqwest::Body {
    let chunk = bytes::Bytes::from(vec![7u8; CHUNK]);
    let chunks = futures::stream::iter(
        chunk_lengths(len).map(move |n| Ok::<bytes::Bytes, std::io::Error>(chunk.slice(..n))),
    );
    reqwest::Body::wrap_stream(chunks)
}

/// The size of each chunk [`chunked`] sends.
const CHUNK: usize = 64 * 1024;

/// The lengths of [`chunked`]'s chunks: whole [`CHUNK`]s, then what is left, `len` in all.
fn chunk_lengths(len: usize) -> impl Iterator<Item = usize> {
    let rest = len % CHUNK;
    std::iter::repeat_n(CHUNK, len / CHUNK).chain((rest > 0).then_some(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes are valid JSON of the expected size.
    #[test]
    fn shapes() {
        assert_eq!(empty_objects(0), b"[]");
        assert_eq!(empty_objects(3), b"[{},{},{}]");
        assert_eq!(empty_objects(3_000_000).len(), 8_999_999 + 2);
        assert_eq!(nested_arrays(3), "[[[]]]");
        let v: serde_json::Value = serde_json::from_str(&nested_arrays(100)).unwrap();
        assert!(v.is_array());
    }

    /// A chunked body is `len` bytes, also when `len` is not a whole number of chunks.
    #[test]
    fn chunked_sends_len_bytes() {
        for len in [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            10 * 1000 * 1000,
            10 * 1024 * 1024,
        ] {
            let lengths: Vec<usize> = chunk_lengths(len).collect();
            assert_eq!(lengths.iter().sum::<usize>(), len, "{len}");
            assert!(lengths.iter().all(|&n| n > 0 && n <= CHUNK), "{len}");
        }
    }
}
