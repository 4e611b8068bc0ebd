//! Environment values with `${...}` references, so a stack names other services instead of
//! hard-coding addresses, and per-instance values (host, id) are filled in at start.
//!
//! References: `${svc}` / `${svc.host}` (the service's DNS name on the stack network),
//! `${svc.port}` (its `port`), `${self.host}` (this container's name), `${self.id}`
//! (`svc-N`), `${self.index}` (N), `${self.port}`, `${self.service}`, `${stack.name}`.
//! `$$` is a literal `$`; any other `$` is kept as is.

use serde::Serialize;

use super::model::Stack;

/// A parsed environment value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    raw: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Ref(Reference),
}

/// One `${...}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `${svc}` or `${svc.host}`.
    ServiceHost(String),
    /// `${svc.port}`.
    ServicePort(String),
    /// `${self.host}`.
    SelfHost,
    /// `${self.id}`.
    SelfId,
    /// `${self.index}`.
    SelfIndex,
    /// `${self.port}`.
    SelfPort,
    /// `${self.service}`.
    SelfService,
    /// `${stack.name}`.
    StackName,
}

/// Why a value does not parse; `offset` is the byte offset inside the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

impl Template {
    /// Parses `raw`, rejecting unterminated or unknown references.
    pub fn parse(raw: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = raw;
        let mut offset = 0;
        while let Some(pos) = rest.find('$') {
            text.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                text.push('$');
                offset += pos + 2;
                rest = tail;
            } else if let Some(tail) = after.strip_prefix('{') {
                let Some(end) = tail.find('}') else {
                    return Err(TemplateError {
                        offset: offset + pos,
                        message: "unterminated `${`: add the closing `}`".to_string(),
                    });
                };
                let reference = parse_reference(&tail[..end]).map_err(|message| TemplateError {
                    offset: offset + pos,
                    message,
                })?;
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Ref(reference));
                offset += pos + 2 + end + 1;
                rest = &tail[end + 1..];
            } else {
                text.push('$');
                offset += pos + 1;
                rest = after;
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self {
            raw: raw.to_string(),
            parts,
        })
    }

    /// The value as written.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The references it contains, in order.
    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref(r) => Some(r),
            Part::Text(_) => None,
        })
    }

    /// The value for instance `index` (1-based) of `service`. The stack must be validated:
    /// references to services or ports that do not exist render as empty text.
    pub fn render(&self, stack: &Stack, service: &str, index: u32) -> String {
        self.render_with(str::to_string, |r| match r {
            Reference::ServiceHost(name) => name.clone(),
            Reference::ServicePort(name) => port_of(stack, name),
            Reference::SelfHost => stack.container_name(service, index),
            Reference::SelfId => format!("{service}-{index}"),
            Reference::SelfIndex => index.to_string(),
            Reference::SelfPort => port_of(stack, service),
            Reference::SelfService => service.to_string(),
            Reference::StackName => stack.name.clone(),
        })
    }

    /// The value with its literal text passed through `text` and each reference replaced by
    /// `reference`: how another target (e.g. Kubernetes manifests) fills in the references.
    pub fn render_with(
        &self,
        mut text: impl FnMut(&str) -> String,
        mut reference: impl FnMut(&Reference) -> String,
    ) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(&text(t)),
                Part::Ref(r) => out.push_str(&reference(r)),
            }
        }
        out
    }
}

/// The `port` of service `name` as text, empty when it has none (a validated stack has it).
pub fn port_of(stack: &Stack, name: &str) -> String {
    stack
        .services
        .get(name)
        .and_then(|s| s.port)
        .map(|p| p.to_string())
        .unwrap_or_default()
}

fn parse_reference(inner: &str) -> Result<Reference, String> {
    let inner = inner.trim();
    let (name, field) = match inner.split_once('.') {
        Some((n, f)) => (n, Some(f)),
        None => (inner, None),
    };
    match (name, field) {
        ("", _) => Err("empty reference `${}`".to_string()),
        ("self", Some("host")) => Ok(Reference::SelfHost),
        ("self", Some("id")) => Ok(Reference::SelfId),
        ("self", Some("index")) => Ok(Reference::SelfIndex),
        ("self", Some("port")) => Ok(Reference::SelfPort),
        ("self", Some("service")) => Ok(Reference::SelfService),
        ("self", _) => Err(format!(
            "unknown reference `${{{inner}}}`: use self.host, self.id, self.index, self.port or self.service"
        )),
        ("stack", Some("name")) => Ok(Reference::StackName),
        ("stack", _) => Err(format!("unknown reference `${{{inner}}}`: use stack.name")),
        (svc, None | Some("host")) => Ok(Reference::ServiceHost(svc.to_string())),
        (svc, Some("port")) => Ok(Reference::ServicePort(svc.to_string())),
        (_, Some(other)) => Err(format!(
            "unknown field `{other}` in `${{{inner}}}`: a service offers `host` and `port`"
        )),
    }
}

impl Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text, service references and `$$` escapes parse into the expected references.
    #[test]
    fn parses_references_and_escapes() {
        let t = Template::parse("mysql://u:p$$w@${mariadb}:${mariadb.port}/db").unwrap();
        let refs: Vec<_> = t.references().cloned().collect();
        assert_eq!(
            refs,
            vec![
                Reference::ServiceHost("mariadb".into()),
                Reference::ServicePort("mariadb".into())
            ]
        );
        assert_eq!(t.raw(), "mysql://u:p$$w@${mariadb}:${mariadb.port}/db");
    }

    /// A `$` not followed by `{` or `$` stays literal (passwords may contain one).
    #[test]
    fn lone_dollar_is_literal() {
        let t = Template::parse("a$b$").unwrap();
        assert_eq!(t.references().count(), 0);
        assert_eq!(t.parts, vec![Part::Text("a$b$".into())]);
    }

    /// Unterminated and unknown references are errors that point at the `$`.
    #[test]
    fn rejects_bad_references() {
        let e = Template::parse("x${tansu").unwrap_err();
        assert_eq!(e.offset, 1);
        assert!(e.message.contains("unterminated"));
        let e = Template::parse("ab${self.nope}").unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("self.host"));
        assert!(
            Template::parse("${tansu.ip}")
                .unwrap_err()
                .message
                .contains("`ip`")
        );
        assert!(Template::parse("${}").is_err());
    }
}
