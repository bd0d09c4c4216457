//! A steady load while the rollout changes: browsers navigating page after page on several
//! threads, and the record of which changes each page load overlapped.
//!
//! The driver numbers its changes and marks each one begun (before it runs the command) and
//! settled (once Envoy serves the result). Every page load records the mark it started and
//! ended under, so a test can hold the page loads that ran entirely under one configuration
//! to that configuration's promises and look separately at those that overlapped a change.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;

use crate::browser::{Browser, Http, Visit};
use crate::crowd::THREADS;
use crate::site::PAGES;
use crate::wait;

/// How long the driver waits for the crowd to browse once under a new configuration.
const PATIENCE: Duration = Duration::from_secs(30);

/// One page load (the document and its sub-resources) of one browser.
#[derive(Debug)]
pub struct PageLoad {
    /// Index of the browser in the crowd.
    pub browser: usize,
    /// The mark when it started: `2k` while change `k` is settled, `2k - 1` while it runs.
    pub started: usize,
    /// The mark when it ended.
    pub ended: usize,
    /// The visit, or the transport error that interrupted it.
    pub outcome: Result<Visit, String>,
}

impl PageLoad {
    /// The change it ran entirely under (0 before the first), `None` when it overlapped one.
    pub fn settled_under(&self) -> Option<usize> {
        (self.started == self.ended && self.started.is_multiple_of(2)).then_some(self.started / 2)
    }

    /// Whether it ended before change `change` (counted from 1) began.
    pub fn ended_before(&self, change: usize) -> bool {
        self.ended < 2 * change - 1
    }

    /// Whether it started once change `change` (counted from 1) was settled.
    pub fn started_after(&self, change: usize) -> bool {
        self.started >= 2 * change
    }

    /// Whether it was in flight while change `change` (counted from 1) ran.
    pub fn overlapped(&self, change: usize) -> bool {
        !self.ended_before(change) && !self.started_after(change)
    }
}

/// Whether every page load of `loads` is whole: completed, 200s only, every sub-resource from
/// the page's version. The number of them that overlapped change `change` (counted from 1);
/// an error names the first that was not whole.
pub fn whole(loads: &[PageLoad], change: usize) -> Result<usize> {
    let mut overlapping = 0;
    for load in loads {
        let visit = load
            .outcome
            .as_ref()
            .map_err(|err| anyhow::anyhow!("a page load failed: {err}"))?;
        if !visit.whole() {
            anyhow::bail!("a page load is not whole: {visit:?}");
        }
        overlapping += usize::from(load.overlapped(change));
    }
    Ok(overlapping)
}

/// The driver's side of a running load.
pub struct Driver {
    mark: AtomicUsize,
    /// Per thread: one more than the mark at which its last complete round began.
    rounds: Vec<AtomicUsize>,
    stop: AtomicBool,
}

impl Driver {
    /// Runs `change` as the next numbered change: begun before it runs, settled after it
    /// returns (so `change` must return only once Envoy serves the result).
    pub fn change<R>(&self, change: impl FnOnce() -> R) -> R {
        self.mark.fetch_add(1, Ordering::SeqCst);
        let result = change();
        self.mark.fetch_add(1, Ordering::SeqCst);
        result
    }

    /// Changes begun so far.
    pub fn changes(&self) -> usize {
        self.mark.load(Ordering::SeqCst).div_ceil(2)
    }

    /// Waits until every browser loaded a page entirely under the current configuration, so
    /// each configuration meets the whole crowd before the next change.
    pub fn wait_for_round(&self) -> Result<()> {
        let mark = self.mark.load(Ordering::SeqCst);
        let browsed = || self.rounds.iter().all(|r| r.load(Ordering::SeqCst) > mark);
        wait::until(
            "the crowd to browse once",
            PATIENCE,
            Duration::from_millis(10),
            || Ok(browsed().then_some(())),
        )
    }
}

/// Stops the browsing threads when the driver returns or panics, so a failing test never
/// leaves them (and itself) running.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Lets `browsers` browse through `http` (alternating between the site's pages) on
/// [`THREADS`] threads while `drive` runs; returns what `drive` returned and every page load,
/// each browser's in order.
pub fn browse_while<R>(
    http: &Http,
    browsers: &mut [Browser],
    drive: impl FnOnce(&Driver) -> R,
) -> (R, Vec<PageLoad>) {
    let chunk = browsers.len().div_ceil(THREADS).max(1);
    let driver = Driver {
        mark: AtomicUsize::new(0),
        rounds: (0..browsers.len().div_ceil(chunk))
            .map(|_| AtomicUsize::new(0))
            .collect(),
        stop: AtomicBool::new(false),
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = browsers
            .chunks_mut(chunk)
            .enumerate()
            .map(|(thread, browsers)| {
                let driver = &driver;
                scope.spawn(move || browse(http, driver, thread, chunk * thread, browsers))
            })
            .collect();
        let result = {
            let _stop = StopOnDrop(&driver.stop);
            drive(&driver)
        };
        let mut loads = Vec::new();
        for worker in workers {
            match worker.join() {
                Ok(mut own) => loads.append(&mut own),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        (result, loads)
    })
}

/// One thread's share of the crowd: round after round, each browser loads the next page.
fn browse(
    http: &Http,
    driver: &Driver,
    thread: usize,
    first: usize,
    browsers: &mut [Browser],
) -> Vec<PageLoad> {
    let mut loads = Vec::new();
    let mut round = 0;
    loop {
        let round_mark = driver.mark.load(Ordering::SeqCst);
        for (i, browser) in browsers.iter_mut().enumerate() {
            if driver.stop.load(Ordering::SeqCst) {
                return loads;
            }
            let started = driver.mark.load(Ordering::SeqCst);
            let outcome = browser
                .visit(http, PAGES[round % PAGES.len()])
                .map_err(|err| format!("{err:#}"));
            loads.push(PageLoad {
                browser: first + i,
                started,
                ended: driver.mark.load(Ordering::SeqCst),
                outcome,
            });
        }
        driver.rounds[thread].store(round_mark + 1, Ordering::SeqCst);
        round += 1;
    }
}
