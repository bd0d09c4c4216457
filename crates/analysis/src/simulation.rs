//! Simulated rollouts through the real [`Evidence`] and [`judge`]: the A/A false-rollback
//! rate, and the detection-power table of docs/analysis.md (checked to be what this code
//! generates, so the docs cannot drift from the test).

use std::collections::BTreeMap;

use jiff::Timestamp;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution, Gamma};

use super::evidence::{Counter, HASH_REASON};
use super::{
    judge, judged_steps, AnalysisSpec, Evidence, Histogram, Outcome, Snapshot, StepPlan,
    VersionSample,
};
use api::DEFAULT_STEPS;

/// Seconds between looks (a Prometheus scrape interval).
const LOOK_SECONDS: u64 = 15;
/// Looks a step holds before it may go on (the default 1-minute interval).
const HOLD_LOOKS: u32 = 4;
/// Looks after which an inconclusive step is left (held, not rolled back) by the simulation.
const MAX_LOOKS: u32 = 30;
/// Latency bucket bounds (ms) and the share of requests in each bucket's range; the rest is
/// beyond the last bound. Stable's p99 lies in (50, 100].
const LATENCY: [(f64, f64); 10] = [
    (1.0, 0.2),
    (5.0, 0.4),
    (10.0, 0.2),
    (25.0, 0.12),
    (50.0, 0.05),
    (100.0, 0.025),
    (250.0, 0.003),
    (500.0, 0.0015),
    (1000.0, 0.0004),
    (2500.0, 0.0001),
];
/// Share of requests that are a new client's first (decided by hash).
const FRESH: f64 = 0.1;

fn binomial(rng: &mut ChaCha8Rng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    Binomial::new(n, p.min(1.0))
        .expect("p in [0, 1]")
        .sample(rng)
}

/// How one version behaves.
#[derive(Clone, Copy)]
struct Behaviour {
    error_rate: f64,
    /// Share of requests pushed beyond every latency bucket (a slow canary).
    slow: f64,
}

/// One version's cumulative counters, as a proxy would expose them.
struct Counters {
    version: &'static str,
    requests: u64,
    errors: u64,
    /// Cumulative count per bucket bound of [`LATENCY`].
    buckets: [u64; LATENCY.len()],
    hash: u64,
}

impl Counters {
    fn new(version: &'static str) -> Counters {
        Counters {
            version,
            requests: 0,
            errors: 0,
            buckets: [0; LATENCY.len()],
            hash: 0,
        }
    }

    /// Serves `n` requests.
    fn serve(&mut self, rng: &mut ChaCha8Rng, n: u64, behaviour: Behaviour) {
        self.requests += n;
        self.errors += binomial(rng, n, behaviour.error_rate);
        self.hash += binomial(rng, n, FRESH);
        // A multinomial over the buckets as a chain of binomials.
        let mut left = n - binomial(rng, n, behaviour.slow);
        let mut mass = 1.0;
        let mut below = 0;
        for (i, &(_, p)) in LATENCY.iter().enumerate() {
            let here = binomial(rng, left, p / mass);
            left -= here;
            mass = (mass - p).max(f64::MIN_POSITIVE);
            below += here;
            self.buckets[i] += below;
        }
    }

    fn sample(&self) -> VersionSample {
        let pairs: Vec<(f64, u64)> = LATENCY
            .iter()
            .zip(self.buckets)
            .map(|(&(le, _), count)| (le, count))
            .chain([(f64::INFINITY, self.requests)])
            .collect();
        VersionSample {
            version: self.version.to_owned(),
            requests: Counter::single(self.requests),
            errors: Counter::single(self.errors),
            latency: BTreeMap::from([(String::new(), Histogram::from_pairs(&pairs))]),
            decisions: BTreeMap::from([(HASH_REASON.to_owned(), Counter::single(self.hash))]),
            weights: BTreeMap::new(),
            metrics: BTreeMap::new(),
        }
    }
}

/// Who sends the requests.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Population {
    /// Every request from a client never seen before: each version's requests are a fresh
    /// random sample of clients.
    New,
    /// A fixed set of clients that come back, each pinned by its hash bucket, and each with
    /// its own propensity to meet errors (a multiplier of the version's error rate, Gamma
    /// distributed with mean 1 and shape [`PROPENSITY_SHAPE`]): the canary's few clients are
    /// the same ones look after look.
    Returning(usize),
}

/// Shape of the clients' error propensities: 1 is an exponential spread (a client at twice
/// the mean is common, at five times it rare).
const PROPENSITY_SHAPE: f64 = 1.0;

/// One returning client: its hash bucket in [0, 100) and its error propensity.
#[derive(Clone, Copy)]
struct Client {
    bucket: f64,
    propensity: f64,
}

