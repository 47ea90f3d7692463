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

/// Print an aligned table on stdout. When it would overflow the terminal,
/// the `shrink` column is cut (with `…`) to make it fit.
pub fn table(headers: &[&str], rows: &[Vec<String>], shrink: usize) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
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
        println!("{}", render(row.clone()));
    }
}
