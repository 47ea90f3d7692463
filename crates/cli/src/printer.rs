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