/// Both versions behind one proxy at a request rate.
struct World {
    rng: ChaCha8Rng,
    stable: Counters,
    canary: Counters,
    seconds: u64,
    rate: f64,
    behaviour: (Behaviour, Behaviour),
    /// The canary's weight the proxy runs.
    weight: f64,
    /// The returning clients, none for a population of new ones.
    clients: Vec<Client>,
}

impl World {
    fn new(seed: u64, rate: f64, stable: Behaviour, canary: Behaviour) -> World {
        let mut world = World {
            rng: ChaCha8Rng::seed_from_u64(seed),
            stable: Counters::new("v1"),
            canary: Counters::new("v2"),
            seconds: 0,
            rate,
            behaviour: (stable, canary),
            weight: 0.0,
            clients: Vec::new(),
        };
        // Stable served alone for a while before the rollout.
        let history = (rate * 600.0) as u64;
        world.stable.serve(&mut world.rng, history, stable);
        world
    }

    /// The counters now, the proxy reporting the weight it last served at.
    fn snapshot(&self) -> Snapshot {
        Snapshot::new(
            Timestamp::from_second(1_800_000_000 + self.seconds as i64).expect("in range"),
            self.stable.sample(),
            self.canary.sample(),
        )
        .with_applied("proxy", self.weight)
    }

    /// The world of [`World::new`] whose requests come from `population`.
    fn of(
        population: Population,
        seed: u64,
        rate: f64,
        behaviour: (Behaviour, Behaviour),
    ) -> World {
        let mut world = World::new(seed, rate, behaviour.0, behaviour.1);
        if let Population::Returning(size) = population {
            let propensity =
                Gamma::new(PROPENSITY_SHAPE, 1.0 / PROPENSITY_SHAPE).expect("positive");
            world.clients = (0..size)
                .map(|_| Client {
                    bucket: world.rng.random_range(0.0..100.0),
                    propensity: propensity.sample(&mut world.rng),
                })
                .collect();
        }
        world
    }

    /// One look's worth of traffic at canary `weight` percent.
    fn run(&mut self, weight: f64) {
        let n = binomial(
            &mut self.rng,
            (self.rate * LOOK_SECONDS as f64 * 2.0) as u64,
            0.5,
        );
        self.weight = weight;
        if self.clients.is_empty() {
            let canary = binomial(&mut self.rng, n, weight / 100.0);
            self.canary.serve(&mut self.rng, canary, self.behaviour.1);
            self.stable
                .serve(&mut self.rng, n - canary, self.behaviour.0);
        } else {
            self.run_returning(n, weight);
        }
        self.seconds += LOOK_SECONDS;
    }

    /// `n` requests spread over the returning clients, each served by the version its bucket
    /// falls in, its errors at the version's rate times its propensity.
    fn run_returning(&mut self, n: u64, weight: f64) {
        let share = 1.0 / self.clients.len() as f64;
        let mut served = [(0u64, 0u64); 2];
        for client in &self.clients {
            let requests = binomial(&mut self.rng, n, share);
            let arm = usize::from(client.bucket < weight);
            let behaviour = if arm == 1 {
                self.behaviour.1
            } else {
                self.behaviour.0
            };
            let rate = (behaviour.error_rate * client.propensity).min(1.0);
            served[arm].0 += requests;
            served[arm].1 += binomial(&mut self.rng, requests, rate);
        }
        for (arm, (requests, errors)) in served.into_iter().enumerate() {
            let (counters, behaviour) = if arm == 1 {
                (&mut self.canary, self.behaviour.1)
            } else {
                (&mut self.stable, self.behaviour.0)
            };
            // Latency and decisions as for new clients; the errors are the clients'.
            counters.serve(
                &mut self.rng,
                requests,
                Behaviour {
                    error_rate: 0.0,
                    ..behaviour
                },
            );
            counters.errors += errors;
        }
    }
}

/// Walks a step at `weight` as the state machine would (hold, then go on once it passes;
/// an inconclusive step is left after [`MAX_LOOKS`]); whether it failed the canary.
fn step_fails(world: &mut World, spec: &AnalysisSpec, weight: f64, judged: usize) -> bool {
    let plan = StepPlan {
        weight,
        judged_steps: judged,
    };
    let mut evidence = Evidence::start(&world.snapshot(), spec, plan);
    for look in 1..=MAX_LOOKS {
        world.run(weight);
        evidence.observe(&world.snapshot(), spec);
        match judge(spec, &evidence).outcome {
            Outcome::Fail => return true,
            Outcome::Pass if look >= HOLD_LOOKS => return false,
            _ => {}
        }
    }
    false
}

/// Walks every default step; whether the canary was rolled back.
fn rolled_back(seed: u64, rate: f64, stable: Behaviour, canary: Behaviour) -> bool {
    rolled_back_at(Population::New, seed, rate, (stable, canary)).is_some()
}

