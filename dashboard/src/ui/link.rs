//! OSC 8 hyperlinks (`ESC ] 8 ; ; URL ESC \ text ESC ] 8 ; ; ESC \`): terminals that know them
//! (most current ones, tmux 3.4+ with `hyperlinks` in `terminal-features`) open the URL on a
//! click; others show the text. ratatui measures escape sequences as text, so the whole link
//! goes into its first cell with [`CellDiffOption::ForcedWidth`] set to the text's width; the
//! cells it covers keep the plain text, which is what snapshots and `--snapshot` print.

use ratatui::buffer::{Buffer, CellDiffOption};
use ratatui::style::Style;

/// The escape sequence that opens `url`, then `text`, then the closing sequence.
pub fn osc8(url: &str, text: &str) -> String {
    // Control characters in a URL would end the sequence early: drop them.
    let url: String = url.chars().filter(|c| !c.is_control()).collect();
    format!("\x1b]8;;{url}\x1b\\{text}\x1b]8;;\x1b\\")
}

/// Writes `text` at `(x, y)`, at most `max_width` cells, in `style`; as a hyperlink to `url`
/// when `enabled`. Returns the x after the text.
#[allow(clippy::too_many_arguments)]
pub fn write(
    buf: &mut Buffer,
    x: u16,
    y: u16,
    max_width: u16,
    text: &str,
    url: &str,
    style: Style,
    enabled: bool,
) -> u16 {
    let (end, _) = buf.set_stringn(x, y, text, usize::from(max_width), style);
    let width = end.saturating_sub(x);
    if enabled && let Some(w) = std::num::NonZeroU16::new(width) {
        let shown: String = (x..end)
            .filter_map(|cx| buf.cell((cx, y)).map(|c| c.symbol().to_string()))
            .collect();
        if let Some(cell) = buf.cell_mut((x, y)) {
            cell.set_symbol(&osc8(url, &shown))
                .set_diff_option(CellDiffOption::ForcedWidth(w));
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::layout::Rect;

    /// A link puts the whole escape sequence in its first cell with the text's width, and the
    /// plain text stays in the cells (what text snapshots read); disabled, only text is written.
    #[test]
    fn link_in_first_cell() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 12, 1));
        let end = write(
            &mut buf,
            1,
            0,
            5,
            "4bf92f3577b34da6",
            "http://127.0.0.1:9411/zipkin/traces/4bf92f3577b34da6",
            Style::new(),
            true,
        );
        assert_eq!(end, 6);
        let first = &buf[(1, 0)];
        assert_eq!(
            first.symbol(),
            "\x1b]8;;http://127.0.0.1:9411/zipkin/traces/4bf92f3577b34da6\x1b\\4bf92\x1b]8;;\x1b\\"
        );
        assert_eq!(
            first.diff_option,
            CellDiffOption::ForcedWidth(std::num::NonZeroU16::new(5).unwrap())
        );
        assert_eq!(buf[(2, 0)].symbol(), "b");

        let mut plain = Buffer::empty(Rect::new(0, 0, 12, 1));
        write(&mut plain, 0, 0, 12, "abc", "http://x", Style::new(), false);
        assert_eq!(plain[(0, 0)].symbol(), "a");
        assert_eq!(
            osc8("http://x\x07y", "t"),
            "\x1b]8;;http://xy\x1b\\t\x1b]8;;\x1b\\"
        );
    }
}
