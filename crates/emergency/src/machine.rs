//! The state machine of M09 §4, fed with each round of probe results. Pure:
//! time comes in as an argument, so the rules are tested without waiting.
//!
//! - online → degraded as soon as any probe fails;
//! - degraded → offline once enough probes (two, or all when fewer are
//!   configured) have failed in every round for `offline_after`;
//! - degraded or offline → online once every probe has passed in every
//!   round for `online_after`;
//! - anti-flap: after more than [`FLAP_LIMIT`] changes within
//!   [`FLAP_WINDOW`], a change towards a less pessimistic mode waits until
//!   the window has passed (a change towards a more pessimistic one never
//!   waits).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Changes allowed within [`FLAP_WINDOW`] before the machine holds the
/// more pessimistic mode.
pub const FLAP_LIMIT: usize = 3;
pub const FLAP_WINDOW: Duration = Duration::from_secs(60);

/// Whether this node reaches the internet, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Online,
    Degraded,
    Offline,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Degraded => "degraded",
            Self::Offline => "offline",
        }
    }
}

/// How long a condition must hold before the mode follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    pub offline_after: Duration,
    pub online_after: Duration,
}

pub struct Machine {
    mode: Mode,
    debounce: Debounce,
    /// Since when every round had enough failures to mean offline.
    failing_since: Option<Instant>,
    /// Since when every round had every probe pass.
    passing_since: Option<Instant>,
    /// When the recent changes happened, oldest first.
    changes: VecDeque<Instant>,
}

impl Machine {
    /// A machine that assumes the internet is there until a probe says
    /// otherwise (at start, nothing is withdrawn before evidence).
    pub fn new(debounce: Debounce) -> Self {
        Self {
            mode: Mode::Online,
            debounce,
            failing_since: None,
            passing_since: None,
            changes: VecDeque::new(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// One round: `failed` of `probed` probes failed at `now`. The new
    /// mode, if it changed.
    pub fn observe(&mut self, failed: usize, probed: usize, now: Instant) -> Option<Mode> {
        let offline_evidence = probed > 0 && failed >= probed.min(2);
        let all_pass = failed == 0;
        self.failing_since = offline_evidence.then(|| self.failing_since.unwrap_or(now));
        self.passing_since = all_pass.then(|| self.passing_since.unwrap_or(now));
        let held = |since: Option<Instant>, long: Duration| {
            since.is_some_and(|s| now.saturating_duration_since(s) >= long)
        };
        let wanted = match self.mode {
            Mode::Online if !all_pass => Mode::Degraded,
            Mode::Online => Mode::Online,
            Mode::Degraded | Mode::Offline
                if held(self.passing_since, self.debounce.online_after) =>
            {
                Mode::Online
            }
            Mode::Degraded if held(self.failing_since, self.debounce.offline_after) => {
                Mode::Offline
            }
            held_mode => held_mode,
        };
        if wanted == self.mode {
            return None;
        }
        while self
            .changes
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= FLAP_WINDOW)
        {
            self.changes.pop_front();
        }
        if wanted < self.mode && self.changes.len() >= FLAP_LIMIT {
            return None;
        }
        self.changes.push_back(now);
        self.mode = wanted;
        Some(wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBOUNCE: Debounce = Debounce {
        offline_after: Duration::from_secs(30),
        online_after: Duration::from_secs(10),
    };

    /// Feed `(seconds after start, failed of 4)` rounds; the changes.
    fn run(machine: &mut Machine, start: Instant, rounds: &[(u64, usize)]) -> Vec<(u64, Mode)> {
        rounds
            .iter()
            .filter_map(|&(at, failed)| {
                machine
                    .observe(failed, 4, start + Duration::from_secs(at))
                    .map(|mode| (at, mode))
            })
            .collect()
    }

    #[test]
    fn transitions_follow_the_probes_after_their_debounce() {
        let start = Instant::now();
        let mut m = Machine::new(DEBOUNCE);
        let rounds: Vec<(u64, usize)> = [(0, 0), (10, 1), (12, 2), (14, 4)]
            .into_iter()
            .chain((16..=44).step_by(2).map(|t| (t, 3)))
            .chain([(46, 0), (48, 0), (50, 0), (56, 0), (58, 0)])
            .collect();
        assert_eq!(
            run(&mut m, start, &rounds),
            [
                (10, Mode::Degraded),
                // Failing since 12 s: offline 30 s later.
                (42, Mode::Offline),
                // Passing since 46 s: online 10 s later.
                (56, Mode::Online),
            ]
        );
    }

    #[test]
    fn a_single_failure_degrades_but_never_takes_the_node_offline() {
        let start = Instant::now();
        let mut m = Machine::new(DEBOUNCE);
        let rounds: Vec<(u64, usize)> = (0..100).step_by(2).map(|t| (t, 1)).collect();
        assert_eq!(run(&mut m, start, &rounds), [(0, Mode::Degraded)]);
        // An interrupted run of failures starts its 30 s again.
        let mut m = Machine::new(DEBOUNCE);
        let rounds = [(0, 2), (20, 2), (25, 1), (30, 2), (59, 2), (60, 2)];
        assert_eq!(
            run(&mut m, start, &rounds),
            [(0, Mode::Degraded), (60, Mode::Offline)]
        );
    }

    #[test]
    fn with_one_target_its_failure_is_enough() {
        let start = Instant::now();
        let mut m = Machine::new(DEBOUNCE);
        assert_eq!(m.observe(1, 1, start), Some(Mode::Degraded));
        assert_eq!(
            m.observe(1, 1, start + Duration::from_secs(30)),
            Some(Mode::Offline)
        );
    }

    #[test]
    fn anti_flap_holds_the_pessimistic_state_until_the_window_passes() {
        let quick = Debounce {
            offline_after: Duration::ZERO,
            online_after: Duration::ZERO,
        };
        let start = Instant::now();
        let mut m = Machine::new(quick);
        // online→degraded (0), →offline (1), →online (2): three changes.
        let rounds = [
            (0, 4),
            (1, 4),
            (2, 0),
            (3, 4),
            (4, 4),
            (5, 0),
            (61, 0),
            (63, 0),
        ];
        assert_eq!(
            run(&mut m, start, &rounds),
            [
                (0, Mode::Degraded),
                (1, Mode::Offline),
                (2, Mode::Online),
                // Changes towards worse are taken at once, even past the
                // limit…
                (3, Mode::Degraded),
                (4, Mode::Offline),
                // …the way back waits until it would not make more than
                // three changes within 60 s: at 61 s those of 2, 3 and 4 s
                // are still in the window, at 63 s only two.
                (63, Mode::Online),
            ]
        );
    }
}
