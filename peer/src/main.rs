//! `peer`: the command line of cli.md.

use clap::{Args, Parser, Subcommand};
use executor_core::{BackendKind, CacheConfig, PersistencePolicy};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use peer::config::{self, Config};
use peer::run::{Executor, RunReport, RunSettings, run};
use peer::{Error, backends, rss};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs blockchain executors (WebAssembly) warm across transactions, safely,
/// on wasmtime, wasmer and wasmi. Without a command: `peer run` with the
/// config's settings.
#[derive(Parser, Debug)]
#[command(name = "peer", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one executor over the synthetic workload on one backend under
    /// one persistence policy.
    Run(RunArgs),
    /// Run the same workload on every compiled-in backend under fresh,
    /// every-tx:1, every-block:1 and until-crash, side by side.
    Compare(CompareArgs),
}

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    s.parse().map_err(|_| format!("expected wasmtime, wasmer or wasmi, got `{s}`"))
}

/// Settings shared by `run` and `compare`.
#[derive(Args, Debug, Default)]
struct Common {
    /// Config file [default: configs/peer/config.json].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Executor to run (.wasm or .wat) [default: the embedded default executor].
    #[arg(long, value_name = "FILE")]
    executor: Option<PathBuf>,
    /// Transactions to validate [default: 10000].
    #[arg(long, value_name = "N")]
    transactions: Option<u64>,
    /// Transactions per block [default: 100].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    block_size: Option<u64>,
    /// Workload seed [default: 42].
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Fuel per transaction [default: 10000000].
    #[arg(long, value_name = "UNITS")]
    fuel: Option<u64>,
    /// Most linear memory per instance, bytes [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    memory_limit: Option<u64>,
    /// Deterministic stack budget, bytes of the engine-independent frame model [default: 131072].
    #[arg(long, value_name = "BYTES")]
    max_stack: Option<u64>,
    /// Keep compiled executors in DIR (created owner-only) [default: the config's `cache`].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Compile every time, even if the config enables the cache.
    #[arg(long)]
    no_cache: bool,
    /// Run `executor_init` for every instance built, instead of restoring the blank snapshot
    /// taken after the first (in memory, and in the cache across restarts).
    #[arg(long)]
    no_snapshot: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Default)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// wasmtime, wasmer or wasmi [default: the config's, else the first compiled in].
    #[arg(long, value_parser = parse_backend)]
    backend: Option<BackendKind>,
    /// every-tx:N, every-block:N, until-crash or fresh [default: every-tx:1].
    #[arg(long, value_name = "SPEC")]
    policy: Option<PersistencePolicy>,
    /// Every N blocks, upgrade the executor (alternating it and a variant with other bytes).
    #[arg(long, value_name = "BLOCKS", value_parser = clap::value_parser!(u64).range(1..))]
    upgrade_every: Option<u64>,
    /// Also validate every K-th transaction on a blank instance; differences count as state leaks.
    #[arg(long, value_name = "K")]
    audit_every: Option<std::num::NonZeroU32>,
    /// Pre-validate each block on N worker threads (each a warm instance blanked after every
    /// transaction, against the state at the block's start) before the in-order validation.
    #[arg(long, value_name = "N")]
    threads: Option<std::num::NonZeroUsize>,
    /// Time each phase and print where the time went (workload, guest calls, blanks, recycles).
    #[arg(long)]
    profile: bool,
    /// Write the run's counters and timings to FILE in the Prometheus text format.
    #[arg(long, value_name = "FILE")]
    metrics: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct CompareArgs {
    #[command(flatten)]
    common: Common,
    /// Also write a grouped bar chart of the median throughputs to FILE (SVG).
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Measured repetitions of every configuration, interleaved; the table shows medians.
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
}

