//! `peer`'s clap types: the commands, their flags and help. The dispatch
//! to the library is in `main.rs`; `peer run`'s own flags are the
//! library's ([`peer::settings::RunFlags`]), shared with the tests.

use clap::{Args, Parser, Subcommand};
use peer::settings::{self, CommonFlags, RunFlags};
use std::path::PathBuf;

/// Runs blockchain executors (WebAssembly) warm across transactions, safely,
/// on wasmtime, wasmer and wasmi. Without a command: `peer run` with the
/// config's settings.
#[derive(Parser, Debug)]
#[command(name = "peer", version, long_version = LONG_VERSION, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// Without a command, `peer run`'s flags.
    #[command(flatten)]
    pub(crate) run: RunFlags,
    /// Log lines as text (coloured on a terminal) or one JSON object per line, for log shippers
    /// [default: $PEER_LOG_FORMAT, else text].
    #[arg(long, global = true, value_name = "FORMAT", help_heading = "Output and config")]
    pub(crate) log_format: Option<LogFormat>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `LEVEL target: message fields`, coloured only on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// `peer --version`: the engines compiled in, the executor ABI and the
/// commit, as an operator reports a bug with them.
pub(crate) const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nengines: ",
    env!("PEER_ENGINES"),
    "\nexecutor ABI: ",
    "1",
    "\ncommit: ",
    env!("PEER_COMMIT")
);

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run one executor over the synthetic workload on one backend under
    /// one persistence policy.
    Run(RunFlags),
    /// Run the same workload on every compiled-in backend under fresh,
    /// every-tx:1, every-block:1 and until-crash, side by side.
    Compare(CompareArgs),
    /// Run the synthetic workload as `peer run` does and record it to a workload file (genesis
    /// state, blocks, each transaction with its writes), for `--workload FILE` to replay.
    Record(RecordArgs),
    /// Load an executor under the limits on every compiled-in backend and report what an operator
    /// needs before an upgrade: features, imports, exports, each module limit used and allowed,
    /// init fuel, blank state, snapshot, compile times.
    Check(CheckArgs),
    /// Fill the compiled-executor cache (every backend by default) under the keys `peer run` with
    /// the same settings looks up, so a peer deployed with it starts warm.
    Compile(CompileArgs),
    /// List, verify or clear the compiled-executor cache.
    Cache(CacheArgs),
}

/// The settings that decide how an executor loads: the config and the
/// limit flags (`peer check`, `peer compile`).
#[derive(Args, Debug, Clone)]
pub(crate) struct LoadFlags {
    /// The executor (.wasm or .wat).
    #[arg(value_name = "EXECUTOR")]
    pub(crate) executor: PathBuf,
    /// Fuel per transaction [default: 10000000].
    #[arg(long, value_name = "UNITS", help_heading = "Limits")]
    pub(crate) fuel: Option<u64>,
    /// Most linear memory per instance, bytes or with KiB/MiB/GiB [default: 64MiB].
    #[arg(long, value_name = "BYTES", value_parser = settings::parse_bytes, help_heading = "Limits")]
    pub(crate) memory_limit: Option<u64>,
    /// Deterministic stack budget, bytes or with KiB/MiB [default: 128KiB].
    #[arg(long, value_name = "BYTES", value_parser = settings::parse_bytes, help_heading = "Limits")]
    pub(crate) max_stack: Option<u64>,
    /// Config file [default: $PEER_CONFIG, else configs/peer/config.json].
    #[arg(long, value_name = "FILE", help_heading = "Output and config")]
    pub(crate) config: Option<PathBuf>,
}

impl LoadFlags {
    /// The run flags these stand for.
    pub(crate) fn common(&self) -> CommonFlags {
        CommonFlags {
            executor: Some(self.executor.clone()),
            fuel: self.fuel,
            memory_limit: self.memory_limit,
            max_stack: self.max_stack,
            config: self.config.clone(),
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) load: LoadFlags,
    /// Print JSON on stdout.
    #[arg(long, help_heading = "Output and config")]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct CompileArgs {
    #[command(flatten)]
    pub(crate) load: LoadFlags,
    /// Only this backend (repeatable) [default: every compiled-in one].
    #[arg(long, value_name = "BACKEND")]
    pub(crate) backend: Vec<peer::backends::BackendKind>,
    /// The cache directory (created owner-only) [default: the config's `cache`].
    #[arg(long, value_name = "DIR", help_heading = "Cache")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long, help_heading = "Output and config")]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct CacheArgs {
    #[command(subcommand)]
    pub(crate) action: CacheAction,
}

#[derive(Subcommand, Debug)]
pub(crate) enum CacheAction {
    /// List the entries: executor hash, backend, kind, size, age.
    Ls(CacheFlags),
    /// Read every entry whole and check its header and checksum.
    Verify(CacheFlags),
    /// Remove the cache's own files (entries and temporaries), nothing else.
    Clear(CacheFlags),
}

#[derive(Args, Debug)]
pub(crate) struct CacheFlags {
    /// The cache directory [default: the config's `cache`].
    #[arg(long, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Config file [default: $PEER_CONFIG, else configs/peer/config.json].
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct RecordArgs {
    /// The workload file to write (docs/workload.md); replaced only when complete.
    #[arg(long, value_name = "FILE", help_heading = "Output and config")]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) run: RunFlags,
}

#[derive(Args, Debug)]
pub(crate) struct CompareArgs {
    /// Only this backend (repeatable) [default: every compiled-in one].
    #[arg(long, value_name = "BACKEND", help_heading = "Backend and policy")]
    pub(crate) backend: Vec<peer::backends::BackendKind>,
    /// Only this policy (repeatable, in this order) [default: fresh, every-tx:1, every-block:1,
    /// until-crash].
    #[arg(long, value_name = "SPEC", value_parser = settings::PolicyParser, help_heading = "Backend and policy")]
    pub(crate) policy: Vec<executor_core::PersistencePolicy>,
    /// Also validate every-tx:1 in order on N workers on every backend, and show the scaling
    /// against one thread (the digests must agree) [default: the config's `threads`].
    #[arg(long, value_name = "N", value_parser = settings::positive::<std::num::NonZeroUsize>, help_heading = "Validation")]
    pub(crate) threads: Option<std::num::NonZeroUsize>,
    /// Measured repetitions of every configuration, interleaved; the table shows medians.
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Measurement")]
    pub(crate) repeat: u32,
    /// Transactions of the unmeasured warm-up run of every configuration (0: none; the profile
    /// columns are then empty) [default: --transactions, at most 500].
    #[arg(long, value_name = "N", help_heading = "Measurement")]
    pub(crate) warmup: Option<u64>,
    #[command(flatten)]
    pub(crate) common: CommonFlags,
    /// Also write a chart of the throughputs to FILE (SVG): medians as dots on a log axis,
    /// min–max whiskers.
    #[arg(long, value_name = "FILE.svg", help_heading = "Output and config")]
    pub(crate) chart: Option<PathBuf>,
    /// Also write the tables to FILE as Markdown.
    #[arg(long, value_name = "FILE.md", help_heading = "Output and config")]
    pub(crate) export_markdown: Option<PathBuf>,
    /// Also write the raw numbers to FILE as CSV: one row per configuration and reference.
    #[arg(long, value_name = "FILE.csv", help_heading = "Output and config")]
    pub(crate) export_csv: Option<PathBuf>,
}
