//! Which sightings may start a manifest fetch, and in which slot.
//!
//! Announcements are unsigned UDP datagrams or mDNS records: anyone on the
//! LAN can forge them, source address included. Without limits a stream of
//! them makes this node dial whatever address they name (a reflector), and
//! keeps every fetch slot busy so that real peers are never fetched. So:
//! each source IP may start only a few fetches (a burst, then one a
//! second), the state kept for that is bounded, and part of the slots is
//! reserved for peers we already know or were configured with.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Do not ask the same address again sooner than this.
pub(crate) const RETRY_ADDRESS_AFTER: Duration = Duration::from_secs(3);
/// Fetches the announcements from one source IP may start at once; after
/// that one per [`PER_IP_REFILL`]. A host runs one node, or a few (tests
/// run several on loopback), so this never slows a real neighbourhood.
const PER_IP_BURST: u32 = 8;
const PER_IP_REFILL: Duration = Duration::from_secs(1);
/// Addresses and source IPs remembered at most, each. When full of fresh
/// entries, announcements from new addresses are dropped until some expire
/// (they come again with the next announcement); static peers still pass.
pub(crate) const MAX_TRACKED: usize = 4096;
/// Looking for expired entries walks the whole map: at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// Fetch slots any sighting may take.
pub(crate) const OPEN_FETCHES: usize = 4;
/// Fetch slots only for peers in the registry and static peers: a flood
/// of forged announcements can fill the open slots, never these.
pub(crate) const RESERVED_FETCHES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// This address was asked less than [`RETRY_ADDRESS_AFTER`] ago.
    TooSoon,
    /// Its source IP has used up its fetches for now.
    RateLimited,
    /// Too many addresses are being tracked already.
    Full,
}

struct Bucket {
    tokens: u32,
    refilled: Instant,
}

impl Bucket {
    /// Add the tokens earned since the last refill (at most the burst).
    fn refill(&mut self, now: Instant) {
        let earned =
            now.saturating_duration_since(self.refilled).as_millis() / PER_IP_REFILL.as_millis();
        let earned = u32::try_from(earned).unwrap_or(u32::MAX);
        if earned == 0 {
            return;
        }
        self.tokens = self.tokens.saturating_add(earned).min(PER_IP_BURST);
        self.refilled = if self.tokens == PER_IP_BURST {
            now
        } else {
            self.refilled + PER_IP_REFILL * earned
        };
    }
}

/// Per-address spacing and per-source-IP rate of fetches. Driven with an
/// explicit clock so tests need not wait.
pub(crate) struct FetchGate {
    last_try: HashMap<SocketAddr, Instant>,
    per_ip: HashMap<IpAddr, Bucket>,
    pruned: Option<Instant>,
}

impl FetchGate {
    pub(crate) fn new() -> Self {
        Self {
            last_try: HashMap::new(),
            per_ip: HashMap::new(),
            pruned: None,
        }
    }

    /// May a sighting of `addr` start a fetch now? `rate_limited` is false
    /// only for static peers: the owner named them, nobody can forge them.
    pub(crate) fn admit(
        &mut self,
        addr: SocketAddr,
        rate_limited: bool,
        now: Instant,
    ) -> Result<(), Refused> {
        if self
            .last_try
            .get(&addr)
            .is_some_and(|t| now.saturating_duration_since(*t) < RETRY_ADDRESS_AFTER)
        {
            return Err(Refused::TooSoon);
        }
        if rate_limited {
            self.prune_if_full(now);
            let new_addr = !self.last_try.contains_key(&addr);
            let new_ip = !self.per_ip.contains_key(&addr.ip());
            if (new_addr && self.last_try.len() >= MAX_TRACKED)
                || (new_ip && self.per_ip.len() >= MAX_TRACKED)
            {
                return Err(Refused::Full);
            }
            let bucket = self.per_ip.entry(addr.ip()).or_insert(Bucket {
                tokens: PER_IP_BURST,
                refilled: now,
            });
            bucket.refill(now);
            if bucket.tokens == 0 {
                return Err(Refused::RateLimited);
            }
            bucket.tokens -= 1;
        }
        self.last_try.insert(addr, now);
        Ok(())
    }

    /// Forget addresses that may be asked again and IPs whose bucket is
    /// full again (forgetting them changes nothing), once a map is full.
    fn prune_if_full(&mut self, now: Instant) {
        let full = self.last_try.len() >= MAX_TRACKED || self.per_ip.len() >= MAX_TRACKED;
        if !full
            || self
                .pruned
                .is_some_and(|t| now.saturating_duration_since(t) < PRUNE_EVERY)
        {
            return;
        }
        self.pruned = Some(now);
        self.last_try
            .retain(|_, t| now.saturating_duration_since(*t) < RETRY_ADDRESS_AFTER);
        self.per_ip.retain(|_, b| {
            b.refill(now);
            b.tokens < PER_IP_BURST
        });
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        (self.last_try.len(), self.per_ip.len())
    }
}

/// The manifest-fetch slots: open ones, and ones reserved for known peers.
pub(crate) struct FetchSlots {
    open: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
}