/// Walks every default step with requests from `population`; the seconds into the rollout
/// at which the canary was rolled back, if it was.
fn rolled_back_at(
    population: Population,
    seed: u64,
    rate: f64,
    behaviour: (Behaviour, Behaviour),
) -> Option<u64> {
    let spec = AnalysisSpec::default();
    let judged: Vec<f64> = DEFAULT_STEPS
        .iter()
        .copied()
        .filter(|&w| w < 100.0)
        .collect();
    let mut world = World::of(population, seed, rate, behaviour);
    judged
        .iter()
        .any(|&weight| step_fails(&mut world, &spec, weight, judged.len()))
        .then_some(world.seconds)
}

/// A/A: the canary is stable. However often each step is judged, the share of rollouts
/// rolled back stays at most α.
#[test]
fn a_canary_identical_to_stable_is_rolled_back_at_most_alpha_of_the_time() {
    let alpha = AnalysisSpec::default().alpha;
    // (request rate per second, error rate of both): low and high traffic, rare and common
    // errors; the slow tail is the same in both.
    let cases = [(20.0, 0.01), (200.0, 0.001), (200.0, 0.02)];
    let runs = 400;
    let mut total = 0;
    for (i, &(rate, error_rate)) in cases.iter().enumerate() {
        let same = Behaviour {
            error_rate,
            slow: 0.0,
        };
        let back = (0..runs)
            .filter(|&run| rolled_back((i * runs + run) as u64, rate, same, same))
            .count();
        let share = back as f64 / runs as f64;
        eprintln!("A/A at {rate} req/s, {error_rate} 5xx: {back}/{runs} rolled back ({share})");
        assert!(
            share <= alpha,
            "{back}/{runs} A/A rollouts rolled back at {rate} req/s"
        );
        total += back;
    }
    let share = total as f64 / (cases.len() * runs) as f64;
    eprintln!(
        "A/A overall: {total}/{} rolled back ({share})",
        cases.len() * runs
    );
    assert!(share <= alpha);
}

/// The simulation can fail a canary at all: a canary failing 5 % of its requests next to
/// stable's 0.1 % is rolled back in every run.
#[test]
fn a_bad_canary_is_rolled_back() {
    let stable = Behaviour {
        error_rate: 0.001,
        slow: 0.0,
    };
    let bad = Behaviour {
        error_rate: 0.05,
        slow: 0.0,
    };
    assert!((0..50).all(|seed| rolled_back(seed, 100.0, stable, bad)));
    let slow = Behaviour {
        error_rate: 0.001,
        slow: 1.0,
    };
    assert!((0..50).all(|seed| rolled_back(seed, 100.0, stable, slow)));
}

/// Power table: effects (canary 5xx next to stable's 0.1 %, or a slow share) × weights ×
/// request rates; the median time a step at that weight takes to fail the canary.
const POWER_EFFECTS: [(&str, Behaviour); 4] = [
    (
        "5xx 0.5 %",
        Behaviour {
            error_rate: 0.005,
            slow: 0.0,
        },
    ),
    (
        "5xx 1 %",
        Behaviour {
            error_rate: 0.01,
            slow: 0.0,
        },
    ),
    (
        "5xx 5 %",
        Behaviour {
            error_rate: 0.05,
            slow: 0.0,
        },
    ),
    (
        "5 % slower than p99",
        Behaviour {
            error_rate: 0.001,
            slow: 0.05,
        },
    ),
];
const POWER_WEIGHTS: [f64; 4] = [1.0, 5.0, 20.0, 50.0];
const POWER_RATES: [f64; 3] = [10.0, 100.0, 1000.0];
/// Runs per cell (odd, for a median).
const POWER_RUNS: u64 = 21;
/// Looks a power run waits at most: 30 minutes.
const POWER_LOOKS: u32 = 120;

fn detection_time(effect: Behaviour, weight: f64, rate: f64, seed: u64) -> Option<u64> {
    let spec = AnalysisSpec::default();
    let stable = Behaviour {
        error_rate: 0.001,
        slow: 0.0,
    };
    let judged = judged_steps(&DEFAULT_STEPS);
    let mut world = World::new(seed, rate, stable, effect);
    let mut evidence = Evidence::start(
        &world.snapshot(),
        &spec,
        StepPlan {
            weight,
            judged_steps: judged,
        },
    );
    (1..=POWER_LOOKS).find_map(|look| {
        world.run(weight);
        evidence.observe(&world.snapshot(), &spec);
        (judge(&spec, &evidence).outcome == Outcome::Fail).then_some(u64::from(look) * LOOK_SECONDS)
    })
}

