//! The plain-engine anchor: each benchmark executor, unmodified, on each
//! plain engine (warm without fuel — the limit; warm with native fuel;
//! fresh per transaction with native fuel) beside the `Driver` under
//! `until-crash` and `every-tx:1`, ratios in one process, interleaved
//! rounds, medians.
//!
//! ```sh
//! cargo run --release -p peer --bin bench-anchor [-- --rounds R --transactions N --executor NAME --interleave block|run --json]
//! ```
//!
//! Targets (issue 16): on wasmtime, every compute-heavy executor's
//! `every-tx:1` ≥ 0.95 × plain warm+fuel and ≥ 1.10 × plain fresh+fuel; the
//! store-heavy one ≥ 0.80 × plain warm+fuel; the default executor ≥ 10 ×
//! plain fresh+fuel; on wasmer ≥ 0.85 and on wasmi ≥ 0.75 × their own plain
//! warm+fuel.

use executor_core::{Limits, PersistencePolicy};
use peer::anchor::{self, Reference, Row};
use peer::backends::{self, BackendKind};
use peer::bench::median;
use peer::run::{Executor, RunSettings, run};
use std::collections::BTreeMap;
use strum::IntoEnumIterator;

/// The plain-engine anchor: ratios in one process, interleaved, medians.
#[derive(clap::Parser)]
struct Args {
    /// Interleaved rounds; the figures are medians.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Transactions per measurement of a heavy executor on wasmtime (÷ 2 on
    /// wasmer, ÷ 8 on wasmi; × 20 for the default executor).
    #[arg(long, default_value_t = 1_000)]
    transactions: u64,
    /// Only these executors.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(EXECUTORS.map(|(name, _)| name)))]
    executor: Vec<String>,
    /// Only these backends.
    #[arg(long)]
    backend: Vec<BackendKind>,
    /// Fuel per transaction (this project's units; native fuel gets 100×).
    #[arg(long, default_value_t = Limits::default().fuel)]
    fuel: u64,
    /// How the driver blanks (auto, restore, rebuild).
    #[arg(long, default_value_t = executor_core::BlankMethod::Auto)]
    blank: executor_core::BlankMethod,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// How rows are interleaved within a round: `block` — every row judges
    /// each block in turn, timed on its own, so the machine's drift falls
    /// on all rows alike (see `peer::anchor::lockstep`); `run` — each row
    /// runs the whole workload in its own run, one after the other.
    #[arg(long, value_enum, default_value_t = Interleave::Block)]
    interleave: Interleave,
    /// Run one row once, with no warm-up and no output but its rate (for
    /// an instruction counter such as `valgrind --tool=callgrind`).
    #[arg(long, value_enum)]
    only: Option<Only>,
}

/// See `Args::only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    /// The plain engine, one warm instance, no fuel.
    PlainWarm,
    /// The plain engine, one warm instance, native fuel.
    PlainWarmFuel,
    /// The plain engine, a fresh instance per transaction, native fuel.
    PlainFreshFuel,
    /// The driver under `until-crash`.
    UntilCrash,
    /// The driver under `every-tx:1`.
    EveryTx,
}

impl Only {
    fn row(self) -> Row {
        match self {
            Only::PlainWarm => Row::Plain(Reference::WarmNoFuel),
            Only::PlainWarmFuel => Row::Plain(Reference::WarmFuel),
            Only::PlainFreshFuel => Row::Plain(Reference::FreshFuel),
            Only::UntilCrash => Row::Driver(PersistencePolicy::UntilCrash),
            Only::EveryTx => Row::Driver(PersistencePolicy::default()),
        }
    }
}

/// See `Args::interleave`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, strum::Display)]
#[strum(serialize_all = "lowercase")]
enum Interleave {
    /// Per block (the default): robust against the machine's drift.
    Block,
    /// Per run: each row's figure is one whole run.
    Run,
}

const EXECUTORS: [(&str, &[u8]); 4] = [
    ("default", peer::DEFAULT_EXECUTOR),
    ("sigcheck", include_bytes!("../../../executors/bench/sigcheck.wasm")),
    ("ecdsa", include_bytes!("../../../executors/bench/ecdsa.wasm")),
    ("sortmap", include_bytes!("../../../executors/bench/sortmap.wasm")),
];

/// Per row: the median throughput, and the medians of its per-round
/// ratios to each plain reference of the same engine (a ratio of two runs
/// of the same round: the machine's drift cancels).
struct Figures(BTreeMap<Row, (Option<f64>, [Option<f64>; 3])>);

impl Figures {
    fn of(rates: &BTreeMap<Row, Vec<Option<f64>>>) -> Self {
        // The columns' order, not the order the references run in.
        let references: Vec<Option<&Vec<Option<f64>>>> =
            [Reference::WarmNoFuel, Reference::WarmFuel, Reference::FreshFuel]
                .iter()
                .map(|r| rates.get(&Row::Plain(*r)))
                .collect();
        let figures = rates
            .iter()
            .map(|(row, runs)| {
                let rate = runs.iter().copied().collect::<Option<Vec<f64>>>().map(median);
                let ratio = |base: Option<&Vec<Option<f64>>>| {
                    let base = base?;
                    let ratios: Option<Vec<f64>> =
                        runs.iter().zip(base).map(|(a, b)| Some(a.as_ref()? / b.as_ref()?)).collect();
                    ratios.filter(|r| !r.is_empty()).map(median)
                };
                (*row, (rate, [ratio(references[0]), ratio(references[1]), ratio(references[2])]))
            })
            .collect();
        Figures(figures)
    }
}

