//! The command line's settings and the one merge of flags over the config
//! file: every value is taken from the flag if given, else from the file,
//! else from the default, once, here.

use crate::Error;
use crate::backends::{self, BackendKind};
use crate::config::{self, Config};
use crate::run::{Executor, RunSettings};
use clap::Args;
use executor_core::{CacheConfig, PersistencePolicy};
use std::path::{Path, PathBuf};

/// The most worker threads: each holds an engine, compiled code and an
/// instance.
pub const MAX_THREADS: usize = 64;

/// Settings shared by `run` and `compare`.
#[derive(Args, Debug, Default, Clone)]
pub struct CommonFlags {
    /// Replay this workload file (docs/workload.md: genesis state, blocks, each transaction with
    /// its writes) instead of the synthetic ledger; all of it, or the first --transactions.
    #[arg(long, value_name = "FILE", help_heading = "Workload")]
    pub workload: Option<PathBuf>,
    /// Executor to run (.wasm or .wat) [default: the embedded default executor].
    #[arg(long, value_name = "FILE", help_heading = "Workload")]
    pub executor: Option<PathBuf>,
    /// Transactions to validate [default: 10000].
    #[arg(long, value_name = "N", help_heading = "Workload")]
    pub transactions: Option<u64>,
    /// Transactions per block [default: 100].
    #[arg(long, value_name = "K", value_parser = positive_u64, help_heading = "Workload")]
    pub block_size: Option<u64>,
    /// Workload seed [default: 42].
    #[arg(long, value_name = "S", help_heading = "Workload")]
    pub seed: Option<u64>,
    /// Fuel per transaction [default: 10000000].
    #[arg(long, value_name = "UNITS", help_heading = "Limits")]
    pub fuel: Option<u64>,
    /// Most linear memory per instance, bytes or with KiB/MiB/GiB [default: 64MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, help_heading = "Limits")]
    pub memory_limit: Option<u64>,
    /// Deterministic stack budget, bytes (or KiB/MiB) of the engine-independent frame model
    /// [default: 128KiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, help_heading = "Limits")]
    pub max_stack: Option<u64>,
    /// Keep compiled executors in DIR (created owner-only) [default: the config's `cache`].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache", help_heading = "Cache")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every time, even if the config enables the cache.
    #[arg(long, help_heading = "Cache")]
    pub no_cache: bool,
    /// Run `executor_init` for every instance built, instead of restoring the blank snapshot
    /// taken after the first (in memory, and in the cache across restarts).
    #[arg(long, help_heading = "Backend and policy")]
    pub no_snapshot: bool,
    /// Print JSON on stdout.
    #[arg(long, help_heading = "Output and config")]
    pub json: bool,
    /// Config file [default: $PEER_CONFIG, else configs/peer/config.json].
    #[arg(long, value_name = "FILE", help_heading = "Output and config")]
    pub config: Option<PathBuf>,
}

