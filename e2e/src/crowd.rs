//! Many browsers at once, and the figures the tests and the demo judge them by.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Result};
use sticky_canary_filter::config::DEFAULT_ID_COOKIE;

use crate::browser::{Browser, Http, Response, Visit};

/// Threads that drive browsers in parallel; requests are I/O bound, so more than the cores.
pub const THREADS: usize = 4;

/// Applies `f` to every item on [`THREADS`] threads, keeping the order of results.
pub fn par_map<T: Send, R: Send>(
    items: &mut [T],
    f: impl Fn(&mut T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let len = items.len();
    let chunk = len.div_ceil(THREADS).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks_mut(chunk)
            .map(|chunk| scope.spawn(|| chunk.iter_mut().map(&f).collect::<Result<Vec<R>>>()))
            .collect();
        let mut results = Vec::with_capacity(len);
        for handle in handles {
            match handle.join() {
                Ok(chunk) => results.extend(chunk?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(results)
    })
}

/// A crowd of browsers, each with its own cookies.
pub struct Crowd {
    /// The browsers, in a fixed order so runs can be compared client by client.
    pub browsers: Vec<Browser>,
}

impl Crowd {
    /// `size` first-time visitors.
    pub fn new(size: usize) -> Crowd {
        Crowd {
            browsers: vec![Browser::new(); size],
        }
    }

    /// `size` returning visitors, each a clone of `base` (its headers: the `Host` of the site)
    /// holding the id `client-0`, `client-1`, ... in the filter's id cookie (as if the filter
    /// had minted them), so that which of them the hash puts on the canary is the same on
    /// every run and a share check cannot fail by chance. First-time visitors, whose ids the
    /// filter mints, are the end-to-end tests' subject.
    pub fn returning(base: &Browser, size: usize) -> Crowd {
        Crowd {
            browsers: (0..size)
                .map(|i| {
                    base.clone()
                        .with_cookie(DEFAULT_ID_COOKIE, &format!("client-{i}"))
                })
                .collect(),
        }
    }

    /// Each browser's value of cookie `name` (a pin: `sticky-version.<namespace>.<rollout>`),
    /// in the crowd's order.
    pub fn pins(&self, name: &str) -> Vec<Option<String>> {
        self.browsers
            .iter()
            .map(|b| b.cookie(name).map(str::to_owned))
            .collect()
    }

    /// Every browser visits `path`; the share of page loads that `served` (an upstream's name,
    /// `<service>-<version>`) served, once no page load got a 404 or mixed versions (an error
    /// naming the first that did).
    pub fn visit_share(&mut self, http: &Http, path: &str, served: &str) -> Result<f64> {
        let visits = self.visit(http, path)?;
        let mut on = 0;
        for visit in &visits {
            if visit.not_found() > 0 {
                bail!("a 404 on {path}: {visit:?}");
            }
            if visit.mixed() {
                bail!("a page load of {path} mixed versions: {visit:?}");
            }
            if visit.version() == Some(served) {
                on += 1;
            }
        }
        Ok(f64::from(on) / visits.len().max(1) as f64)
    }

    /// Every browser navigates to `path` and loads the page's sub-resources.
    pub fn visit(&mut self, http: &Http, path: &str) -> Result<Vec<Visit>> {
        par_map(&mut self.browsers, |browser| browser.visit(http, path))
    }

    /// Every browser fetches its current page's sub-resources again, without navigating.
    pub fn reload_subresources(&mut self, http: &Http) -> Result<Vec<Vec<Response>>> {
        par_map(&mut self.browsers, |browser| {
            browser.reload_subresources(http)
        })
    }
}

/// What a crowd's page loads got: pages per version and what went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Pages served, by version.
    pub pages: BTreeMap<String, usize>,
    /// Page loads.
    pub total: usize,
    /// Requests (pages and sub-resources) answered 404.
    pub not_found: usize,
    /// Page loads with a sub-resource from another version than the page.
    pub mixed: usize,
    /// Requests with a status other than 200 and 404.
    pub other_errors: usize,
}

impl Tally {
    /// Counts `visits`.
    pub fn of(visits: &[Visit]) -> Tally {
        let mut tally = Tally {
            total: visits.len(),
            ..Tally::default()
        };
        for visit in visits {
            let version = visit.version().unwrap_or("(none)").to_owned();
            *tally.pages.entry(version).or_default() += 1;
            tally.not_found += visit.not_found();
            tally.mixed += usize::from(visit.mixed());
            tally.other_errors += visit
                .responses()
                .filter(|r| r.status != 200 && r.status != 404)
                .count();
        }
        tally
    }

    /// The share of pages `version` served, in percent.
    pub fn share(&self, version: &str) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let pages = self.pages.get(version).copied().unwrap_or(0);
        100.0 * pages as f64 / self.total as f64
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  {:<10} {:>8} {:>8}", "version", "clients", "share")?;
        for (version, pages) in &self.pages {
            writeln!(
                f,
                "  {version:<10} {pages:>8} {:>7.2}%",
                self.share(version)
            )?;
        }
        write!(
            f,
            "  404s: {}   pages mixing versions: {}   other errors: {}",
            self.not_found, self.mixed, self.other_errors
        )
    }
}

/// How clients moved between two page loads of the same crowd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moves {
    /// Clients on the same version both times.
    pub stayed: usize,
    /// Clients moved from the stable version to another.
    pub from_stable: usize,
    /// Clients moved back to the stable version: on a ramp-up, this must be 0.
    pub to_stable: usize,
    /// Clients moved between two non-stable versions.
    pub between_canaries: usize,
}

impl Moves {
    /// Compares the versions of `before` and `after`, client by client.
    pub fn between(before: &[Visit], after: &[Visit], stable: &str) -> Moves {
        let mut moves = Moves::default();
        for (b, a) in before.iter().zip(after) {
            match (b.version(), a.version()) {
                (b, a) if b == a => moves.stayed += 1,
                (Some(b), _) if b == stable => moves.from_stable += 1,
                (_, Some(a)) if a == stable => moves.to_stable += 1,
                _ => moves.between_canaries += 1,
            }
        }
        moves
    }
}
