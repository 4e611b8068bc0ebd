//! One frame as plain text: what `platform dashboard --snapshot` prints and what the snapshot
//! tests compare. Hyperlink escapes are dropped (their cells keep the text), wide characters
//! are written once, trailing spaces are trimmed.

use ratatui::buffer::{Buffer, CellDiffOption};
use ratatui::layout::Rect;
use ratatui::widgets::Widget;

use crate::App;

/// Draws `app` at `width`×`height` and returns the screen as text, one line per row.
pub fn render(app: &App, width: u16, height: u16) -> String {
    let area = Rect::new(0, 0, width, height);
    let mut buf = Buffer::empty(area);
    app.render(area, &mut buf);
    buffer_text(&buf)
}

/// The text of a buffer, one line per row.
pub fn buffer_text(buf: &Buffer) -> String {
    let mut out = String::new();
    let area = buf.area;
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        let mut x = area.left();
        while x < area.right() {
            let cell = &buf[(x, y)];
            let skip = match cell.diff_option {
                CellDiffOption::ForcedWidth(w) => {
                    // A hyperlink: the covered cells hold the plain text.
                    if w.get() > 1 || cell.symbol().contains('\x1b') {
                        line.push_str(&strip_escapes(cell.symbol()));
                        w.get()
                    } else {
                        line.push_str(cell.symbol());
                        1
                    }
                }
                _ => {
                    line.push_str(cell.symbol());
                    unicode_width(cell.symbol())
                }
            };
            x = x.saturating_add(skip.max(1));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Removes OSC (`ESC ] … ESC \` or `… BEL`) and CSI (`ESC [ … letter`) sequences.
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' {
                        break;
                    }
                    if c == '\x1b' {
                        chars.next();
                        break;
                    }
                }
            }
            Some('[') => {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Display width of a cell's symbol (1 for ordinary text, 2 for wide characters).
fn unicode_width(symbol: &str) -> u16 {
    use ratatui::text::Span;
    u16::try_from(Span::raw(symbol).width()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Escapes go, text stays.
    #[test]
    fn strips_escapes() {
        assert_eq!(
            strip_escapes("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x1b[31mred\x1b[0m"),
            "link red"
        );
        assert_eq!(strip_escapes("\x1b]8;;u\x07t\x1b]8;;\x07"), "t");
    }
}
