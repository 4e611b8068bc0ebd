//! How read commands print: human text by default, one JSON document with `--json`. JSON goes to
//! stdout as a single pretty document so scripts can pipe it into `jq`; errors stay on stderr.

use std::io::Write;

use serde::Serialize;

use crate::Result;

/// Writes `value` as pretty JSON followed by a newline. A reader that went away (`| head`)
/// is not an error.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    write_text(format_args!("{text}\n"));
    Ok(())
}

/// Writes to stdout, ignoring a closed pipe: `platform images | head` must not panic the way
/// `println!` does, and there is no one left to tell.
pub fn write_text(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write output: {e}");
    }
}

/// `println!` for command output, without the panic on a closed pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_text(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for command output, without the panic on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_text(format_args!($($arg)*))
    };
}

/// Renders `value` as the pretty JSON string [`json`] prints (used by golden tests).
pub fn json_string<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

/// Pads rows into aligned columns for human output; the first row is the header.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns line up on the widest cell and trailing spaces are trimmed.
    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["NAME".into(), "STATE".into()],
            vec!["discovery-server".into(), "running".into()],
            vec!["db".into(), String::new()],
        ];
        assert_eq!(
            table(&rows),
            "NAME              STATE\ndiscovery-server  running\ndb\n"
        );
    }
}
