//! The bandwidth cap towards the target (`rate.max_bytes_per_sec`): a token
//! bucket from `governor`, one token per byte of keys, values and headers,
//! holding at most one second's worth.
//!
//! Invariant: over any stretch of time, no more bytes are sent than the cap
//! allows plus the one second's worth the bucket may hold.
//!
//! Called by the shipper (`transaction`), on its blocking thread, before it
//! produces each WAL batch; waiting here is what slows the relay down to
//! the cap.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

pub struct Bandwidth {
    limiter: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl Bandwidth {
    /// `None` (or 0) means no cap. Rates above `u32::MAX` are capped there
    /// (validation refuses them anyway).
    pub fn new(bytes_per_sec: Option<u64>) -> Bandwidth {
        let limiter = bytes_per_sec
            .and_then(|r| NonZeroU32::new(r.min(u64::from(u32::MAX)) as u32))
            .map(|rate| (RateLimiter::direct(Quota::per_second(rate)), rate));
        Bandwidth { limiter }
    }

    /// Blocks until `bytes` may be sent.
    pub fn take(&self, bytes: usize) {
        let Some((limiter, burst)) = &self.limiter else {
            return;
        };
        let clock = DefaultClock::default();
        let mut left = bytes as u64;
        while left > 0 {
            // A request larger than the bucket could never be granted: take it a bucket at a time.
            let chunk = left.min(u64::from(burst.get())) as u32;
            let Some(n) = NonZeroU32::new(chunk) else {
                return;
            };
            loop {
                match limiter.check_n(n) {
                    Ok(Ok(())) => break,
                    Ok(Err(not_until)) => std::thread::sleep(not_until.wait_time_from(clock.now())),
                    // Cannot happen for chunk <= burst; never block forever on it.
                    Err(_) => break,
                }
            }
            left -= u64::from(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_cap_spreads_bytes_over_time() {
        // A lower bound only: a cap may never be beaten, however fast the machine.
        // 100 KB/s: the first 100 KB are the initial bucket, the next 50 KB take ~0.5 s.
        let b = Bandwidth::new(Some(100_000));
        let t = Instant::now();
        b.take(150_000);
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(400), "took {took:?}");
    }
}
