//! Writing a benchmark's figures into its section of BENCHMARKS.md.
//!
//! Each benchmark owns one section, between `<!-- BEGIN name -->` and `<!-- END name -->`, and
//! rewrites only that. A name with a slash (`tracing/sampling`) is a sub-section of the part
//! before the slash: when it does not exist yet it is added at the end of its parent section.

use std::path::{Path, PathBuf};

use crate::workspace_root;

/// Replaces section `name` of the workspace's BENCHMARKS.md with `report` and returns the file's
/// path. The file is replaced whole (written aside, then renamed), so an interrupted run never
/// leaves it half written.
pub fn write_section(name: &str, report: &str) -> std::io::Result<PathBuf> {
    let path = workspace_root().join("BENCHMARKS.md");
    write_section_in(&path, name, report)?;
    Ok(path)
}

fn write_section_in(path: &Path, name: &str, report: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let updated = replace_section(&text, name, report).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, updated)?;
    std::fs::rename(&tmp, path)
}

/// `text` with section `name` replaced by (or, for a missing sub-section, extended with) `report`.
fn replace_section(text: &str, name: &str, report: &str) -> Result<String, String> {
    let (begin, end) = (
        format!("<!-- BEGIN {name} -->"),
        format!("<!-- END {name} -->"),
    );
    let block = format!("{begin}\n{}\n{end}", report.trim_end());
    if let (Some(b), Some(e)) = (text.find(&begin), text.find(&end))
        && b < e
    {
        return Ok(format!("{}{block}{}", &text[..b], &text[e + end.len()..]));
    }
    let Some((parent, _)) = name.rsplit_once('/') else {
        return Err(format!("BENCHMARKS.md has no {begin} ... {end} markers"));
    };
    let parent_end = format!("<!-- END {parent} -->");
    let at = text
        .find(&parent_end)
        .ok_or_else(|| format!("BENCHMARKS.md has no {parent_end} marker for {name}"))?;
    Ok(format!("{}{block}\n{}", &text[..at], &text[at..]))
}

#[cfg(test)]
mod tests {
    use super::replace_section;

    const DOC: &str = "# B\n<!-- BEGIN a -->\nold\n<!-- END a -->\n<!-- BEGIN t -->\n<!-- BEGIN t/x -->\nx1\n<!-- END t/x -->\n<!-- END t -->\n";

    #[test]
    fn replaces_only_its_section() {
        let out = replace_section(DOC, "a", "new\n\n").unwrap();
        assert_eq!(out, DOC.replace("old", "new"));
        let out = replace_section(DOC, "t/x", "x2").unwrap();
        assert_eq!(out, DOC.replace("x1", "x2"));
    }

    #[test]
    fn adds_a_missing_sub_section_at_its_parents_end() {
        let out = replace_section(DOC, "t/y", "y").unwrap();
        assert!(
            out.ends_with(
                "<!-- END t/x -->\n<!-- BEGIN t/y -->\ny\n<!-- END t/y -->\n<!-- END t -->\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn missing_markers_are_an_error() {
        assert!(replace_section(DOC, "zzz", "r").is_err());
        assert!(replace_section(DOC, "q/r", "r").is_err());
    }
}
