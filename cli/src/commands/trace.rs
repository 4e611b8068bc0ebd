//! `platform trace ID`: one trace from the stack's collector, drawn as the dashboard's
//! waterfall (each span under its parent, bars placed by start and duration, failures marked),
//! with its Zipkin UI link; `--json` prints the spans as Zipkin's API returns them. The
//! dashboard logs this command as the CLI equivalent of opening a trace.

use clap::Args;

use super::Global;
use super::dashboard::convert;
use crate::observe::traces::Collector;
use crate::observe::{ObserveError, Observer};
use crate::runtime::Runtime;
use crate::stack::StackFile;
use crate::{Result, output};

/// `platform trace` arguments.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The trace id (16 or 32 hex digits), as the dashboard, the logs' `trace_id` or the
    /// Zipkin UI show it.
    #[arg(value_parser = parse_id)]
    pub id: String,
    /// Columns of the waterfall [default: the terminal's, else 100].
    #[arg(long, value_parser = clap::value_parser!(u16).range(40..=500))]
    pub width: Option<u16>,
}

fn parse_id(text: &str) -> std::result::Result<String, String> {
    let id = text.trim().to_ascii_lowercase();
    if (id.len() == 16 || id.len() == 32) && id.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(format!("`{text}` is not a trace id: 16 or 32 hex digits"))
    }
}

pub async fn run(g: &Global, args: TraceArgs) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let obs = Observer::new(Runtime::connect().await?, stack).await?;
    obs.require_running()?;
    let collector = Collector::of(&obs)?;
    let spans = collector
        .trace(&obs, &args.id)
        .await?
        .ok_or_else(|| ObserveError::Status {
            what: "read a trace".into(),
            url: collector.base().to_string(),
            status: 404,
            body: format!("the collector has no trace {}", args.id),
        })?;
    if g.json {
        return output::json(&spans);
    }
    let Some(trace) = convert::trace(&spans) else {
        crate::outln!("trace {} has no spans", args.id);
        return Ok(());
    };
    let width = args.width.unwrap_or_else(|| {
        use std::io::IsTerminal as _;
        if std::io::stdout().is_terminal() {
            crossterm::terminal::size().map_or(100, |(w, _)| w)
        } else {
            100
        }
    });
    let link = collector
        .ui_base(&obs)
        .map(|b| format!("{}zipkin/traces/{}", b, trace.id));
    crate::out!(
        "{}",
        dashboard::ui::traces::waterfall_text(&trace, link.as_deref(), width)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trace ids are 16 or 32 hex digits, any case; anything else is a usage error.
    #[test]
    fn trace_ids() {
        assert_eq!(parse_id("4BF92F3577B34DA6").unwrap(), "4bf92f3577b34da6");
        assert!(parse_id("4bf92f3577b34da6a3ce929d0e0e4736").is_ok());
        assert!(parse_id("xyz").is_err());
        assert!(parse_id("4bf92f3577b34da").is_err());
    }
}
