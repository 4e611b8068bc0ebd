//! Spring-style patterns for the `Path` and `Host` predicates.
//!
//! A pattern is split into segments by a separator (`/` for paths, `.` for
//! host names) and matched segment by segment, as Spring's `PathPattern`
//! and `AntPathMatcher` do:
//!
//! - `**` matches zero or more whole segments (anywhere in the pattern);
//! - `{*name}` (last segment only) matches the rest, captured with its
//!   leading separator (`/a/b`), or empty;
//! - inside a segment, `*` matches zero or more characters, `?` exactly
//!   one, `{name}` one or more characters, captured; anything else is
//!   literal.
//!
//! Captures feed header templates (`AddRequestHeader=X-Sku, {sku}`), so a
//! route can pass a path variable on without a rewrite.

use std::fmt;

/// A variable captured by a match: name and value.
pub type Captures = Vec<(String, String)>;

/// Why a pattern cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("a path pattern must start with `/`")]
    NotAbsolute,
    #[error("`{{` without a closing `}}` in segment `{0}`")]
    Unclosed(String),
    #[error(
        "variable name `{0}` must be letters, digits or `_` (regular-expression variables are not supported)"
    )]
    BadName(String),
    #[error("`{{*{0}}}` must be the last segment")]
    RestNotLast(String),
    #[error("variable `{0}` appears twice")]
    Duplicate(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    /// `*`: zero or more characters.
    Star,
    /// `?`: one character.
    One,
    /// `{name}`: one or more characters, captured.
    Var(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`.
    Any,
    /// `{*name}`.
    Rest(String),
    Parts(Vec<Part>),
}

/// A compiled pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    separator: char,
    segments: Vec<Segment>,
    /// The variables it captures, in order.
    names: Vec<String>,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Pattern {
    /// A path pattern (`/api/product/**`).
    pub fn path(source: &str) -> Result<Pattern, PatternError> {
        let rest = source.strip_prefix('/').ok_or(PatternError::NotAbsolute)?;
        Pattern::compile(source, rest, '/')
    }

    /// A host pattern (`**.example.org`), matched case-insensitively.
    pub fn host(source: &str) -> Result<Pattern, PatternError> {
        let lower = source.to_ascii_lowercase();
        Pattern::compile(source, &lower, '.')
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The names of the variables it captures.
    pub fn variables(&self) -> &[String] {
        &self.names
    }

    fn compile(source: &str, body: &str, separator: char) -> Result<Pattern, PatternError> {
        let raw: Vec<&str> = body.split(separator).collect();
        let mut segments = Vec::with_capacity(raw.len());
        let mut names: Vec<String> = Vec::new();
        let mut remember = |name: &str| -> Result<(), PatternError> {
            if names.iter().any(|n| n == name) {
                return Err(PatternError::Duplicate(name.to_string()));
            }
            names.push(name.to_string());
            Ok(())
        };
        for (k, seg) in raw.iter().enumerate() {
            if *seg == "**" {
                segments.push(Segment::Any);
                continue;
            }
            if let Some(name) = seg.strip_prefix("{*").and_then(|s| s.strip_suffix('}')) {
                check_name(name)?;
                if k + 1 != raw.len() {
                    return Err(PatternError::RestNotLast(name.to_string()));
                }
                remember(name)?;
                segments.push(Segment::Rest(name.to_string()));
                continue;
            }
            let mut parts = Vec::new();
            let mut lit = String::new();
            let mut chars = seg.chars();
            while let Some(c) = chars.next() {
                match c {
                    '*' | '?' | '{' if !lit.is_empty() => {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    _ => {}
                }
                match c {
                    '*' => parts.push(Part::Star),
                    '?' => parts.push(Part::One),
                    '{' => {
                        let mut name = String::new();
                        let mut closed = false;
                        for c in chars.by_ref() {
                            if c == '}' {
                                closed = true;
                                break;
                            }
                            name.push(c);
                        }
                        if !closed {
                            return Err(PatternError::Unclosed(seg.to_string()));
                        }
                        check_name(&name)?;
                        remember(&name)?;
                        parts.push(Part::Var(name));
                    }
                    c => lit.push(c),
                }
            }
            if !lit.is_empty() || parts.is_empty() {
                parts.push(Part::Lit(lit));
            }
            segments.push(Segment::Parts(parts));
        }
        Ok(Pattern {
            source: source.to_string(),
            separator,
            segments,
            names,
        })
    }

    /// Matches `input` (a path starting with `/`, or a host name); returns
    /// the captured variables on success.
    pub fn matches(&self, input: &str) -> Option<Captures> {
        let lowered;
        let body = if self.separator == '/' {
            input.strip_prefix('/')?
        } else if input.bytes().any(|b| b.is_ascii_uppercase()) {
            // Host names compare case-insensitively; patterns are lower case already.
            lowered = input.to_ascii_lowercase();
            &lowered
        } else {
            input
        };
        let segs: Vec<&str> = body.split(self.separator).collect();
        let mut caps = Vec::new();
        match_segments(&self.segments, &segs, self.separator, &mut caps).then_some(caps)
    }
}

fn check_name(name: &str) -> Result<(), PatternError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(PatternError::BadName(name.to_string()));
    }
    Ok(())
}

fn match_segments(pat: &[Segment], input: &[&str], sep: char, caps: &mut Captures) -> bool {
    let Some((first, rest)) = pat.split_first() else {
        return input.is_empty();
    };
    match first {
        Segment::Any => {
            for skip in 0..=input.len() {
                let mark = caps.len();
                if match_segments(rest, &input[skip..], sep, caps) {
                    return true;
                }
                caps.truncate(mark);
            }
            false
        }
        Segment::Rest(name) => {
            let mut value = String::new();
            for s in input {
                value.push(sep);
                value.push_str(s);
            }
            caps.push((name.clone(), value));
            true
        }
        Segment::Parts(parts) => {
            let Some((seg, more)) = input.split_first() else {
                return false;
            };
            let mark = caps.len();
            if match_parts(parts, seg, caps) && match_segments(rest, more, sep, caps) {
                return true;
            }
            caps.truncate(mark);
            false
        }
    }
}

fn match_parts(parts: &[Part], text: &str, caps: &mut Captures) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return text.is_empty();
    };
    match first {
        Part::Lit(l) => text
            .strip_prefix(l.as_str())
            .is_some_and(|t| match_parts(rest, t, caps)),
        Part::One => {
            let mut chars = text.chars();
            chars.next().is_some() && match_parts(rest, chars.as_str(), caps)
        }
        Part::Star | Part::Var(_) => {
            let min = usize::from(matches!(first, Part::Var(_)));
            // Every char boundary from `min` characters on, shortest first.
            let bounds = text
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .skip(min);
            for end in bounds {
                let mark = caps.len();
                if let Part::Var(name) = first {
                    caps.push((name.clone(), text[..end].to_string()));
                }
                if match_parts(rest, &text[end..], caps) {
                    return true;
                }
                caps.truncate(mark);
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(v: &[(&str, &str)]) -> Captures {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// `**` matches zero or more segments, at the end or in the middle.
    #[test]
    fn double_star() {
        let p = Pattern::path("/api/product/**").unwrap();
        for ok in [
            "/api/product",
            "/api/product/",
            "/api/product/1",
            "/api/product/1/x",
        ] {
            assert!(p.matches(ok).is_some(), "{ok}");
        }
        for no in ["/api/products", "/api", "/x/api/product", "api/product"] {
            assert!(p.matches(no).is_none(), "{no}");
        }
        let mid = Pattern::path("/a/**/z").unwrap();
        assert!(mid.matches("/a/z").is_some());
        assert!(mid.matches("/a/b/c/z").is_some());
        assert!(mid.matches("/a/b/c").is_none());
    }

    /// `*` and `?` stay inside one segment; `{var}` captures one or more characters.
    #[test]
    fn segment_wildcards_and_variables() {
        let p = Pattern::path("/api/*/items/{id}.json").unwrap();
        assert_eq!(
            p.matches("/api/v1/items/42.json"),
            Some(caps(&[("id", "42")]))
        );
        assert!(p.matches("/api/v1/x/items/42.json").is_none());
        assert!(
            p.matches("/api/v1/items/.json").is_none(),
            "{{id}} needs a character"
        );
        let q = Pattern::path("/v?/x").unwrap();
        assert!(q.matches("/v1/x").is_some());
        assert!(q.matches("/v12/x").is_none());
        let star = Pattern::path("/files/*").unwrap();
        assert!(star.matches("/files/").is_some(), "* may be empty");
        assert!(star.matches("/files/a/b").is_none());
    }

    /// `{*rest}` captures the remaining path with its leading slash.
    #[test]
    fn rest_capture() {
        let p = Pattern::path("/api/{service}/{*rest}").unwrap();
        assert_eq!(
            p.matches("/api/order/1/lines"),
            Some(caps(&[("service", "order"), ("rest", "/1/lines")]))
        );
        assert_eq!(
            p.matches("/api/order"),
            Some(caps(&[("service", "order"), ("rest", "")]))
        );
    }

    /// Host patterns use `.` as separator and ignore case.
    #[test]
    fn host_patterns() {
        let p = Pattern::host("**.example.org").unwrap();
        assert!(p.matches("api.example.org").is_some());
        assert!(p.matches("a.b.EXAMPLE.org").is_some());
        assert!(p.matches("example.com").is_none());
        let v = Pattern::host("{tenant}.shop.local").unwrap();
        assert_eq!(
            v.matches("acme.shop.local"),
            Some(caps(&[("tenant", "acme")]))
        );
    }

    /// Malformed patterns are rejected with a reason.
    #[test]
    fn bad_patterns() {
        assert_eq!(
            Pattern::path("api/**").unwrap_err(),
            PatternError::NotAbsolute
        );
        assert!(matches!(
            Pattern::path("/a/{id").unwrap_err(),
            PatternError::Unclosed(_)
        ));
        assert!(matches!(
            Pattern::path("/a/{id:\\d+}").unwrap_err(),
            PatternError::BadName(_)
        ));
        assert!(matches!(
            Pattern::path("/a/{*rest}/b").unwrap_err(),
            PatternError::RestNotLast(_)
        ));
        assert!(matches!(
            Pattern::path("/{x}/{x}").unwrap_err(),
            PatternError::Duplicate(_)
        ));
    }
}
