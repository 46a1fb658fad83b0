//! `peer`: the command line of cli.md.

use clap::{Args, Parser, Subcommand};
use executor_core::{BackendKind, PersistencePolicy};
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
    /// Pre-validate each block on N threads (not available yet).
    #[arg(long, value_name = "N")]
    threads: Option<u64>,
    /// Write Prometheus metrics to FILE (not available yet).
    #[arg(long, value_name = "FILE")]
    metrics: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct CompareArgs {
    #[command(flatten)]
    common: Common,
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
        (None, Some(path)) => Executor::from_file(&config_dir.map_or_else(|| path.clone(), |d| d.join(path)))?,
        (None, None) => Executor::default_executor(),
    };
    Ok(RunSettings {
        backend: BackendKind::Wasmi,
        policy: PersistencePolicy::default(),
        executor,
        transactions: common.transactions.or(config.transactions).unwrap_or(10_000),
        block_size: common.block_size.or(config.block_size).unwrap_or(100),
        seed: common.seed.or(config.seed).unwrap_or(42),
        limits,
        recycle_watermark: config.recycle_watermark,
        upgrade_every: None,
        audit_every: None,
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

fn cmd_run(args: &RunArgs) -> Result<(), Error> {
    for (set, flag) in [
        (args.threads.is_some(), "--threads (parallel pre-validation)"),
        (args.metrics.is_some(), "--metrics (Prometheus metrics)"),
    ] {
        if set {
            return Err(Error::NotAvailable(flag.into()));
        }
    }
    let (config, dir) = load_config(&args.common)?;
    for (set, key) in [
        (config.threads.is_some(), "config key `threads` (parallel pre-validation)"),
        (config.metrics.is_some(), "config key `metrics` (Prometheus metrics)"),
    ] {
        if set {
            return Err(Error::NotAvailable(key.into()));
        }
    }
    let mut s = settings(&args.common, &config, dir.as_deref())?;
    s.backend = match args.backend.or(config.backend) {
        Some(b) => b,
        None => backends::default_backend().ok_or_else(|| Error::Usage("no backend is compiled in".into()))?,
    };
    s.policy = args.policy.or(config.policy).unwrap_or_default();
    s.upgrade_every = args.upgrade_every.or(config.upgrade_every);
    s.audit_every = args.audit_every.or(config.audit_every);
    let bar = progress_bar(s.transactions, args.common.json);
    bar.set_message(format!("{} {}", s.backend, s.policy));
    let report = run(&s, &mut |done| bar.set_position(done));
    bar.finish_and_clear();
    let report = report?;
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
    println!("  blanks {}, recycles {}, instances built {}", r.blanks, r.recycles, r.instances_built);
    if r.upgrades > 0 || r.audits > 0 {
        println!("  upgrades {}, audits {}, state leaks {}", r.upgrades, r.audits, r.state_leaks);
    }
    println!(
        "  validation {:.3} s ({:.0} tx/s), load {:.1} ms (instrumentation {:.2} ms), peak RSS {:.1} MiB",
        r.elapsed_s,
        r.tx_per_sec,
        r.load_s * 1e3,
        r.instrument_s * 1e3,
        mib(r.peak_rss_bytes)
    );
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
    let bar = progress_bar(base.transactions * (backends.len() * COMPARE_POLICIES.len()) as u64, args.common.json);
    let mut reports: Vec<RunReport> = Vec::new();
    for policy in COMPARE_POLICIES {
        for &backend in &backends {
            let mut s = base.clone();
            s.backend = backend;
            s.policy = policy.parse().expect("known policy");
            bar.set_message(format!("{backend} {policy}"));
            rss::reset_peak();
            let offset = bar.position();
            reports.push(run(&s, &mut |done| bar.set_position(offset + done))?);
        }
    }
    bar.finish_and_clear();
    let mut disagreement = None;
    for policy in COMPARE_POLICIES {
        let rows: Vec<&RunReport> = reports.iter().filter(|r| r.policy == policy).collect();
        if let Some(odd) = rows.iter().find(|r| r.verdict_digest != rows[0].verdict_digest) {
            disagreement = Some(format!(
                "inconsistent output: under {policy}, {} and {} give different verdict digests",
                rows[0].backend, odd.backend
            ));
        }
    }
    if args.common.json {
        println!("{}", serde_json::to_string(&reports).expect("reports serialise"));
    } else {
        println!(
            "{:<9} {:<14} {:>11} {:>8} {:>7} {:>8} {:>9}  verdict digest",
            "backend", "policy", "tx/s", "×fresh", "blanks", "recycles", "peak MiB"
        );
        for r in &reports {
            let fresh =
                reports.iter().find(|f| f.backend == r.backend && f.policy == "fresh").map_or(0.0, |f| f.tx_per_sec);
            println!(
                "{:<9} {:<14} {:>11.0} {:>8.2} {:>7} {:>8} {:>9.1}  {}",
                r.backend,
                r.policy,
                r.tx_per_sec,
                if fresh > 0.0 { r.tx_per_sec / fresh } else { 0.0 },
                r.blanks,
                r.recycles,
                mib(r.peak_rss_bytes),
                &r.verdict_digest[..16]
            );
        }
    }
    match disagreement {
        Some(message) => Err(Error::Inconsistent(message)),
        None => Ok(()),
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