/// Resolves config + flags into run settings (backend and policy aside).
fn settings(common: &Common, config: &Config, config_dir: Option<&Path>) -> Result<RunSettings, Error> {
    let mut limits = config.limits();
    if let Some(s) = common.max_stack {
        limits.max_stack = s;
    }
    if let Some(f) = common.fuel {
        limits.fuel = f;
    }
    if let Some(m) = common.memory_limit {
        limits.memory_bytes = m;
    }
    let executor = match (&common.executor, &config.executor) {
        (Some(path), _) => Executor::from_file(path)?,
        (None, Some(path)) => Executor::from_file(&config::relative_to(config_dir, path))?,
        (None, None) => Executor::default_executor(),
    };
    let defaults = RunSettings::new(BackendKind::Wasmi, PersistencePolicy::default(), executor);
    Ok(RunSettings {
        transactions: common.transactions.or(config.transactions).unwrap_or(defaults.transactions),
        block_size: common.block_size.or(config.block_size).unwrap_or(defaults.block_size),
        seed: common.seed.or(config.seed).unwrap_or(defaults.seed),
        limits,
        recycle_watermark: config.recycle_watermark,
        cache: match (&common.cache_dir, common.no_cache) {
            (_, true) => None,
            (Some(dir), false) => {
                Some(CacheConfig { dir: dir.clone(), max_bytes: executor_core::cache::DEFAULT_MAX_BYTES })
            }
            (None, false) => config.cache(config_dir),
        },
        snapshots: !common.no_snapshot && config.snapshots.unwrap_or(true),
        ..defaults
    })
}

fn load_config(common: &Common) -> Result<(Config, Option<PathBuf>), Error> {
    match &common.config {
        Some(path) => Config::load(path, true),
        None => Config::load(Path::new(config::DEFAULT_PATH), false),
    }
}

