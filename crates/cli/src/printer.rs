//! What goes where: data on stdout (pipeable), status, hints and errors
//! on stderr. Colour only on a terminal and never with NO_COLOR: `anstream`
//! strips styles otherwise. Colours have fixed meanings: green = passed,
//! red = failed, yellow = how to fix, dim = detail.

use anstyle::{AnsiColor, Style};

pub const PASS: Style = AnsiColor::Green.on_default().bold();
pub const FAIL: Style = AnsiColor::Red.on_default().bold();
pub const FIX: Style = AnsiColor::Yellow.on_default();
pub const DIM: Style = Style::new().dimmed();
pub const EMPHASIS: Style = Style::new().bold();

/// A status line for people, on stderr.
pub fn status(message: impl std::fmt::Display) {
    anstream::eprintln!("{message}");
}

/// A hint on stderr, prefixed `hint:`.
pub fn hint(message: impl std::fmt::Display) {
    anstream::eprintln!("{FIX}hint:{FIX:#} {message}");
}

/// An error with its chain of causes, on stderr.
pub fn error(err: &anyhow::Error) {
    anstream::eprintln!("{FAIL}error:{FAIL:#} {err}");
    for cause in err.chain().skip(1) {
        anstream::eprintln!("  {DIM}caused by:{DIM:#} {cause}");
    }
}

/// Width of the terminal on stdout, if stdout is one.
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(std::io::stdout())
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|w| *w > 0)
}

/// Text that others wrote (a message, a post, a name), safe to print:
/// control characters (terminal escape sequences begin with one) and the
/// bidirectional overrides are shown as `\u{…}` escapes, so a member can
/// neither drive the terminal nor reorder or forge what is shown. A
/// newline is kept, followed by `indent`, when one is given (a continued
/// line can never pass for a new entry); otherwise it is escaped too.
pub fn untrusted(text: &str, indent: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match (c, indent) {
            ('\n', Some(indent)) => {
                out.push('\n');
                out.push_str(indent);
            }
            (c, _)
                if c.is_control()
                    || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// Print an aligned table on stdout. When it would overflow the terminal,
/// the `shrink` column is cut (with `…`) to make it fit. Cells are printed
/// as [`untrusted`] text: one line each, no escapes.
pub fn table(headers: &[&str], rows: &[Vec<String>], shrink: usize) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| untrusted(cell, None)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    if let Some(max) = terminal_width() {
        let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len().saturating_sub(1));
        if total > max && shrink < widths.len() {
            let excess = total - max;
            widths[shrink] = widths[shrink]
                .saturating_sub(excess)
                .max(headers[shrink].len())
                .max(3);
        }
    }
    let render = |cells: Vec<String>| {
        let mut line = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            let w = widths[i];
            let cell = if cell.chars().count() > w {
                let mut cut: String = cell.chars().take(w.saturating_sub(1)).collect();
                cut.push('…');
                cut
            } else {
                cell
            };
            if i + 1 == widths.len() {
                line.push_str(&cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        line.trim_end().to_owned()
    };
    anstream::println!(
        "{EMPHASIS}{}{EMPHASIS:#}",
        render(headers.iter().map(|h| h.to_string()).collect())
    );
    for row in rows {
        println!("{}", render(row));
    }
}

#[cfg(test)]
mod tests {
    use super::untrusted;

    #[test]
    fn text_from_others_cannot_drive_the_terminal() {
        // A colour, a cursor move to rewrite the line above, an OSC 52
        // clipboard write, a right-to-left override.
        let hostile = "hi\u{1b}[31m red\u{1b}[1A\r\u{1b}]52;c;aGk=\u{7}\u{202e}txt.exe";
        assert_eq!(
            untrusted(hostile, None),
            "hi\\u{1b}[31m red\\u{1b}[1A\\u{d}\\u{1b}]52;c;aGk=\\u{7}\\u{202e}txt.exe"
        );
        // Newlines: kept and indented in a message, escaped in a cell.
        assert_eq!(untrusted("a\nb", Some("    ")), "a\n    b");
        assert_eq!(untrusted("a\nb", None), "a\\u{a}b");
        assert_eq!(untrusted("Grüße 👋", None), "Grüße 👋");
    }
}
