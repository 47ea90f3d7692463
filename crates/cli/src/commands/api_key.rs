//! `hearthnet api-key`: the key with which programs that cannot sign
//! requests (the `openai` client libraries, Open WebUI, LangChain) use the
//! node's OpenAI-compatible gateway (SYSTEM.md item 8). It is printed
//! alone on stdout, so `export OPENAI_API_KEY=$(hearthnet api-key)` works;
//! made on first use, replaced by `--rotate`, which a running node honours
//! from its next request on. Exit 4 for a key file others can read (spec
//! §6: authentication), 1 for any other failure.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::Path;

use hearthnet_config::Env;
use hearthnet_identity::{ApiKeyError, ApiKeyFile};

use crate::cli::ApiKeyArgs;
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

pub fn run(config: Option<&Path>, env: &Env, args: ApiKeyArgs) -> CliResult {
    let loaded = hearthnet_config::load(config, env)?;
    let file = ApiKeyFile::in_dir(&loaded.paths().keys_dir);
    let path = file.path();
    let key = if args.rotate {
        let key = file.rotate().map_err(failure)?;
        printer::status(format!(
            "made a new local API key in {}: clients holding the old one are refused from now on",
            path.display()
        ));
        key
    } else {
        let (key, created) = file.load_or_create().map_err(failure)?;
        if created {
            printer::status(format!("made the local API key in {}", path.display()));
        }
        key
    };
    println!("{}", key.as_str());
    // Not when the key is captured (`$(hearthnet api-key)`): then the
    // person already knows.
    if std::io::stdout().is_terminal() {
        let t = &loaded.config.transport;
        let api = SocketAddr::new(t.api_host, t.api_port);
        printer::hint(format!(
            "export OPENAI_BASE_URL=http://{api}/v1 OPENAI_API_KEY=$(hearthnet api-key)"
        ));
    }
    Ok(ExitStatus::Success)
}

fn failure(e: ApiKeyError) -> CliError {
    let status = match e {
        ApiKeyError::Permissions { .. } => ExitStatus::Auth,
        _ => ExitStatus::Failure,
    };
    CliError::new(status, e)
}
