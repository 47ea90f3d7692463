//! Line prompts on stderr, answers from stdin: works on a terminal and
//! with piped answers alike. End of input or Ctrl-C is a user abort.

use std::io::{BufRead, Write};
use std::sync::Once;

use crate::exit::{CliError, ExitStatus};

/// Make Ctrl-C during prompts exit with the spec's "user abort" code.
/// Everything written before is complete: every write is atomic.
pub fn abort_on_interrupt() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            let _ = writeln!(std::io::stderr(), "\naborted");
            std::process::exit(i32::from(ExitStatus::Usage.code()));
        });
    });
}

pub struct Prompter<R> {
    input: R,
}

impl Prompter<std::io::StdinLock<'static>> {
    pub fn stdin() -> Self {
        abort_on_interrupt();
        Self {
            input: std::io::stdin().lock(),
        }
    }
}

impl<R: BufRead> Prompter<R> {
    /// Ask `question`; an empty answer takes `default`.
    pub fn ask(&mut self, question: &str, default: &str) -> Result<String, CliError> {
        let shown = if default.is_empty() {
            format!("{question}: ")
        } else {
            format!("{question} [{default}]: ")
        };
        let mut err = std::io::stderr();
        let _ = err.write_all(shown.as_bytes());
        let _ = err.flush();
        let mut line = String::new();
        let read = self
            .input
            .read_line(&mut line)
            .map_err(|e| CliError::new(ExitStatus::Failure, e))?;
        if read == 0 {
            let _ = writeln!(err);
            return Err(CliError::aborted());
        }
        let answer = line.trim();
        Ok(if answer.is_empty() {
            default.to_owned()
        } else {
            answer.to_owned()
        })
    }

    /// Ask until the answer is one of `choices` (or a unique prefix).
    pub fn choose(
        &mut self,
        question: &str,
        choices: &[&str],
        default: &str,
    ) -> Result<String, CliError> {
        loop {
            let answer = self.ask(&format!("{question} ({})", choices.join("/")), default)?;
            let lower = answer.to_ascii_lowercase();
            let matching: Vec<&&str> = choices.iter().filter(|c| c.starts_with(&lower)).collect();
            match matching.as_slice() {
                [one] => return Ok((**one).to_owned()),
                _ => crate::printer::hint(format!("answer one of: {}", choices.join(", "))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_prefixes_and_eof() {
        let mut p = Prompter {
            input: "\nj\nmaybe\ncreate\n".as_bytes(),
        };
        assert_eq!(p.ask("Name", "garage").unwrap(), "garage");
        assert_eq!(
            p.choose("Create or join", &["create", "join"], "create")
                .unwrap(),
            "join"
        );
        assert_eq!(
            p.choose("Create or join", &["create", "join"], "create")
                .unwrap(),
            "create"
        );
        let err = p.ask("More", "").unwrap_err();
        assert_eq!(err.status, ExitStatus::Usage);
    }
}
