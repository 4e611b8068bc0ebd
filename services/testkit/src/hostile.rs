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

/// A body of `len` bytes without a Content-Length (sent chunked), generated as it is sent: a
/// server learns its size only by counting it as it streams.
pub fn chunked(len: usize) -> reqwest::Body {
    let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
    let chunks = futures::stream::iter(
        (0..len / chunk.len()).map(move |_| Ok::<bytes::Bytes, std::io::Error>(chunk.clone())),
    );
    reqwest::Body::wrap_stream(chunks)
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
}
