//! Step 9 of the wiring: the emergency detector (M09) and what its changes
//! do to this node. Entering offline withdraws our capabilities that need
//! the internet (their descriptors say so: an LLM behind a remote API) and
//! switches sync and discovery to their emergency intervals; coming back
//! online restores both. Every change is logged and shown on `/metrics`.

use std::sync::Arc;

use hearthnet_bus::Bus;
use hearthnet_config::EmergencyConfig;
use hearthnet_emergency::{Debounce, Mode, Settings, Status};
use hearthnet_observability::metrics::Metrics;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::NodeError;

/// The emergency switch as sync and discovery follow it, and the
/// detector's status when it runs.
pub(crate) struct Emergency {
    pub in_emergency: watch::Receiver<bool>,
    pub status: Option<watch::Receiver<Status>>,
    /// Kept while the node runs: sync and discovery stop following a
    /// switch whose sender is gone.
    _switch: Arc<watch::Sender<bool>>,
}

/// Start the detector (unless `emergency.enabled` is off: then the node is
/// never in emergency).
pub(crate) fn start(
    config: &EmergencyConfig,
    bus: Arc<Bus>,
    metrics: Arc<Metrics>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> Result<Emergency, NodeError> {
    let (switch, in_emergency) = watch::channel(false);
    let switch = Arc::new(switch);
    if !config.enabled {
        return Ok(Emergency {
            in_emergency,
            status: None,
            _switch: switch,
        });
    }
    let settings = Settings {
        interval_online: config.probe_interval,
        interval_offline: config.offline_probe_interval,
        timeout: config.probe_timeout,
        debounce: Debounce {
            offline_after: config.offline_after,
            online_after: config.online_after,
        },
        ..Settings::new(&config.probe_targets).map_err(NodeError::ProbeTarget)?
    };
    let (status, detector) = hearthnet_emergency::detector(settings, stop.clone());
    tasks.spawn(detector);
    tasks.spawn(follow(
        status.clone(),
        bus,
        metrics,
        switch.clone(),
        stop.clone(),
    ));
    Ok(Emergency {
        in_emergency,
        status: Some(status),
        _switch: switch,
    })
}

async fn follow(
    mut status: watch::Receiver<Status>,
    bus: Arc<Bus>,
    metrics: Arc<Metrics>,
    switch: Arc<watch::Sender<bool>>,
    stop: CancellationToken,
) {
    let mut current = Mode::Online;
    show(&metrics, &status.borrow());
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = status.changed() => if changed.is_err() { return },
        }
        let now = status.borrow_and_update().clone();
        if now.mode == current {
            continue;
        }
        show(&metrics, &now);
        match now.mode {
            Mode::Offline => {
                let withdrawn = bus.withdraw(|d| d.needs_internet);
                tracing::warn!(
                    ?withdrawn,
                    "offline: capabilities that need the internet withdrawn"
                );
            }
            Mode::Online => {
                let restored = bus.restore(|d| d.needs_internet);
                tracing::info!(?restored, "online again: capabilities restored");
            }
            Mode::Degraded => {}
        }
        switch.send_replace(now.mode == Mode::Offline);
        current = now.mode;
    }
}

fn show(metrics: &Metrics, status: &Status) {
    let code = match status.mode {
        Mode::Online => 0,
        Mode::Degraded => 1,
        Mode::Offline => 2,
    };
    metrics.emergency_mode.set(code);
    metrics.emergency_mode_since.set(status.since.unix());
}