/// `peer run`'s own settings.
#[derive(Args, Debug, Default, Clone)]
pub struct RunFlags {
    /// The engine [default: the config's, else the first compiled in].
    #[arg(long, help_heading = "Backend and policy")]
    pub backend: Option<BackendKind>,
    /// How long an instance stays warm [default: every-tx:1].
    #[arg(long, value_name = "SPEC", value_parser = PolicyParser, help_heading = "Backend and policy")]
    pub policy: Option<PersistencePolicy>,
    /// How a blank is done: auto (measured per executor), restore (in place, write barrier) or
    /// rebuild (no barrier) [default: auto].
    #[arg(long, value_name = "METHOD", value_parser = choice::<executor_core::BlankMethod>(), help_heading = "Backend and policy")]
    pub blank: Option<executor_core::BlankMethod>,
    /// Also validate every K-th transaction on a blank instance; differences count as state leaks.
    #[arg(long, value_name = "K", value_parser = positive::<std::num::NonZeroU32>, help_heading = "Validation")]
    pub audit_every: Option<std::num::NonZeroU32>,
    /// Validate each block in order on N workers, with exactly the verdicts and final state of one
    /// thread (transactions run optimistically and run again where a value they read changed;
    /// in parallel under every-tx:1 and fresh, on one thread under other policies).
    #[arg(long, value_name = "N", value_parser = positive::<std::num::NonZeroUsize>, help_heading = "Validation")]
    pub threads: Option<std::num::NonZeroUsize>,
    /// Pre-validate each block on N worker threads (each transaction on a blank instance, against
    /// the state at the block's start) after its in-order validation; reports
    /// prevalidation_digest and prevalidation_tx_per_sec.
    #[arg(long, value_name = "N", value_parser = positive::<std::num::NonZeroUsize>, help_heading = "Validation")]
    pub prevalidate: Option<std::num::NonZeroUsize>,
    /// Settings shared with `compare`.
    #[command(flatten)]
    pub common: CommonFlags,
    /// Every N blocks, upgrade the executor (alternating it and a variant with other bytes).
    #[arg(long, value_name = "BLOCKS", value_parser = positive_u64, help_heading = "Workload")]
    pub upgrade_every: Option<u64>,
    /// Make P percent of transactions transfers from the block's hot account, each reading the
    /// balance the previous one wrote (conflicts for --threads) [default: 0].
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u64).range(0..=100), help_heading = "Workload")]
    pub hot_percent: Option<u64>,
    /// Put --upgrade-every's upgrade at position K of its block [default: 0, the first].
    #[arg(long, value_name = "K", help_heading = "Workload")]
    pub upgrade_offset: Option<u64>,
    /// Time each phase and print where the time went (workload, guest calls, blanks, recycles).
    #[arg(long, help_heading = "Output and config")]
    pub profile: bool,
    /// Write the run's counters and timings to FILE in the Prometheus text format.
    #[arg(long, value_name = "FILE", help_heading = "Output and config")]
    pub metrics: Option<PathBuf>,
    /// --metrics' format [default: prometheus, the 0.0.4 text format].
    #[arg(long, value_name = "FORMAT", help_heading = "Output and config")]
    pub metrics_format: Option<crate::metrics::MetricsFormat>,
}

/// A value parser for a `strum` enum of the core (which knows no clap):
/// its spellings as clap's possible values, listed in help and in errors.
pub fn choice<T>() -> impl clap::builder::TypedValueParser<Value = T>
where
    T: strum::IntoEnumIterator + Into<&'static str> + std::str::FromStr + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser as _;
    let names: Vec<&'static str> = T::iter().map(Into::into).collect();
    clap::builder::PossibleValuesParser::new(names)
        .map(|name: String| T::from_str(&name).unwrap_or_else(|_| unreachable!("a possible value parses")))
}

/// `--policy`: the spellings of [`PersistencePolicy`] as possible values
/// (help, errors, completions), parsed by the core's `FromStr`.
#[derive(Clone, Copy, Debug)]
pub struct PolicyParser;

impl clap::builder::TypedValueParser for PolicyParser {
    type Value = PersistencePolicy;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<PersistencePolicy, clap::Error> {
        let text = value.to_string_lossy();
        text.parse().map_err(|_| {
            let arg = arg.map_or("--policy".to_string(), |a| a.to_string());
            let values: Vec<String> =
                self.possible_values().into_iter().flatten().map(|v| v.get_name().to_string()).collect();
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!(
                    "invalid value '{text}' for '{arg}' [possible values: {}] (N a whole number ≥ 1)\n",
                    values.join(", ")
                ),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        use clap::builder::PossibleValue;
        Some(Box::new(
            [
                PossibleValue::new("every-tx:N").help("blank after every N transactions (default N = 1)"),
                PossibleValue::new("every-block:N").help("blank after every N blocks"),
                PossibleValue::new("until-crash").help("blank only when a trap or a recycle rebuilds"),
                PossibleValue::new("fresh").help("a new instance and executor_init per transaction (reference)"),
            ]
            .into_iter(),
        ))
    }
}

/// A byte size: a number of bytes, or a number with an IEC unit (`KiB`,
/// `MiB`, `GiB`: powers of 1024), e.g. `64MiB`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| "not a size: a number of bytes, or one with KiB, MiB or GiB (e.g. 64MiB)".to_string())?;
    let unit = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit `{other}`: use KiB, MiB or GiB (powers of 1024)")),
    };
    number.checked_mul(unit).ok_or_else(|| "too large".to_string())
}

