//! `platform logs SERVICE [-f] [--since T] [--grep RE] [--tail N]`: the output of every
//! instance of a service (running or stopped), merged in time order and prefixed by instance
//! (`order-service-2 | ...`). With `--follow` the live streams are merged as they arrive (see
//! [`crate::observe::logs::LiveMerger`]) until every container stops or Ctrl-C. `--json` prints
//! one JSON object per line (`instance`, `container`, `stream`, `timestamp`, `text`).

use std::time::Duration;

use clap::Args;
use futures::StreamExt;

use super::Global;
use crate::observe::logs::{self, Tagged, Tagger};
use crate::observe::{ObserveError, instance_label};
use crate::runtime::{ContainerInfo, LogOptions, Runtime};
use crate::stack::StackFile;
use crate::{Result, output};

/// How long follow mode holds a line to put lines of different instances in order.
const LIVE_DELAY: Duration = Duration::from_millis(250);

/// `platform logs` arguments.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The service whose instances to show.
    pub service: String,
    /// Keep printing new output until the containers stop (or Ctrl-C).
    #[arg(short, long)]
    pub follow: bool,
    /// Only output since then: a duration back from now (`10m`, `2h`), an RFC 3339 time or
    /// Unix seconds.
    #[arg(long, value_parser = parse_since)]
    pub since: Option<i64>,
    /// Only lines matching this regular expression.
    #[arg(long, value_parser = parse_regex)]
    pub grep: Option<regex::Regex>,
    /// Only the last N lines (of the merged output; with --follow, per instance before following).
    #[arg(long)]
    pub tail: Option<u64>,
    /// Show Docker's timestamp of each line.
    #[arg(short, long)]
    pub timestamps: bool,
}

fn parse_since(text: &str) -> std::result::Result<i64, String> {
    logs::parse_since(text, chrono::Utc::now())
}

fn parse_regex(text: &str) -> std::result::Result<regex::Regex, String> {
    regex::Regex::new(text).map_err(|e| e.to_string())
}

pub async fn run(g: &Global, args: LogsArgs) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    stack.service(&args.service)?;
    let rt = Runtime::connect().await?;
    let containers = rt
        .list_containers(Some(&stack.name), Some(&args.service))
        .await?;
    if containers.is_empty() {
        return Err(ObserveError::NoInstance {
            service: args.service.clone(),
            stack: stack.name.clone(),
        }
        .into());
    }
    let printer = Printer::new(&containers, g.json, args.timestamps);
    if args.follow {
        follow(&rt, &containers, &args, &printer).await
    } else {
        read(&rt, &containers, &args, &printer).await
    }
}

/// Reads what each container has written so far, merges and prints it.
async fn read(
    rt: &Runtime,
    containers: &[ContainerInfo],
    args: &LogsArgs,
    printer: &Printer,
) -> Result<()> {
    // With --grep the tail applies to matching lines, so Docker must send everything.
    let options = LogOptions {
        follow: false,
        since: args.since,
        tail: if args.grep.is_some() { None } else { args.tail },
    };
    let reads = containers.iter().map(|c| {
        let options = options.clone();
        async move {
            let mut tagger = Tagger::new(&instance_label(c), &c.name);
            let mut lines = Vec::new();
            let mut stream = Box::pin(rt.logs(&c.name, &options));
            while let Some(line) = stream.next().await {
                lines.push(tagger.tag(line?));
            }
            Ok::<_, crate::runtime::RuntimeError>(lines)
        }
    });
    let per_instance = futures::future::try_join_all(reads).await?;
    let merged = logs::merge(per_instance);
    let lines = logs::last(logs::filter(merged, args.grep.as_ref()), args.tail);
    for line in &lines {
        printer.print(line);
    }
    Ok(())
}

/// Follows every container's stream, printing lines in time order until Ctrl-C.
async fn follow(
    rt: &Runtime,
    containers: &[ContainerInfo],
    args: &LogsArgs,
    printer: &Printer,
) -> Result<()> {
    let options = LogOptions {
        follow: true,
        since: args.since,
        tail: args.tail,
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    logs::follow(rt, containers, &options, LIVE_DELAY, stop, |lines| {
        for line in logs::filter(lines, args.grep.as_ref()) {
            printer.print(&line);
        }
    })
    .await?;
    Ok(())
}

/// Writes lines as `instance | text`, or as JSON lines.
struct Printer {
    json: bool,
    timestamps: bool,
    width: usize,
}

impl Printer {
    fn new(containers: &[ContainerInfo], json: bool, timestamps: bool) -> Self {
        let width = containers
            .iter()
            .map(|c| instance_label(c).len())
            .max()
            .unwrap_or(0);
        Self {
            json,
            timestamps,
            width,
        }
    }

    fn print(&self, line: &Tagged) {
        if self.json {
            match serde_json::to_string(line) {
                Ok(text) => output::write_text(format_args!("{text}\n")),
                Err(e) => eprintln!("error: cannot write a log line as JSON: {e}"),
            }
        } else if self.timestamps {
            crate::outln!(
                "{:<w$} | {} {}",
                line.instance,
                line.timestamp,
                line.text,
                w = self.width
            );
        } else {
            crate::outln!("{:<w$} | {}", line.instance, line.text, w = self.width);
        }
    }
}
