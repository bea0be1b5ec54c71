//! The limiter of one connection: GCRA over each of its sliding-window limits, on the store's
//! clock, with a safety margin.
//!
//! A platform limit "at most `count` per `per`" is a sliding window. GCRA with emission interval
//! `T` and burst `B` admits at most `B + ⌈W/T⌉ − 1` sends in any window `W`; choosing
//! `T = per' / (count − B + 1)` with `per' = per + margin` keeps every window of `per` at or
//! under `count`, while still letting `B = count/2` messages out at once (a few alerts close
//! together go unfolded). The margin — 5% of the window, at least 100 ms — absorbs the network's
//! jitter between Magpie's clock and the platform's.
//!
//! The state is one theoretical arrival time per limit, saved with every send
//! ([`magpie_store::LimiterState`]), so a restart or another node carries on from it.

use std::time::Duration;

use magpie_core::RateLimit;

/// One limit's cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell {
    /// Emission interval, ms.
    t: i64,
    /// Tolerance (burst − 1) × t, ms.
    tau: i64,
    /// Window with margin / count: the spacing that uses the whole rate, ms.
    pace: i64,
    /// Burst.
    burst: u32,
}

/// The margin added to each window.
pub fn margin(per: Duration) -> Duration {
    (per / 20).max(Duration::from_millis(100))
}

/// The limiter of a connection (no limits: unlimited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limiter {
    cells: Vec<Cell>,
}

impl Limiter {
    /// The limiter of these limits.
    pub fn new(limits: &[RateLimit]) -> Limiter {
        let cells = limits
            .iter()
            .map(|l| {
                let count = i64::from(l.count.max(1));
                let per = (l.per + margin(l.per)).as_millis() as i64;
                let burst = (count / 2).max(1);
                // Rounded up: never faster than the guarantee allows.
                let t = (per + (count - burst)) / (count - burst + 1);
                Cell { t, tau: (burst - 1) * t, pace: (per + count - 1) / count, burst: burst as u32 }
            })
            .collect();
        Limiter { cells }
    }

    /// Whether there is no limit at all.
    pub fn unlimited(&self) -> bool {
        self.cells.is_empty()
    }

    fn fit(&self, tat: &[i64]) -> Vec<i64> {
        if tat.len() == self.cells.len() { tat.to_vec() } else { vec![0; self.cells.len()] }
    }

    /// The earliest time at or after `now` at which one send conforms to every limit.
    pub fn next_slot(&self, tat: &[i64], now: i64) -> i64 {
        let tat = self.fit(tat);
        self.cells.iter().zip(&tat).map(|(c, t)| t - c.tau).fold(now, i64::max)
    }

    /// How many sends conform right now, one after another.
    pub fn available(&self, tat: &[i64], now: i64) -> u32 {
        let tat = self.fit(tat);
        self.cells
            .iter()
            .zip(&tat)
            .map(|(c, t)| {
                let start = t - c.tau;
                if start > now { 0 } else { (((now - start) / c.t + 1).min(i64::from(c.burst))) as u32 }
            })
            .min()
            .unwrap_or(u32::MAX)
    }

    /// Whether nothing was sent lately: every limit could take its whole burst now.
    pub fn idle(&self, tat: &[i64], now: i64) -> bool {
        let tat = self.fit(tat);
        tat.iter().all(|t| *t <= now)
    }

    /// Records a send at `at` (which must conform). Returns the new state.
    pub fn take(&self, tat: &[i64], at: i64) -> Vec<i64> {
        let tat = self.fit(tat);
        self.cells.iter().zip(&tat).map(|(c, t)| (*t).max(at) + c.t).collect()
    }

    /// After a pause that ends at `until`, no burst: one send at `until`, then the steady rate.
    pub fn after_pause(&self, tat: &[i64], until: i64) -> Vec<i64> {
        let tat = self.fit(tat);
        self.cells.iter().zip(&tat).map(|(c, t)| (*t).max(until + c.tau)).collect()
    }

    /// The spacing of digests while a backlog lasts: the full rate of the tightest limit.
    pub fn pace(&self) -> i64 {
        self.cells.iter().map(|c| c.pace).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(spec: &[(u32, u64)]) -> Vec<RateLimit> {
        spec.iter().map(|(c, ms)| RateLimit::new(*c, Duration::from_millis(*ms))).collect()
    }

    /// Sends as fast as the limiter allows, from `start` for `span` ms, with a send wanted at each
    /// instant in `wants` (sorted); returns the send times.
    fn drive(l: &Limiter, wants: &[i64]) -> Vec<i64> {
        let mut tat = Vec::new();
        let mut sent = Vec::new();
        let mut now = 0;
        for &w in wants {
            now = now.max(w);
            let at = l.next_slot(&tat, now);
            tat = l.take(&tat, at);
            sent.push(at);
            now = at;
        }
        sent
    }

    fn max_in_window(sent: &[i64], window: i64) -> usize {
        (0..sent.len()).map(|i| sent[i..].iter().take_while(|t| **t < sent[i] + window).count()).max().unwrap_or(0)
    }

    #[test]
    fn no_window_ever_holds_more_than_the_limit() {
        for spec in
            [vec![(20, 60_000)], vec![(5, 1_000), (100, 60_000)], vec![(5, 2_000)], vec![(1, 1_000)], vec![(3, 500)]]
        {
            let ls = limits(&spec);
            let l = Limiter::new(&ls);
            // Greedy: a send wanted every millisecond for ten minutes; and bursts with gaps.
            let greedy: Vec<i64> = (0..3_000).collect();
            let bursty: Vec<i64> = (0..400).map(|i| (i / 7) * 9_000 + (i % 7) * 13).collect();
            for wants in [greedy, bursty] {
                let sent = drive(&l, &wants);
                for lim in &ls {
                    let n = max_in_window(&sent, lim.per.as_millis() as i64);
                    assert!(n <= lim.count as usize, "{spec:?}: {n} sends in a window of {lim}");
                }
            }
        }
    }

    #[test]
    fn bursts_go_at_once_and_the_steady_rate_is_most_of_the_limit() {
        let l = Limiter::new(&limits(&[(20, 60_000)]));
        assert_eq!(l.available(&[], 0), 10, "half the limit at once");
        assert!(l.idle(&[], 0));
        assert!(!l.idle(&l.take(&[], 0), 1));
        let sent = drive(&l, &[0; 40]);
        assert!(sent[..10].iter().all(|t| *t == 0));
        assert!(sent[10] > 0);
        // Over ten minutes the greedy sender gets close to 20/min.
        let sent = drive(&l, &(0..400).map(|_| 0).collect::<Vec<_>>());
        let in_ten_minutes = sent.iter().filter(|t| **t < 600_000).count();
        assert!(in_ten_minutes >= 100, "{in_ten_minutes}");
        assert_eq!(l.pace(), 3_150, "digests every 3.15 s in a backlog");
    }

    #[test]
    fn a_pause_leaves_no_burst_and_unlimited_is_unlimited() {
        let l = Limiter::new(&limits(&[(20, 60_000)]));
        let tat = l.after_pause(&[], 60_000);
        assert_eq!(l.next_slot(&tat, 0), 60_000);
        assert_eq!(l.available(&tat, 60_000), 1);
        let u = Limiter::new(&[]);
        assert!(u.unlimited());
        assert_eq!(u.next_slot(&[], 5), 5);
        assert_eq!(u.available(&[], 5), u32::MAX);
        assert_eq!(u.pace(), 0);
        // A state saved for other limits (the rate was changed) is started afresh.
        assert_eq!(l.available(&[1, 2, 3], 0), 10);
    }
}