fn main() {
    let args: Args = clap::Parser::parse();
    let mut out = Vec::new();
    let policies = [PersistencePolicy::UntilCrash, PersistencePolicy::default()];
    let rows: Vec<Row> = Reference::iter().map(Row::Plain).chain(policies.iter().map(|p| Row::Driver(*p))).collect();
    for (name, bytes) in
        EXECUTORS.iter().filter(|(n, _)| args.executor.is_empty() || args.executor.iter().any(|e| e == n))
    {
        for backend in
            backends::compiled_in().into_iter().filter(|b| args.backend.is_empty() || args.backend.contains(b))
        {
            let mut n = match backend {
                BackendKind::Wasmtime => args.transactions,
                BackendKind::Wasmer => args.transactions / 2,
                _ => args.transactions / 8,
            };
            if *name == "default" {
                n *= 20;
            }
            let executor = Executor { name: name.to_string(), bytes: bytes.to_vec() };
            let mut settings = RunSettings::new(backend, PersistencePolicy::default(), executor);
            settings.transactions = n.max(50);
            settings.limits.fuel = args.fuel;
            settings.blank = args.blank;
            let mut rates: BTreeMap<Row, Vec<Option<f64>>> = BTreeMap::new();
            // Set by each round's warm+fuel run, which runs first.
            let mut bounded = false;
            let (rounds, rows) = match args.only {
                None => (args.rounds, rows.clone()),
                Some(only) => {
                    let row = only.row();
                    // The unmetered row alone still needs its bound.
                    let gate = Row::Plain(Reference::WarmFuel);
                    (0, if row == Row::Plain(Reference::WarmNoFuel) { vec![gate, row] } else { vec![row] })
                }
            };
            for round in 0..=rounds {
                if args.interleave == Interleave::Block && args.only.is_none() {
                    let measured =
                        anchor::lockstep(&settings, &rows).unwrap_or_else(|e| panic!("{name} {backend} lockstep: {e}"));
                    if round > 0 {
                        rows.iter().zip(measured).for_each(|(row, rate)| rates.entry(*row).or_default().push(rate));
                    }
                    continue;
                }
                for row in &rows {
                    let rate = match row {
                        Row::Driver(policy) => {
                            let s = RunSettings { policy: *policy, ..settings.clone() };
                            let r = run(&s, &mut |_| {}).unwrap_or_else(|e| panic!("{name} {backend} {row}: {e}"));
                            Some(r.tx_per_sec)
                        }
                        Row::Plain(reference) => {
                            let r = anchor::run(&settings, *reference, bounded)
                                .unwrap_or_else(|e| panic!("{name} {backend} {row}: {e}"));
                            if *reference == Reference::WarmFuel {
                                bounded = !r.exhausted;
                            }
                            r.tx_per_sec
                        }
                    };
                    // Round 0 warms caches and page tables; not counted.
                    if round > 0 || (args.only.is_some() && rows.last() == Some(row)) {
                        rates.entry(*row).or_default().push(rate);
                    }
                }
            }
            out.push((name.to_string(), backend, n, Figures::of(&rates)));
        }
    }
    if args.only.is_some() {
        for (_, _, _, figures) in &out {
            for (rate, _) in figures.0.values() {
                println!("{}", rate.map_or("—".into(), |r| format!("{r:.1}")));
            }
        }
        return;
    }
    if args.json {
        let json: Vec<_> = out
            .iter()
            .flat_map(|(name, backend, n, figures)| {
                figures.0.iter().map(move |(row, (rate, ratios))| {
                    let value = |v: Option<f64>| v.map_or(serde_json::Value::Null, Into::into);
                    serde_json::json!({
                        "executor": name, "backend": backend.to_string(), "transactions": n, "row": row.to_string(),
                        "tx_per_sec": value(*rate), "vs_plain_warm": value(ratios[0]),
                        "vs_plain_warm_fuel": value(ratios[1]), "vs_plain_fresh_fuel": value(ratios[2]),
                    })
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&json).expect("serialises"));
        return;
    }
    println!(
        "median of {} rounds (after a warm-up round), interleaved per {}; ratios are medians of each round's ratio to the plain references of the same engine",
        args.rounds, args.interleave
    );
    println!(
        "{:<9} {:<9} {:<22} {:>10} {:>9} {:>9} {:>9}",
        "executor", "backend", "row", "tx/s", "÷warm", "÷warm+f", "÷fresh+f"
    );
    let show = |v: Option<f64>, digits: usize| v.map_or("—".into(), |v| format!("{v:.digits$}"));
    for (name, backend, _, figures) in &out {
        for (row, (rate, ratios)) in &figures.0 {
            println!(
                "{:<9} {:<9} {:<22} {:>10} {:>9} {:>9} {:>9}",
                name,
                backend.to_string(),
                row.to_string(),
                show(*rate, 0),
                show(ratios[0], 2),
                show(ratios[1], 2),
                show(ratios[2], 2),
            );
        }
    }
}
