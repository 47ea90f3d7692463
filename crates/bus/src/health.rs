//! Health of one capability entry (M03 §5.7): a window of the last
//! `HEALTH_WINDOW_CALLS` outcomes, their p50 latency and success rate, and
//! quarantine when the rate falls below `HEALTH_QUARANTINE_THRESHOLD`.
//!
//! Where M03 is silent we decide: only the provider's failures count
//! (`internal_error`, `timeout`, `partition`), not the caller's (a bad
//! request says nothing about the provider); no quarantine before
//! `MIN_SAMPLES` outcomes, so one early failure cannot bench a new
//! provider for a minute; after a quarantine the next call is a probe
//! whose success clears the history and whose failure re-quarantines.
//! Time is tokio's clock (the same instants in production), so tests can
//! step through a quarantine on the paused clock.

use std::collections::VecDeque;
use std::time::Duration;

use hearthnet_base::constants::{
    HEALTH_QUARANTINE_SECONDS, HEALTH_QUARANTINE_THRESHOLD, HEALTH_WINDOW_CALLS,
};
use tokio::time::Instant;

pub const MIN_SAMPLES: usize = 10;

#[derive(Debug, Clone)]
pub struct Health {
    window: VecDeque<(bool, f64)>,
    quarantined_until: Option<Instant>,
    probing: bool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            window: VecDeque::with_capacity(HEALTH_WINDOW_CALLS),
            quarantined_until: None,
            probing: false,
        }
    }
}

impl Health {
    /// Record one outcome at `now`; true when this put the entry into
    /// quarantine.
    pub fn record(&mut self, success: bool, latency_ms: f64, now: Instant) -> bool {
        if self.probing {
            self.probing = false;
            if success {
                self.window.clear();
            } else {
                self.quarantined_until = Some(now + Duration::from_secs(HEALTH_QUARANTINE_SECONDS));
                return true;
            }
        }
        if self.window.len() == HEALTH_WINDOW_CALLS {
            self.window.pop_front();
        }
        self.window.push_back((success, latency_ms));
        let quarantine = self.window.len() >= MIN_SAMPLES
            && self.success_rate() < HEALTH_QUARANTINE_THRESHOLD
            && !self.is_quarantined(now);
        if quarantine {
            self.quarantined_until = Some(now + Duration::from_secs(HEALTH_QUARANTINE_SECONDS));
        }
        quarantine
    }

    pub fn is_quarantined(&self, now: Instant) -> bool {
        self.quarantined_until.is_some_and(|until| now < until)
    }

    /// Called when routing picks this entry: a call after the quarantine
    /// ran out is the probe.
    pub fn on_selected(&mut self, now: Instant) {
        if self.quarantined_until.is_some_and(|until| now >= until) {
            self.quarantined_until = None;
            self.probing = true;
        }
    }

    pub fn success_rate(&self) -> f64 {
        if self.window.is_empty() {
            return 1.0;
        }
        self.window.iter().filter(|(ok, _)| *ok).count() as f64 / self.window.len() as f64
    }

    /// Median latency of successful calls; 0 when unknown.
    pub fn p50_ms(&self) -> f64 {
        let mut lat: Vec<f64> = self
            .window
            .iter()
            .filter(|(ok, _)| *ok)
            .map(|(_, ms)| *ms)
            .collect();
        if lat.is_empty() {
            return 0.0;
        }
        lat.sort_by(f64::total_cmp);
        lat[(lat.len() - 1) / 2]
    }

    pub fn samples(&self) -> usize {
        self.window.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantines_at_threshold_then_probes() {
        let t0 = Instant::now();
        let mut h = Health::default();
        for i in 0..9 {
            assert!(
                !h.record(false, 1.0, t0),
                "no quarantine before {MIN_SAMPLES} samples ({i})"
            );
        }
        assert!(h.record(false, 1.0, t0));
        assert!(h.is_quarantined(t0 + Duration::from_secs(59)));
        let later = t0 + Duration::from_secs(61);
        assert!(!h.is_quarantined(later));
        h.on_selected(later);
        assert!(h.record(false, 1.0, later), "a failed probe re-quarantines");
        let much_later = later + Duration::from_secs(61);
        h.on_selected(much_later);
        assert!(!h.record(true, 4.0, much_later));
        assert_eq!(h.samples(), 1, "a good probe resets the history");
        assert_eq!(h.success_rate(), 1.0);
    }

    #[test]
    fn p50_and_window() {
        let t0 = Instant::now();
        let mut h = Health::default();
        for ms in [5.0, 1.0, 3.0] {
            h.record(true, ms, t0);
        }
        h.record(false, 1000.0, t0);
        assert_eq!(h.p50_ms(), 3.0);
        for _ in 0..200 {
            h.record(true, 2.0, t0);
        }
        assert_eq!(h.samples(), HEALTH_WINDOW_CALLS);
        assert_eq!(h.success_rate(), 1.0);
    }
}
