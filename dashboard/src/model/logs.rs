//! The logs panel's data: the followed output of the selected service (or one instance of it),
//! merged in time order by the CLI, with each line's level and trace id when the service logs
//! JSON. The filter (`/` in the logs view) keeps lines by text, by minimum level
//! (`level:warn`) and by trace id (`trace:4bf92f35…`); a trace id in a line opens that trace.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

/// How many lines the panel keeps.
pub const LOG_LINES: usize = 5000;

/// A log level, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    /// Reads `ERROR`, `warn`, `warning`, ... (any case).
    pub fn parse(text: &str) -> Option<Level> {
        match text.to_ascii_lowercase().as_str() {
            "error" | "err" | "fatal" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            "trace" => Some(Level::Trace),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    /// `order-service-2`.
    pub instance: String,
    pub level: Option<Level>,
    /// The message (for JSON lines, the `message` field and then the other fields).
    pub text: String,
    pub trace_id: Option<String>,
}

/// Whose output is followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    pub service: String,
    /// One instance only, or all of them.
    pub instance: Option<u32>,
}

impl LogTarget {
    /// `order-service` or `order-service-2`.
    pub fn label(&self) -> String {
        match self.instance {
            Some(n) => format!("{}-{n}", self.service),
            None => self.service.clone(),
        }
    }
}

/// The filter of the logs view, parsed from what the user typed after `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Words that must all appear (case-insensitive).
    pub words: Vec<String>,
    /// The least severe level shown.
    pub level: Option<Level>,
    /// Only lines of this trace.
    pub trace: Option<String>,
}

impl LogFilter {
    /// `level:warn trace:4bf9 timeout` → level at least WARN, trace id starting 4bf9, text
    /// containing "timeout". Unknown levels are taken as words.
    pub fn parse(text: &str) -> LogFilter {
        let mut f = LogFilter::default();
        for word in text.split_whitespace() {
            if let Some(l) = word.strip_prefix("level:").and_then(Level::parse) {
                f.level = Some(l);
            } else if let Some(t) = word.strip_prefix("trace:").filter(|t| !t.is_empty()) {
                f.trace = Some(t.to_ascii_lowercase());
            } else {
                f.words.push(word.to_lowercase());
            }
        }
        f
    }

    /// Whether `line` passes.
    pub fn keeps(&self, line: &LogLine) -> bool {
        if let Some(min) = self.level
            && line.level.is_none_or(|l| l > min)
        {
            return false;
        }
        if let Some(t) = &self.trace
            && !line
                .trace_id
                .as_deref()
                .is_some_and(|id| id.starts_with(t.as_str()))
        {
            return false;
        }
        if self.words.is_empty() {
            return true;
        }
        let text = line.text.to_lowercase();
        let instance = line.instance.to_lowercase();
        self.words
            .iter()
            .all(|w| text.contains(w) || instance.contains(w))
    }
}

/// What the panel keeps.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    pub target: Option<LogTarget>,
    lines: VecDeque<LogLine>,
    /// Why following stopped, when it did (the container went away, Docker failed).
    pub error: Option<String>,
}

impl Logs {
    /// Follows another target: the old lines go.
    pub fn retarget(&mut self, target: Option<LogTarget>) {
        if self.target != target {
            self.lines.clear();
            self.error = None;
        }
        self.target = target;
    }

    /// Appends lines of `target` (lines of a target no longer followed are dropped).
    pub fn append(&mut self, target: &LogTarget, lines: Vec<LogLine>) {
        if self.target.as_ref() != Some(target) {
            return;
        }
        for l in lines {
            if self.lines.len() == LOG_LINES {
                self.lines.pop_front();
            }
            self.lines.push_back(l);
        }
    }

    /// Every line kept, oldest first.
    pub fn lines(&self) -> impl DoubleEndedIterator<Item = &LogLine> {
        self.lines.iter()
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn line(
        instance: &str,
        level: Option<Level>,
        text: &str,
        trace: Option<&str>,
    ) -> LogLine {
        LogLine {
            at: DateTime::from_timestamp(1_735_732_800, 0).unwrap(),
            instance: instance.into(),
            level,
            text: text.into(),
            trace_id: trace.map(str::to_string),
        }
    }

    /// The filter combines a minimum level, a trace id prefix and words (all must match, in
    /// the text or the instance name, any case).
    #[test]
    fn filter() {
        let f = LogFilter::parse("level:warn trace:AB Timeout");
        assert_eq!(f.level, Some(Level::Warn));
        assert_eq!(f.trace.as_deref(), Some("ab"));
        assert_eq!(f.words, vec!["timeout"]);
        let hit = line("o-1", Some(Level::Error), "inventory timeout", Some("abcd"));
        assert!(f.keeps(&hit));
        assert!(!f.keeps(&line(
            "o-1",
            Some(Level::Info),
            "inventory timeout",
            Some("abcd")
        )));
        assert!(!f.keeps(&line(
            "o-1",
            Some(Level::Warn),
            "inventory timeout",
            Some("cd")
        )));
        assert!(!f.keeps(&line("o-1", None, "inventory timeout", Some("abcd"))));
        assert!(LogFilter::parse("o-1").keeps(&line("o-1", None, "x", None)));
        assert_eq!(LogFilter::parse("level:loud").words, vec!["level:loud"]);
    }

    /// Lines of another target are dropped; retargeting clears the panel.
    #[test]
    fn targets() {
        let a = LogTarget {
            service: "order-service".into(),
            instance: None,
        };
        let b = LogTarget {
            service: "order-service".into(),
            instance: Some(2),
        };
        let mut logs = Logs::default();
        logs.retarget(Some(a.clone()));
        logs.append(&a, vec![line("order-service-1", None, "x", None)]);
        logs.append(&b, vec![line("order-service-2", None, "y", None)]);
        assert_eq!(logs.len(), 1);
        logs.retarget(Some(b.clone()));
        assert!(logs.is_empty());
        assert_eq!(b.label(), "order-service-2");
    }
}