fn progress_bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} tx ({per_sec}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// The most pre-validation threads: each holds an engine, compiled code
/// and an instance.
const MAX_THREADS: usize = 64;

fn cmd_run(args: &RunArgs) -> Result<(), Error> {
    let (config, dir) = load_config(&args.common)?;
    let metrics = match (&args.metrics, &config.metrics) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(path)) => Some(config::relative_to(dir.as_deref(), path)),
        (None, None) => None,
    };
    let mut s = settings(&args.common, &config, dir.as_deref())?;
    s.backend = match args.backend.or(config.backend) {
        Some(b) => b,
        None => backends::default_backend().ok_or_else(|| Error::Usage("no backend is compiled in".into()))?,
    };
    s.policy = args.policy.or(config.policy).unwrap_or_default();
    s.upgrade_every = args.upgrade_every.or(config.upgrade_every);
    s.audit_every = args.audit_every.or(config.audit_every);
    // The metrics include where the time went.
    s.profile = args.profile || metrics.is_some();
    s.threads = args.threads.or(config.threads);
    if let Some(n) = s.threads
        && n.get() > MAX_THREADS
    {
        return Err(Error::Usage(format!("--threads {n}: at most {MAX_THREADS}")));
    }
    let bar = progress_bar(s.transactions, args.common.json);
    bar.set_message(format!("{} {}", s.backend, s.policy));
    let report = run(&s, &mut |done| bar.set_position(done));
    bar.finish_and_clear();
    let report = report?;
    if let Some(path) = &metrics {
        peer::metrics::write(path, &report)?;
    }
    if args.common.json {
        println!("{}", serde_json::to_string(&report).expect("report serialises"));
    } else {
        print_summary(&report);
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_summary(r: &RunReport) {
    let rejected: u64 = r.rejected.values().sum();
    println!(
        "peer run: backend {}, policy {}, executor {} ({})",
        r.backend,
        r.policy,
        r.executor,
        &r.executor_hash[..12]
    );
    println!(
        "  {} transactions in {} block(s): {} approved, {} denied, {} rejected",
        r.transactions, r.blocks, r.approved, r.denied, rejected
    );
    if rejected > 0 {
        let kinds: Vec<String> = r.rejected.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
        println!("  rejected: {}", kinds.join(", "));
    }
    println!(
        "  blanks {}, recycles {}, instances built {} ({} from the blank snapshot: {})",
        r.blanks, r.recycles, r.instances_built, r.restored_builds, r.snapshot
    );
    if let (Some(digest), Some(rate)) = (&r.prevalidation_digest, r.prevalidation_tx_per_sec) {
        println!("  pre-validation: {rate:.0} tx/s, digest {}", &digest[..12]);
    }
    if r.upgrades > 0 || r.audits > 0 {
        println!("  upgrades {}, audits {}, state leaks {}", r.upgrades, r.audits, r.state_leaks);
    }
    println!(
        "  validation {:.3} s ({:.0} tx/s), load {:.1} ms (instrumentation {:.2} ms, compile {:.2} ms, cache {}), peak RSS {:.1} MiB",
        r.elapsed_s,
        r.tx_per_sec,
        r.load_s * 1e3,
        r.instrument_s * 1e3,
        r.compile_s * 1e3,
        r.cache,
        mib(r.peak_rss_bytes)
    );
    if let Some(p) = &r.profile {
        let share = |x: f64| if p.validation_s > 0.0 { 100.0 * x / p.validation_s } else { 0.0 };
        let other = (p.validation_s - p.calls_s - p.blanks_s - p.recycles_s).max(0.0);
        println!("  profile (s, share of validation):");
        let rows = [
            ("workload (make transactions, apply approved)".to_string(), p.workload_s, None),
            ("validation".to_string(), p.validation_s, Some(100.0)),
            (format!("  guest calls ({:.2} µs/tx)", p.call_us), p.calls_s, Some(share(p.calls_s))),
            (format!("  scheduled blanks ({:.2} µs each)", p.blank_us), p.blanks_s, Some(share(p.blanks_s))),
            (
                format!(
                    "  recycles (a build: {:.3} ms = instantiate {:.3} + init or snapshot {:.3})",
                    p.build_ms, p.instantiate_ms, p.init_ms
                ),
                p.recycles_s,
                Some(share(p.recycles_s)),
            ),
            ("  driver bookkeeping, audits, upgrades".to_string(), other, Some(share(other))),
        ];
        for (label, secs, pct) in rows {
            let pct = pct.map_or(String::new(), |p| format!("{p:>5.0}%"));
            println!("    {label:<46} {secs:>9.4} {pct}");
        }
    }
    println!("  verdict digest {}", r.verdict_digest);
    println!("  state digest   {}", r.state_digest);
}

const COMPARE_POLICIES: [&str; 4] = ["fresh", "every-tx:1", "every-block:1", "until-crash"];

fn cmd_compare(args: &CompareArgs) -> Result<(), Error> {
    let (config, dir) = load_config(&args.common)?;
    let base = settings(&args.common, &config, dir.as_deref())?;
    let backends = backends::compiled_in();
    if backends.is_empty() {
        return Err(Error::Usage("no backend is compiled in".into()));
    }
    let configs: Vec<(BackendKind, PersistencePolicy)> = COMPARE_POLICIES
        .iter()
        .flat_map(|p| backends.iter().map(move |b| (*b, p.parse().expect("known policy"))))
        .collect();
    // One short warm-up run per configuration (caches, page faults, lazy
    // engine set-up), then the measured repetitions, interleaved so machine
    // noise hits every configuration alike.
    let warm_up = base.transactions.min(500);
    let total = configs.len() as u64 * (warm_up + u64::from(args.repeat) * base.transactions);
    let bar = progress_bar(total, args.common.json);
    let mut runs: Vec<Vec<RunReport>> = vec![Vec::new(); configs.len()];
    let mut profiles = vec![None; configs.len()];
    for round in 0..=args.repeat {
        for (i, (backend, policy)) in configs.iter().enumerate() {
            let mut s = base.clone();
            s.backend = *backend;
            s.policy = *policy;
            // Only the warm-up is timed per phase: clock reads in every
            // blank would tax the blanking policies alone.
            s.profile = round == 0;
            if round == 0 {
                s.transactions = warm_up;
            }
            bar.set_message(format!(
                "{backend} {policy} ({})",
                if round == 0 { "warm-up".into() } else { format!("{round}/{}", args.repeat) }
            ));
            rss::reset_peak();
            let offset = bar.position();
            let report = run(&s, &mut |done| bar.set_position(offset + done))?;
            if round == 0 {
                profiles[i] = report.profile;
            } else {
                runs[i].push(report);
            }
        }
    }
    bar.finish_and_clear();
    let mut loads = std::collections::BTreeMap::new();
    for backend in &backends {
        loads.insert(backend.to_string(), peer::run::load_times(*backend, &base.executor, &base.limits, 5)?);
    }
    let mut rows = compare_rows(runs);
    for (row, profile) in rows.iter_mut().zip(profiles) {
        row.report.profile = profile;
        row.load = loads.get(&row.report.backend).copied();
    }
    let disagreement = rows.iter().find(|r| !r.digests_agree).map(|r| {
        format!(
            "inconsistent output: under {}, the backends (or repetitions) give different verdict or state digests ({} differs)",
            r.report.policy, r.report.backend
        )
    });
    if let Some(path) = &args.chart {
        let bars: Vec<peer::chart::Bar<'_>> = rows
            .iter()
            .map(|r| peer::chart::Bar {
                group: &r.report.policy,
                series: &r.report.backend,
                value: r.report.tx_per_sec,
            })
            .collect();
        let title = format!(
            "peer compare: {} ({} transactions, median of {})",
            base.executor.name, base.transactions, args.repeat
        );
        std::fs::write(path, peer::chart::grouped_bars(&title, "tx/s", &bars))
            .map_err(|e| Error::Usage(format!("cannot write the chart {}: {e}", path.display())))?;
    }
    if args.common.json {
        println!("{}", serde_json::to_string(&rows).expect("rows serialise"));
    } else {
        print_compare(&rows, args.repeat);
        print_loads(&loads);
    }
    match disagreement {
        Some(message) => Err(Error::Inconsistent(message)),
        None => Ok(()),
    }
}

/// One configuration of `peer compare`: the median repetition's report
/// and the ratios the table shows.
#[derive(Debug, serde::Serialize)]
struct CompareRow {
    #[serde(flatten)]
    report: RunReport,
    /// Throughput of every measured repetition.
    tx_per_sec_runs: Vec<f64>,
    /// Median throughput ÷ the same backend's `fresh`.
    vs_fresh: f64,
    /// Median throughput ÷ the same backend's `until-crash`.
    vs_until_crash: f64,
    /// Median throughput ÷ the best backend's under the same policy.
    vs_best_backend: f64,
    /// Whether every backend and repetition under this policy gave the
    /// same verdict and state digests.
    digests_agree: bool,
    /// The backend's cold and warm (cached) load of the executor.
    #[serde(skip_serializing_if = "Option::is_none")]
    load: Option<peer::run::LoadTimes>,
}

fn compare_rows(runs: Vec<Vec<RunReport>>) -> Vec<CompareRow> {
    let mut rows: Vec<CompareRow> = runs
        .into_iter()
        .map(|mut reps| {
            let tx_per_sec_runs: Vec<f64> = reps.iter().map(|r| r.tx_per_sec).collect();
            reps.sort_by(|a, b| a.tx_per_sec.total_cmp(&b.tx_per_sec));
            let same = reps
                .iter()
                .all(|r| r.verdict_digest == reps[0].verdict_digest && r.state_digest == reps[0].state_digest);
            let report = reps.swap_remove(reps.len() / 2);
            CompareRow {
                report,
                tx_per_sec_runs,
                vs_fresh: 0.0,
                vs_until_crash: 0.0,
                vs_best_backend: 0.0,
                digests_agree: same,
                load: None,
            }
        })
        .collect();
    let rate = |rows: &[CompareRow], backend: &str, policy: &str| {
        rows.iter()
            .find(|r| r.report.backend == backend && r.report.policy == policy)
            .map_or(0.0, |r| r.report.tx_per_sec)
    };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let ratios: Vec<(f64, f64, f64, bool)> = rows
        .iter()
        .map(|row| {
            let r = &row.report;
            let (fresh, until_crash) = (rate(&rows, &r.backend, "fresh"), rate(&rows, &r.backend, "until-crash"));
            let same_policy: Vec<&CompareRow> = rows.iter().filter(|o| o.report.policy == r.policy).collect();
            let best = same_policy.iter().map(|o| o.report.tx_per_sec).fold(0.0, f64::max);
            let agree = same_policy.iter().all(|o| {
                o.report.verdict_digest == r.verdict_digest
                    && o.report.state_digest == r.state_digest
                    && o.digests_agree
            });
            (ratio(r.tx_per_sec, fresh), ratio(r.tx_per_sec, until_crash), ratio(r.tx_per_sec, best), agree)
        })
        .collect();
    for (row, (vs_fresh, vs_until_crash, vs_best_backend, agree)) in rows.iter_mut().zip(ratios) {
        row.vs_fresh = vs_fresh;
        row.vs_until_crash = vs_until_crash;
        row.vs_best_backend = vs_best_backend;
        row.digests_agree &= agree;
    }
    rows
}

fn print_loads(loads: &std::collections::BTreeMap<String, peer::run::LoadTimes>) {
    println!();
    println!(
        "starting the executor (median of 5): cold = checks + instrumentation + compile; warm = from the cache; \
         then the first blank instance, by executor_init or from the cached blank snapshot"
    );
    println!(
        "{:<9} {:>10} {:>12} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "backend", "cold ms", "of it prep", "warm ms", "cold÷warm", "init ms", "snapshot ms", "init÷snap"
    );
    let ratio = |a: f64, b: Option<f64>| b.map_or("-".into(), |b| format!("{:.1}", a / b));
    let ms = |x: Option<f64>, none: &str| x.map_or(none.into(), |x| format!("{:.3}", x * 1e3));
    for (backend, l) in loads {
        println!(
            "{:<9} {:>10.3} {:>12.3} {:>10} {:>10} {:>10.3} {:>12} {:>10}",
            backend,
            l.cold_s * 1e3,
            l.prepare_s * 1e3,
            ms(l.warm_s, "(no cache)"),
            ratio(l.cold_s, l.warm_s),
            l.init_build_s * 1e3,
            ms(l.snapshot_build_s, "(unportable)"),
            ratio(l.init_build_s, l.snapshot_build_s),
        );
    }
}

fn print_compare(rows: &[CompareRow], repeat: u32) {
    println!(
        "median of {repeat} interleaved repetitions after a warm-up; peak memory reset between runs; blank, instantiate and init times from the (timed) warm-up"
    );
    println!(
        "{:<9} {:<14} {:>10} {:>7} {:>7} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  digests",
        "backend",
        "policy",
        "tx/s",
        "×fresh",
        "×u-c",
        "×best",
        "blanks",
        "recycles",
        "blank µs",
        "inst ms",
        "init ms",
        "peak MiB",
        "load ms"
    );
    for row in rows {
        let r = &row.report;
        println!(
            "{:<9} {:<14} {:>10.0} {:>7.2} {:>7.2} {:>6.2} {:>7} {:>8} {:>8.2} {:>8.3} {:>8.3} {:>8.1} {:>8.1}  {} {}",
            r.backend,
            r.policy,
            r.tx_per_sec,
            row.vs_fresh,
            row.vs_until_crash,
            row.vs_best_backend,
            r.blanks,
            r.recycles,
            r.profile.as_ref().map_or(0.0, |p| p.blank_us),
            r.profile.as_ref().map_or(0.0, |p| p.instantiate_ms),
            r.profile.as_ref().map_or(0.0, |p| p.init_ms),
            mib(r.peak_rss_bytes),
            r.load_s * 1e3,
            &r.verdict_digest[..12],
            if row.digests_agree { "agree" } else { "DIFFER" }
        );
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    // A panic inside the host is caught and retried by the driver; report
    // it as a log line, never as a raw panic message on the user's terminal.
    std::panic::set_hook(Box::new(|info| tracing::error!("host panic: {info}")));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return ExitCode::SUCCESS;
            }
            // cli.md: one `error:` line, status 2.
            let rendered = e.render().to_string();
            let line = rendered.lines().find(|l| l.starts_with("error:")).unwrap_or("error: bad usage");
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        None => cmd_run(&RunArgs::default()),
        Some(Command::Run(args)) => cmd_run(args),
        Some(Command::Compare(args)) => cmd_compare(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = e.to_string().replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::from(e.exit_code())
        }
    }
}
