//! `hearthnet ui link`, and what `hearthnet run` says about the web UI: a
//! one-time login link, on stdout alone so a script can take it. The
//! running node makes it, asked over the signed local API (own key only),
//! so only someone who can read this node's key can log a browser in.

use std::path::Path;

use hearthnet_config::Env;
use hearthnet_wire::local::UiLink;

use super::node_client;
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

pub fn link(config: Option<&Path>, env: &Env) -> CliResult {
    let client = node_client::connect(config, env)?;
    let link = client.ui_link().map_err(CliError::from_client)?;
    offer(&link, false);
    Ok(ExitStatus::Success)
}

/// A pairing code for a device on the LAN: the code on stdout alone (a
/// script may take it), where to go and what to compare on stderr.
pub fn pair(config: Option<&Path>, env: &Env) -> CliResult {
    let client = node_client::connect(config, env)?;
    let pairing = client.ui_pairing().map_err(CliError::from_client)?;
    let minutes = pairing.expires_in_seconds / 60;
    printer::status(format!(
        "pairing code for a device on this network (works once, within {minutes} min; `hearthnet ui pair` gives another):"
    ));
    println!("{}", pairing.code);
    match pairing.urls.as_slice() {
        [] => printer::hint(
            "this machine has no LAN address to offer: connect it to the household's network",
        ),
        urls => printer::status(format!(
            "on the device, open {} and enter the code",
            urls.join(" or ")
        )),
    }
    printer::status(format!(
        "its browser warns about the node's own certificate: accept it only if its SHA-256 fingerprint is {}",
        pairing.certificate_sha256
    ));
    Ok(ExitStatus::Success)
}

/// Print `link` (or, with `launch_browser`, open it in the desktop's
/// browser, falling back to printing it) and say how long it works.
pub fn offer(link: &UiLink, launch_browser: bool) {
    let minutes = link.expires_in_seconds / 60;
    if launch_browser {
        // The browser spends the link; printing it too would offer a link
        // that no longer works.
        match std::process::Command::new("xdg-open")
            .arg(&link.url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(_) => {
                printer::status(
                    "web UI: opened in your browser (`hearthnet ui link` gives another link)",
                );
                return;
            }
            Err(e) => printer::hint(format!(
                "ui.launch_browser: cannot start xdg-open ({e}); open the link below instead"
            )),
        }
    }
    printer::status(format!(
        "web UI: open this link in this computer's browser (it works once, within {minutes} min; `hearthnet ui link` gives another):"
    ));
    println!("{}", link.url);
}