impl FetchSlots {
    pub(crate) fn new() -> Self {
        Self {
            open: Arc::new(Semaphore::new(OPEN_FETCHES)),
            reserved: Arc::new(Semaphore::new(RESERVED_FETCHES)),
        }
    }

    /// A slot now, if one is free: a known peer's in the reserved slots
    /// first, then in the open ones; anyone else's only in the open ones.
    pub(crate) fn try_take(&self, known: bool) -> Option<OwnedSemaphorePermit> {
        if known && let Ok(permit) = self.reserved.clone().try_acquire_owned() {
            return Some(permit);
        }
        self.open.clone().try_acquire_owned().ok()
    }

    /// A reserved slot, waiting for one (refreshing a known peer).
    pub(crate) async fn take_reserved(&self) -> Option<OwnedSemaphorePermit> {
        self.reserved.clone().acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    #[test]
    fn one_address_is_asked_at_most_every_three_seconds() {
        let mut gate = FetchGate::new();
        let t = Instant::now();
        let a = addr([10, 0, 0, 1], 7000);
        assert_eq!(gate.admit(a, true, t), Ok(()));
        assert_eq!(
            gate.admit(a, true, t + Duration::from_secs(2)),
            Err(Refused::TooSoon)
        );
        // Static peers too: spacing protects the peer, not us.
        assert_eq!(
            gate.admit(a, false, t + Duration::from_secs(2)),
            Err(Refused::TooSoon)
        );
        assert_eq!(gate.admit(a, true, t + RETRY_ADDRESS_AFTER), Ok(()));
    }

    #[test]
    fn one_source_ip_naming_many_ports_gets_a_burst_then_one_a_second() {
        let mut gate = FetchGate::new();
        let t = Instant::now();
        let ip = [192, 168, 1, 66];
        for port in 0..PER_IP_BURST as u16 {
            assert_eq!(gate.admit(addr(ip, 1000 + port), true, t), Ok(()));
        }
        assert_eq!(
            gate.admit(addr(ip, 2000), true, t),
            Err(Refused::RateLimited)
        );
        // Another host, and a static peer on the flooding one, still pass.
        assert_eq!(gate.admit(addr([192, 168, 1, 7], 7000), true, t), Ok(()));
        assert_eq!(gate.admit(addr(ip, 3000), false, t), Ok(()));
        // One more a second.
        let later = t + PER_IP_REFILL;
        assert_eq!(gate.admit(addr(ip, 2001), true, later), Ok(()));
        assert_eq!(
            gate.admit(addr(ip, 2002), true, later),
            Err(Refused::RateLimited)
        );
        // A quiet minute fills the bucket again, no further.
        let quiet = later + Duration::from_secs(60);
        for port in 0..PER_IP_BURST as u16 {
            assert_eq!(gate.admit(addr(ip, 4000 + port), true, quiet), Ok(()));
        }
        assert_eq!(
            gate.admit(addr(ip, 5000), true, quiet),
            Err(Refused::RateLimited)
        );
    }

    #[test]
    fn forged_sources_are_tracked_within_a_bound_and_static_peers_still_pass() {
        let mut gate = FetchGate::new();
        let t = Instant::now();
        let forged = |i: u32| SocketAddr::from((i.to_be_bytes(), 7000));
        let mut refused = 0;
        for i in 0..(2 * MAX_TRACKED as u32) {
            if gate.admit(forged(0x0a00_0000 + i), true, t) == Err(Refused::Full) {
                refused += 1;
            }
            let (addrs, ips) = gate.tracked();
            assert!(addrs <= MAX_TRACKED && ips <= MAX_TRACKED);
        }
        assert_eq!(refused, MAX_TRACKED);
        let configured = addr([10, 9, 9, 9], 7000);
        assert_eq!(gate.admit(configured, false, t), Ok(()));
        // Once the entries expire there is room again.
        let later = t + Duration::from_secs(60);
        assert_eq!(gate.admit(forged(0x0b00_0000), true, later), Ok(()));
        assert!(gate.tracked().0 < MAX_TRACKED);
    }

    #[test]
    fn strangers_cannot_take_the_slots_reserved_for_known_peers() {
        let slots = FetchSlots::new();
        let strangers: Vec<_> = (0..OPEN_FETCHES)
            .map(|_| slots.try_take(false).unwrap())
            .collect();
        assert!(slots.try_take(false).is_none(), "the open slots are full");
        let known: Vec<_> = (0..RESERVED_FETCHES)
            .map(|_| slots.try_take(true).unwrap())
            .collect();
        assert!(slots.try_take(true).is_none());
        // A known peer falls back to an open slot when one frees up.
        drop(strangers);
        let fallback = slots.try_take(true);
        assert!(fallback.is_some());
        drop(known);
        // Reserved slots freed are not open to strangers beyond the open ones.
        let open: Vec<_> = std::iter::from_fn(|| slots.try_take(false)).collect();
        assert_eq!(open.len(), OPEN_FETCHES - 1);
    }
}
