//! Where an error is in a TOML text, for messages of the form `file:line:column: message (key
//! `routes[0].predicates[1]`)`: the 1-based line and column of a byte offset, and the dotted key
//! path at it, found by walking the spans of the parsed document. One implementation for the
//! CLI's stack and scenario files and the api-gateway's routes file.

use toml::Spanned;

/// 1-based line and column (in characters) of byte `offset`, clamped to the text and moved back
/// to a character boundary.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The key written on the line of `offset` (`name = …` gives `name`, `[[routes]]` gives
/// `routes`): for texts that do not parse, where [`key_at`] has no document to walk.
pub fn key_on_line(text: &str, offset: usize) -> String {
    let (line, _) = line_column(text, offset);
    let written = text.lines().nth(line - 1).unwrap_or("").trim();
    if let Some((k, _)) = written.split_once('=') {
        return k.trim().to_string();
    }
    written
        .trim_matches(|c| c == '[' || c == ']')
        .trim()
        .to_string()
}

/// The dotted key at byte `offset` of `text`, found by walking the parsed document's spans;
/// empty when the text does not parse (a syntax error has no key yet).
pub fn key_at(text: &str, offset: usize) -> String {
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return String::new();
    };
    let mut path = Vec::new();
    walk_table(doc.get_ref(), offset, &mut path);
    path.join(".")
}

fn walk_table(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) {
    // Tables defined by `[header]` may not span their body, so when no entry contains the
    // offset, descend into the last entry that starts before it.
    let mut best: Option<(
        &Spanned<toml::de::DeString<'_>>,
        &Spanned<toml::de::DeValue<'_>>,
    )> = None;
    for (k, v) in table.iter() {
        if k.span().contains(&offset) {
            path.push(k.get_ref().to_string());
            return;
        }
        if v.span().contains(&offset) {
            path.push(k.get_ref().to_string());
            walk_value(v.get_ref(), offset, path);
            return;
        }
        if k.span().start <= offset && best.is_none_or(|(b, _)| b.span().start < k.span().start) {
            best = Some((k, v));
        }
    }
    if let Some((k, v)) = best {
        match v.get_ref() {
            toml::de::DeValue::Table(t) => {
                path.push(k.get_ref().to_string());
                walk_table(t, offset, path);
            }
            // An array of tables (`[[step]]`): the last element that starts before the offset.
            toml::de::DeValue::Array(a) => {
                let last = a
                    .iter()
                    .enumerate()
                    .rfind(|(_, e)| e.span().start <= offset);
                if let Some((i, e)) = last
                    && let toml::de::DeValue::Table(t) = e.get_ref()
                {
                    path.push(format!("{}[{i}]", k.get_ref()));
                    walk_table(t, offset, path);
                }
            }
            _ => {}
        }
    }
}

fn walk_value(value: &toml::de::DeValue<'_>, offset: usize, path: &mut Vec<String>) {
    match value {
        toml::de::DeValue::Table(t) => walk_table(t, offset, path),
        toml::de::DeValue::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                if v.span().contains(&offset) {
                    if let Some(last) = path.last_mut() {
                        last.push_str(&format!("[{i}]"));
                    }
                    walk_value(v.get_ref(), offset, path);
                    return;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // Inside the two bytes of `é`: moved back to its start.
        assert_eq!(line_column(text, 8), (2, 2));
        assert_eq!(line_column(text, 1000), (3, 1));
    }

    #[test]
    fn keys_in_tables_and_arrays_of_tables() {
        let text = "[defaults]\ntimeout = \"x\"\n\n[[routes]]\nid = \"a\"\n\n[[routes]]\nid = \"b\"\npredicates = [\"Path=/a\", 7]\n";
        let at = |needle: &str| key_at(text, text.find(needle).unwrap());
        assert_eq!(at("\"x\""), "defaults.timeout");
        assert_eq!(at("\"b\""), "routes[1].id");
        assert_eq!(at("7]"), "routes[1].predicates[1]");
    }

    #[test]
    fn unparseable_text_has_no_key_but_its_line_has_one() {
        let text = "[scenario]\nname = = 1\n";
        let offset = text.find("= =").unwrap();
        assert_eq!(key_at(text, offset), "");
        assert_eq!(key_on_line(text, offset), "name");
        assert_eq!(key_on_line("[[step]]\n", 2), "step");
    }
}