/// A count of at least 1, with an error that says so.
pub fn positive_u64(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number".into()),
    }
}

/// A non-zero count (`NonZeroUsize`, `NonZeroU32`), with an error that
/// says what is wrong.
pub fn positive<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    positive_u64(text)?;
    text.trim().parse().map_err(|_| "too large".into())
}

/// A run's settings and where its outputs go.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What to run.
    pub run: RunSettings,
    /// `--metrics` (or the config's `metrics`), resolved.
    pub metrics: Option<PathBuf>,
    /// Its format.
    pub metrics_format: crate::metrics::MetricsFormat,
}

/// The config file used — `--config FILE`, else `$PEER_CONFIG`, else the
/// default path if it exists (a named file must exist) — its directory, and
/// its path (`None`: no file, the defaults).
fn load_config(common: &CommonFlags) -> Result<(Config, Option<PathBuf>, Option<PathBuf>), Error> {
    let named = common
        .config
        .clone()
        .or_else(|| std::env::var_os(config::CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from));
    match named {
        Some(path) => {
            let (config, dir) = Config::load(&path, true)?;
            Ok((config, dir, Some(path)))
        }
        None => {
            let path = Path::new(config::DEFAULT_PATH);
            let (config, dir) = Config::load(path, false)?;
            let used = dir.is_some().then(|| path.to_path_buf());
            Ok((config, dir, used))
        }
    }
}

