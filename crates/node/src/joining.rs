//! Joining mode: a device with a key but no community, its web UI on,
//! serves the join page ([`hearthnet_ui::Joining`]) on the UI's address
//! until an invite is redeemed there ([`crate::join`], the path of
//! `hearthnet init --join`). Then the node starts in full in this same
//! process, on the same listener and with the browser's sessions: the
//! browser, sent on to Home, is answered by the full UI at the address it
//! has open, still logged in. (Re-executing the binary would close the
//! port in between, lose the sessions kept in memory, and with port 0
//! move the UI to another port.)

use std::net::SocketAddr;
use std::sync::Arc;

use hearthnet_base::DeviceKey;
use hearthnet_config::LoadedConfig;
use hearthnet_onboarding::IdentityCard;
use hearthnet_transport::Listener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::join::{self, Joined};
use crate::{NodeError, Started};

/// What the join page hands the full node once the device has joined.
pub(crate) struct Handover {
    /// The configuration as saved, naming the community.
    pub loaded: LoadedConfig,
    /// The UI's listener, still bound.
    pub listener: Listener,
    /// The browser's logins and sessions.
    pub access: Arc<hearthnet_ui::access::Access>,
}

/// Serve the join page until the device joins (`Some`) or a shutdown
/// signal comes (`None`); `started` is told its login link.
pub(crate) async fn serve(
    loaded: &LoadedConfig,
    key: &DeviceKey,
    started: impl FnOnce(&Started),
) -> Result<Option<Handover>, NodeError> {
    let ui = &loaded.config.ui;
    let listener = crate::bind(SocketAddr::new(ui.host, ui.port)).await?;
    let addr = crate::local_addr(&listener)?;
    let kept = listener.try_clone().map_err(|source| NodeError::Io {
        context: "cannot keep the web UI's listener".into(),
        source,
    })?;
    let (joined_tx, mut joined_rx) = mpsc::channel(1);
    let redeem: hearthnet_ui::Redeemer = {
        let (loaded, key) = (loaded.clone(), key.clone());
        Arc::new(move |text: String| {
            let (mut loaded, key, joined_tx) = (loaded.clone(), key.clone(), joined_tx.clone());
            Box::pin(async move {
                // A terminal may have joined this device since the page was
                // opened (`hearthnet init --join`): the join path sees it.
                if let Ok(saved) = hearthnet_config::saved(&loaded) {
                    loaded.config.community.community_id = saved.community_id();
                }
                let joined = join::redeem(&mut loaded, &key, &text)
                    .await
                    .map_err(|e| hearthnet_bus::CallError::new(e.code(), e.to_string()))?;
                let (Joined::Now { invite, .. } | Joined::Already { invite }) = joined;
                tracing::info!(community = %invite.community_name, "joined on the join page");
                // The node goes on as a member; only the first one counts.
                let _ = joined_tx.try_send(loaded);
                Ok(invite.community_name)
            })
        })
    };
    let joining = hearthnet_ui::Joining::new(hearthnet_ui::JoiningParts {
        card: IdentityCard {
            node_id_full: key.node_id(),
            display_name: crate::view::display_name(&loaded.config),
        },
        addr,
        redeem,
    });
    let stop = CancellationToken::new();
    let server = tokio::spawn(hearthnet_transport::serve(
        listener,
        joining.router(),
        stop.clone(),
        hearthnet_transport::Serving::local(),
    ));
    tracing::info!(ui = %addr, "not a member of a community yet: serving the join page");
    started(&Started {
        ui_link: Some(joining.login_link()),
    });
    let joined = tokio::select! {
        joined = joined_rx.recv() => joined,
        () = crate::wait_for_signal() => None,
    };
    // Stop accepting at once: from now on connections wait in the
    // listener's queue for the full UI. Answers under way finish first.
    stop.cancel();
    let _ = server.await;
    Ok(joined.map(|loaded| Handover {
        loaded,
        listener: kept,
        access: joining.access(),
    }))
}
