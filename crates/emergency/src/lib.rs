//! M09: whether this node reaches the internet. Owns the probes
//! ([`probe`]: a TCP connection to each configured target, all at once,
//! each within a timeout), the state machine ([`machine`]: online,
//! degraded, offline, with M09's debounce and anti-flap) and the detector
//! loop that runs them and publishes the [`Status`] on a watch channel.
//! What a change does to the node (capabilities that need the internet
//! withdrawn and restored, sync and discovery at their emergency
//! intervals, the `emergency.mode.changed` notice) is wired in `node`,
//! which owns the bus and the tasks.

pub mod machine;
pub mod probe;

use std::time::{Duration, Instant};

use hearthnet_base::Timestamp;
use hearthnet_base::constants::{
    EMERGENCY_PROBE_INTERVAL_OFFLINE_SECONDS, EMERGENCY_PROBE_INTERVAL_ONLINE_SECONDS,
    EMERGENCY_PROBE_TIMEOUT_SECONDS, EMERGENCY_TRANSITION_DEBOUNCE_SECONDS,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use machine::{Debounce, Mode};
pub use probe::{MAX_TARGETS, Target, TargetError};

/// How the detector probes and judges.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub targets: Vec<Target>,
    /// Between rounds while online.
    pub interval_online: Duration,
    /// Between rounds while degraded or offline (M09: faster, to notice
    /// the way back).
    pub interval_offline: Duration,
    pub timeout: Duration,
    pub debounce: Debounce,
}

impl Settings {
    /// M09's defaults for `targets` (at most [`MAX_TARGETS`], each
    /// parsed).
    pub fn new(targets: &[String]) -> Result<Self, TargetError> {
        if targets.is_empty() || targets.len() > MAX_TARGETS {
            return Err(TargetError::Length(format!(
                "{} targets (1 to {MAX_TARGETS})",
                targets.len()
            )));
        }
        Ok(Self {
            targets: targets
                .iter()
                .map(|t| Target::parse(t))
                .collect::<Result<_, _>>()?,
            interval_online: Duration::from_secs(EMERGENCY_PROBE_INTERVAL_ONLINE_SECONDS),
            interval_offline: Duration::from_secs(EMERGENCY_PROBE_INTERVAL_OFFLINE_SECONDS),
            timeout: Duration::from_secs(EMERGENCY_PROBE_TIMEOUT_SECONDS),
            debounce: Debounce {
                offline_after: Duration::from_secs(EMERGENCY_TRANSITION_DEBOUNCE_SECONDS),
                online_after: Duration::from_secs(10),
            },
        })
    }
}

/// What the detector knows now.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub mode: Mode,
    /// When the mode began (the node's start, for the first).
    pub since: Timestamp,
    pub since_instant: Instant,
    /// The last round: when, and each target's result.
    pub last_probe: Option<Timestamp>,
    pub results: Vec<(String, bool)>,
}

impl Status {
    fn starting() -> Self {
        Self {
            mode: Mode::Online,
            since: Timestamp::now(),
            since_instant: Instant::now(),
            last_probe: None,
            results: Vec::new(),
        }
    }
}

/// The detector's status channel, and its loop to run until `stop`.
pub fn detector(
    settings: Settings,
    stop: CancellationToken,
) -> (
    watch::Receiver<Status>,
    impl std::future::Future<Output = ()> + Send,
) {
    let (publish, status) = watch::channel(Status::starting());
    (status, run(settings, publish, stop))
}

async fn run(settings: Settings, publish: watch::Sender<Status>, stop: CancellationToken) {
    let mut machine = machine::Machine::new(settings.debounce);
    loop {
        let results = probe_all(&settings).await;
        let failed = results.iter().filter(|(_, ok)| !ok).count();
        let now = Instant::now();
        let changed = machine.observe(failed, results.len(), now);
        publish.send_modify(|status| {
            if let Some(mode) = changed {
                tracing::warn!(
                    from = status.mode.as_str(),
                    to = mode.as_str(),
                    failed,
                    probed = results.len(),
                    "internet reachability changed"
                );
                status.mode = mode;
                status.since = Timestamp::now();
                status.since_instant = now;
            }
            status.last_probe = Some(Timestamp::now());
            status.results = results;
        });
        let wait = match machine.mode() {
            Mode::Online => settings.interval_online,
            Mode::Degraded | Mode::Offline => settings.interval_offline,
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Every target at once, each within the timeout; results in the
/// configured order.
async fn probe_all(settings: &Settings) -> Vec<(String, bool)> {
    let mut probes = tokio::task::JoinSet::new();
    for (i, target) in settings.targets.iter().enumerate() {
        let (target, timeout) = (target.clone(), settings.timeout);
        probes.spawn(async move { (i, target.reachable(timeout).await) });
    }
    let mut results: Vec<(String, bool)> = settings
        .targets
        .iter()
        .map(|t| (t.text.clone(), false))
        .collect();
    while let Some(done) = probes.join_next().await {
        // A probe task that died counts as a failed probe.
        if let Ok((i, ok)) = done
            && let Some(slot) = results.get_mut(i)
        {
            slot.1 = ok;
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_detector_goes_offline_when_its_targets_stop_answering_and_comes_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = Settings {
            interval_online: Duration::from_millis(20),
            interval_offline: Duration::from_millis(20),
            timeout: Duration::from_millis(500),
            debounce: Debounce {
                offline_after: Duration::from_millis(100),
                online_after: Duration::from_millis(100),
            },
            ..Settings::new(&[addr.to_string()]).unwrap()
        };
        let stop = CancellationToken::new();
        let (mut status, run) = detector(settings, stop.clone());
        let task = tokio::spawn(run);
        let wait_for = |status: &mut watch::Receiver<Status>, mode: Mode| {
            let mut status = status.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    status.wait_for(|s| s.mode == mode && s.last_probe.is_some()),
                )
                .await
                .map(|s| s.map(|s| s.clone()))
            }
        };
        let online = wait_for(&mut status, Mode::Online).await.unwrap().unwrap();
        assert_eq!(online.results, [(addr.to_string(), true)]);
        drop(listener);
        wait_for(&mut status, Mode::Offline).await.unwrap().unwrap();
        let _back = tokio::net::TcpListener::bind(addr).await.unwrap();
        let again = wait_for(&mut status, Mode::Online).await.unwrap().unwrap();
        assert!(again.since_instant > online.since_instant);
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn settings_refuse_no_targets_too_many_and_bad_ones() {
        assert!(Settings::new(&[]).is_err());
        let many: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("h{i}")).collect();
        assert!(Settings::new(&many).is_err());
        assert!(Settings::new(&["host:0".into()]).is_err());
        assert_eq!(Settings::new(&["1.1.1.1".into()]).unwrap().targets.len(), 1);
    }
}