/// `peer run`'s settings: `flags` over the config file over the defaults.
pub fn resolve(flags: &RunFlags) -> Result<Resolved, Error> {
    let common = &flags.common;
    let (config, dir, used) = load_config(common)?;
    let dir = dir.as_deref();
    let mut limits = config.limits();
    limits.max_stack = common.max_stack.unwrap_or(limits.max_stack);
    limits.fuel = common.fuel.unwrap_or(limits.fuel);
    limits.memory_bytes = common.memory_limit.unwrap_or(limits.memory_bytes);
    // Limits the engines' configuration relies on: an error names the flag
    // or field, never "the module".
    let invalid = |flag: &str, field: &str, from_flag: bool, why: String| match from_flag {
        true => Error::Usage(format!("{flag} {why}")),
        false => Error::Config {
            path: used.as_ref().map_or(config::DEFAULT_PATH.into(), |p| p.display().to_string()),
            message: format!("field `{field}`: {why}"),
        },
    };
    let ceilings = [
        ("--max-stack", "max_stack", common.max_stack, limits.max_stack, executor_core::instrument::MAX_STACK_BUDGET),
        ("--fuel", "fuel", common.fuel, limits.fuel, executor_core::module::MAX_FUEL),
        (
            "--memory-limit",
            "memory_limit",
            common.memory_limit,
            limits.memory_bytes,
            executor_core::module::MAX_MEMORY_LIMIT,
        ),
        ("", "init_fuel", None, limits.init_fuel, executor_core::module::MAX_FUEL),
    ];
    for (flag, field, from_flag, value, ceiling) in ceilings {
        if value > ceiling {
            return Err(invalid(flag, field, from_flag.is_some(), format!("{value}: at most {ceiling}")));
        }
    }
    if limits.memory_bytes < 65536 || !limits.memory_bytes.is_multiple_of(65536) {
        let why = format!("{}: must be a whole number of 64 KiB wasm pages, at least one", limits.memory_bytes);
        return Err(invalid("--memory-limit", "memory_limit", common.memory_limit.is_some(), why));
    }
    let executor = match (&common.executor, &config.executor) {
        (Some(path), _) => Executor::from_file(path, limits.module.bytes)?,
        (None, Some(path)) => Executor::from_file(&config::relative_to(dir, path), limits.module.bytes)?,
        (None, None) => Executor::default_executor(),
    };
    let backend = match flags.backend.or(config.backend) {
        Some(b) => b,
        None => backends::default_backend().ok_or_else(|| Error::Usage("no backend is compiled in".into()))?,
    };
    let threads = flags.threads.or(config.threads);
    let prevalidate = flags.prevalidate.or(config.prevalidate);
    for (flag, field, from_flag, value) in [
        ("--threads", "threads", flags.threads.is_some(), threads),
        ("--prevalidate", "prevalidate", flags.prevalidate.is_some(), prevalidate),
    ] {
        if let Some(n) = value
            && n.get() > MAX_THREADS
        {
            return Err(invalid(flag, field, from_flag, format!("{n}: at most {MAX_THREADS}")));
        }
    }
    let hot_percent = flags.hot_percent.or(config.hot_percent).unwrap_or(0);
    if hot_percent > 100 {
        return Err(invalid("--hot-percent", "hot_percent", false, format!("{hot_percent}: at most 100")));
    }
    let metrics = match (&flags.metrics, &config.metrics) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(path)) => Some(config::relative_to(dir, path)),
        (None, None) => None,
    };
    let defaults = RunSettings::new(backend, flags.policy.or(config.policy).unwrap_or_default(), executor);
    let run = RunSettings {
        transactions: common.transactions.or(config.transactions).unwrap_or(defaults.transactions),
        block_size: common.block_size.or(config.block_size).unwrap_or(defaults.block_size),
        seed: common.seed.or(config.seed).unwrap_or(defaults.seed),
        limits,
        recycle_watermark: config.recycle_watermark,
        upgrade_every: flags.upgrade_every.or(config.upgrade_every),
        audit_every: flags.audit_every.or(config.audit_every),
        // The metrics include where the time went.
        profile: flags.profile || metrics.is_some(),
        cache: match (&common.cache_dir, common.no_cache) {
            (_, true) => None,
            (Some(dir), false) => {
                Some(CacheConfig { dir: dir.clone(), max_bytes: executor_core::cache::DEFAULT_MAX_BYTES })
            }
            (None, false) => config.cache(dir),
        },
        snapshots: !common.no_snapshot && config.snapshots.unwrap_or(true),
        blank: flags.blank.or(config.blank).unwrap_or_default(),
        threads,
        prevalidate,
        hot_percent,
        config: used.clone(),
        upgrade_offset: flags.upgrade_offset.or(config.upgrade_offset).unwrap_or(0),
        ..defaults
    };
    if run.upgrade_every.is_some() && run.upgrade_offset >= run.block_size {
        let from_flag = flags.upgrade_offset.is_some();
        let why = format!("{}: must be below the block size ({})", run.upgrade_offset, run.block_size);
        return Err(invalid("--upgrade-offset", "upgrade_offset", from_flag, why));
    }
    let run = match &common.workload {
        None => run,
        Some(path) => replaying(run, path, flags)?,
    };
    let metrics_format = flags.metrics_format.or(config.metrics_format).unwrap_or_default();
    Ok(Resolved { run, metrics, metrics_format })
}