fn duration(seconds: Option<u64>) -> String {
    match seconds {
        None => "> 30 min".to_owned(),
        Some(s) if s < 120 => format!("{s} s"),
        Some(s) => format!("{} min", (s as f64 / 60.0).round()),
    }
}

/// The table as docs/analysis.md holds it.
fn power_table() -> String {
    let mut table = String::from("| canary (stable: 5xx 0.1 %) | weight |");
    for rate in POWER_RATES {
        table.push_str(&format!(" {rate} req/s |"));
    }
    table.push_str("\n|---|---|");
    table.push_str(&"---|".repeat(POWER_RATES.len()));
    table.push('\n');
    for (cell, (name, effect)) in POWER_EFFECTS.iter().enumerate() {
        for (w, &weight) in POWER_WEIGHTS.iter().enumerate() {
            table.push_str(&format!("| {name} | {weight} % |"));
            for (r, &rate) in POWER_RATES.iter().enumerate() {
                let seed = ((cell * 100 + w * 10 + r) as u64) << 16;
                let mut times: Vec<Option<u64>> = (0..POWER_RUNS)
                    .map(|run| detection_time(*effect, weight, rate, seed + run))
                    .collect();
                // Not caught sorts last.
                times.sort_by_key(|t| t.unwrap_or(u64::MAX));
                table.push_str(&format!(" {} |", duration(times[times.len() / 2])));
            }
            table.push('\n');
        }
    }
    table
}

#[test]
fn the_power_table_in_the_docs_is_what_the_code_generates() {
    check_doc_table("power-table", &power_table());
}

/// Fails unless docs/analysis.md holds `generated` between the `name` markers
/// (`<!-- name:start -->`, `<!-- name:end -->`); rewrites it there with
/// `STICKY_UPDATE_DOCS=1`.
pub(crate) fn check_doc_table(name: &str, generated: &str) {
    const DOC: &str = "docs/analysis.md";
    let (start, end) = (
        format!("<!-- {name}:start -->\n"),
        format!("<!-- {name}:end -->"),
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(DOC);
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{DOC}: {err}"));
    let (before, rest) = doc
        .split_once(&start)
        .unwrap_or_else(|| panic!("{DOC}: no {start:?}"));
    let (shipped, after) = rest
        .split_once(&end)
        .unwrap_or_else(|| panic!("{DOC}: no {end:?}"));
    if shipped != generated {
        if std::env::var_os("STICKY_UPDATE_DOCS").is_some() {
            std::fs::write(&path, format!("{before}{start}{generated}{end}{after}")).unwrap();
        } else {
            panic!(
                "{DOC}'s {name} is stale: rerun this test with STICKY_UPDATE_DOCS=1 to rewrite \
                 it. Generated:\n{generated}"
            );
        }
    }
}

/// Populations × request rates: the share of A/A rollouts rolled back (both versions failing
/// 2 %, so that errors are many and who the clients are matters), and when a canary failing 5 %
/// of its requests next to stable's 0.1 % is rolled back (median, from the rollout's start).
fn population_table() -> String {
    const RUNS: u64 = 200;
    let same = Behaviour {
        error_rate: 0.02,
        slow: 0.0,
    };
    let stable = Behaviour {
        error_rate: 0.001,
        slow: 0.0,
    };
    let bad = Behaviour {
        error_rate: 0.05,
        slow: 0.0,
    };
    let mut table = String::from(
        "| clients | req/s | A/A (both 5xx 2 %) rolled back | canary 5xx 5 % (stable 0.1 %): rolled back after (median) |\n|---|---|---|---|\n",
    );
    for (p, (name, population)) in [
        ("new on every request", Population::New),
        ("300 returning", Population::Returning(300)),
    ]
    .into_iter()
    .enumerate()
    {
        for (r, rate) in [20.0, 200.0].into_iter().enumerate() {
            let seed = ((p * 10 + r) as u64) << 24;
            let aa = (0..RUNS)
                .filter(|&run| rolled_back_at(population, seed + run, rate, (same, same)).is_some())
                .count();
            let mut caught: Vec<Option<u64>> = (0..RUNS / 4)
                .map(|run| rolled_back_at(population, seed + (1 << 20) + run, rate, (stable, bad)))
                .collect();
            caught.sort_by_key(|t| t.unwrap_or(u64::MAX));
            table.push_str(&format!(
                "| {name} | {rate} | {:.1} % | {} |\n",
                100.0 * aa as f64 / RUNS as f64,
                caught[caught.len() / 2]
                    .map_or_else(|| "not rolled back".to_owned(), |s| duration(Some(s)))
            ));
        }
    }
    table
}

#[test]
fn the_population_table_in_the_docs_is_what_the_code_generates() {
    check_doc_table("population-table", &population_table());
}
