//! limits: keyed rate limits (governor) for logins and API calls, with bounded memory and a
//! clock tests can move by hand.
//!
//! Two shapes: [`Keyed`] counts every attempt (admin logins, API requests per token);
//! [`Failures`] counts only failures and blocks a key once it has failed too often (MySQL-port
//! logins, where apps open many good connections and must never be slowed by them).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// At most this many keys are tracked per limiter. Past it, unseen keys are refused (fail
/// closed) until old ones age out: an attacker with many addresses cannot grow our memory.
pub const MAX_KEYS: usize = 100_000;

/// The limiters' clock: monotonic time, or a hand-moved one in tests.
#[derive(Clone)]
pub struct LimitClock {
    start: std::time::Instant,
    fake: Option<Arc<AtomicU64>>,
}

impl Default for LimitClock {
    fn default() -> Self {
        Self {
            start: std::time::Instant::now(),
            fake: None,
        }
    }
}

impl LimitClock {
    /// A clock that only moves when `advance` is called.
    pub fn fake() -> Self {
        Self {
            start: std::time::Instant::now(),
            fake: Some(Arc::new(AtomicU64::new(0))),
        }
    }

    pub fn advance(&self, by: Duration) {
        if let Some(f) = &self.fake {
            f.fetch_add(
                u64::try_from(by.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }
}

impl Clock for LimitClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match &self.fake {
            Some(f) => Nanos::from(f.load(Ordering::Relaxed)),
            None => Nanos::from(self.start.elapsed()),
        }
    }
}

type Limiter<K> = RateLimiter<K, DefaultKeyedStateStore<K>, LimitClock, NoOpMiddleware<Nanos>>;

fn quota(per_minute: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
}

/// The key an address is limited under: IPv4 as is, IPv6 by its /64 (one host usually owns a
/// whole /64, so per-address keys would be free to multiply).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Counts every attempt per key.
pub struct Keyed<K: Hash + Eq + Clone> {
    limiter: Limiter<K>,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    pub fn new(per_minute: u32, clock: &LimitClock) -> Self {
        Self {
            limiter: RateLimiter::new(
                quota(per_minute),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            ),
        }
    }

    /// Takes one attempt; false when the key is over its rate (or the table is full).
    pub fn allow(&self, key: &K) -> bool {
        if self.limiter.len() >= MAX_KEYS {
            self.limiter.retain_recent();
            if self.limiter.len() >= MAX_KEYS {
                return false;
            }
        }
        self.limiter.check_key(key).is_ok()
    }

    /// Forgets keys whose allowance is full again.
    pub fn housekeeping(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// Counts failures per key; a key over its rate is blocked until its allowance comes back.
pub struct Failures<K: Hash + Eq + Clone> {
    limiter: Limiter<K>,
    clock: LimitClock,
    blocked: Mutex<HashMap<K, Nanos>>,
}

impl<K: Hash + Eq + Clone> Failures<K> {
    pub fn new(per_minute: u32, clock: &LimitClock) -> Self {
        Self {
            limiter: RateLimiter::new(
                quota(per_minute),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            ),
            clock: clock.clone(),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// True while the key is blocked.
    pub fn is_blocked(&self, key: &K) -> bool {
        let now = self.clock.now();
        let Ok(mut blocked) = self.blocked.lock() else {
            return true;
        };
        match blocked.get(key) {
            Some(until) if *until > now => true,
            Some(_) => {
                blocked.remove(key);
                false
            }
            None => false,
        }
    }

    /// Records a failure; blocks the key when it is over its rate.
    pub fn failed(&self, key: &K) {
        let over = if self.limiter.len() >= MAX_KEYS {
            self.limiter.retain_recent();
            self.limiter.len() >= MAX_KEYS
        } else {
            false
        };
        let until = match self.limiter.check_key(key) {
            Ok(()) if !over => return,
            Ok(()) => self.clock.now() + Duration::from_secs(60),
            Err(not_until) => not_until.earliest_possible(),
        };
        if let Ok(mut blocked) = self.blocked.lock() {
            if blocked.len() >= MAX_KEYS {
                let now = self.clock.now();
                blocked.retain(|_, u| *u > now);
            }
            if blocked.len() < MAX_KEYS {
                blocked.insert(key.clone(), until);
            }
        }
    }

    pub fn housekeeping(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let now = self.clock.now();
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.retain(|_, u| *u > now);
            blocked.shrink_to_fit();
        }
    }

    /// How long the key stays blocked (zero when it is not).
    pub fn blocked_for(&self, key: &K) -> Duration {
        let now = self.clock.now();
        self.blocked
            .lock()
            .ok()
            .and_then(|b| b.get(key).copied())
            .map_or(Duration::ZERO, |until| {
                Duration::from_nanos(until.duration_since(now).as_u64())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_block_then_recover_with_the_clock() {
        let clock = LimitClock::fake();
        let f = Failures::<String>::new(3, &clock);
        let k = "app".to_owned();
        for _ in 0..3 {
            assert!(!f.is_blocked(&k));
            f.failed(&k);
        }
        assert!(!f.is_blocked(&k), "three failures are within the quota");
        f.failed(&k);
        assert!(f.is_blocked(&k), "the fourth is over it");
        assert!(f.blocked_for(&k) > Duration::ZERO);
        assert!(!f.is_blocked(&"other".to_owned()), "keys are separate");
        clock.advance(Duration::from_secs(21));
        assert!(!f.is_blocked(&k), "one attempt comes back every 20 s");
        f.failed(&k);
        f.failed(&k);
        assert!(f.is_blocked(&k));
        f.housekeeping();
        assert!(f.is_blocked(&k), "housekeeping keeps live blocks");
    }

    #[test]
    fn keyed_counts_every_attempt() {
        let clock = LimitClock::fake();
        let k = Keyed::<u32>::new(2, &clock);
        assert!(k.allow(&1) && k.allow(&1));
        assert!(!k.allow(&1));
        assert!(k.allow(&2));
        clock.advance(Duration::from_secs(30));
        assert!(k.allow(&1));
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(ip_key(mapped), "10.0.0.1".parse::<IpAddr>().expect("ip"));
    }
}