/// `run` replaying the workload file `path`: the flags that shape the
/// synthetic workload are refused (the file has its own blocks, upgrades
/// and state), the config's are ignored, and without `--transactions`
/// the whole file runs.
fn replaying(mut run: RunSettings, path: &Path, flags: &RunFlags) -> Result<RunSettings, Error> {
    let common = &flags.common;
    let shaping = [
        ("--seed", common.seed.is_some()),
        ("--block-size", common.block_size.is_some()),
        ("--upgrade-every", flags.upgrade_every.is_some()),
        ("--upgrade-offset", flags.upgrade_offset.is_some()),
        ("--hot-percent", flags.hot_percent.is_some()),
    ];
    if let Some((flag, _)) = shaping.iter().find(|(_, given)| *given) {
        return Err(Error::Usage(format!(
            "{flag} shapes the synthetic workload; a --workload file has its own blocks"
        )));
    }
    run.workload = Some(path.to_path_buf());
    run.transactions = common.transactions.unwrap_or(u64::MAX);
    run.upgrade_every = None;
    run.hot_percent = 0;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("peer-settings-test-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let path = write_config(r#"{"policy": "until_crash", "transactions": 7, "seed": 9, "fuel": 123}"#);
        let common = CommonFlags { config: Some(path), seed: Some(5), ..Default::default() };
        let r = resolve(&RunFlags { common, ..Default::default() }).unwrap().run;
        assert_eq!(r.policy, PersistencePolicy::UntilCrash, "from the file");
        assert_eq!(r.transactions, 7, "from the file");
        assert_eq!(r.seed, 5, "the flag wins");
        assert_eq!(r.limits.fuel, 123, "from the file");
        assert_eq!(r.block_size, 100, "the default");
        let policy = Some("every-tx:3".parse().unwrap());
        let common = CommonFlags { config: Some(write_config(r#"{"policy": "fresh"}"#)), ..Default::default() };
        let r = resolve(&RunFlags { common, policy, ..Default::default() }).unwrap().run;
        assert_eq!(r.policy.to_string(), "every-tx:3", "the policy is merged once, the flag winning");
    }

    #[test]
    fn too_many_threads_name_the_flag() {
        let threads = std::num::NonZeroUsize::new(MAX_THREADS + 1);
        let e = resolve(&RunFlags { threads, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("--threads"), "{e}");
        let e = resolve(&RunFlags { prevalidate: threads, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("--prevalidate"), "{e}");
        let common = CommonFlags { config: Some(write_config(r#"{"threads": 65}"#)), ..Default::default() };
        let e = resolve(&RunFlags { common, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("field `threads`"), "{e}");
    }

    #[test]
    fn sizes_take_iec_units_and_counts_say_they_must_be_positive() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert!(parse_bytes("64MB").unwrap_err().contains("KiB, MiB or GiB"));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999GiB").is_err());
        assert_eq!(positive_u64("0"), Err("must be at least 1".into()));
        assert_eq!(positive::<std::num::NonZeroUsize>("3").unwrap().get(), 3);
        assert!(positive::<std::num::NonZeroU32>("5000000000").is_err());
    }

    #[test]
    fn workload_shape_is_merged_and_checked() {
        let path = write_config(r#"{"threads": 2, "prevalidate": 3, "hot_percent": 40, "upgrade_every": 2}"#);
        let common = CommonFlags { config: Some(path.clone()), ..Default::default() };
        let r = resolve(&RunFlags { common, upgrade_offset: Some(7), ..Default::default() }).unwrap().run;
        assert_eq!((r.threads.unwrap().get(), r.prevalidate.unwrap().get()), (2, 3));
        assert_eq!((r.hot_percent, r.upgrade_offset), (40, 7));
        let common = CommonFlags { config: Some(path), block_size: Some(7), ..Default::default() };
        let e = resolve(&RunFlags { common, upgrade_offset: Some(7), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("--upgrade-offset 7: must be below the block size (7)"), "{e}");
        let common = CommonFlags { config: Some(write_config(r#"{"hot_percent": 101}"#)), ..Default::default() };
        let e = resolve(&RunFlags { common, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("field `hot_percent`"), "{e}");
    }
}
