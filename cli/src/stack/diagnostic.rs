//! Validation findings with their place in the file (`file:line:column`) and the dotted key
//! they concern, printed like a compiler's so editors can jump to them.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// How bad a finding is: errors stop `up`; warnings are printed and allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The stack file as the user named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// Dotted key, e.g. `services.order-service.depends_on.inventory`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {severity}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if !self.key.is_empty() {
            write!(f, " (key `{}`)", self.key)?;
        }
        Ok(())
    }
}

/// The text of a stack file, to turn byte spans into lines and columns.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    /// 1-based line and column of byte `offset` (clamped to the text).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        toml_position::line_column(self.text, offset)
    }

    /// A diagnostic at `span`.
    pub fn diagnostic(
        &self,
        severity: Severity,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = self.line_col(span.start);
        Diagnostic {
            severity,
            file: self.file.to_string(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Diagnostics as an indented block, one per line (inside error messages).
pub fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Source<'_> {
    /// The diagnostic of a file that does not parse or does not fit its serde types: the
    /// position toml gives, and the dotted key found there.
    pub fn toml_error(&self, err: &toml::de::Error) -> Diagnostic {
        let span = err.span().unwrap_or(0..0);
        let key = toml_position::key_at(self.text, span.start);
        self.diagnostic(Severity::Error, span, key, err.message().trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets map to 1-based lines and character columns, including after multi-byte text.
    #[test]
    fn line_and_column() {
        let src = Source {
            file: "f.toml",
            text: "a = 1\nbé = 2\n",
        };
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(6), (2, 1));
        assert_eq!(src.line_col(10), (2, 4));
        assert_eq!(src.line_col(1000), (3, 1));
    }
}
