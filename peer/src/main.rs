//! `peer`: the command line of cli.md — clap's types and the dispatch to
//! the library (settings, run, report, compare).

use clap::{Args, Parser, Subcommand};
use peer::Error;
use peer::progress::progress_bar;
use peer::report::print_summary;
use peer::settings::{self, CommonFlags, RunFlags};
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs blockchain executors (WebAssembly) warm across transactions, safely,
/// on wasmtime, wasmer and wasmi. Without a command: `peer run` with the
/// config's settings.
#[derive(Parser, Debug)]
#[command(name = "peer", version, long_version = LONG_VERSION, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a command, `peer run`'s flags.
    #[command(flatten)]
    run: RunFlags,
}

/// `peer --version`: the engines compiled in, the executor ABI and the
/// commit, as an operator reports a bug with them.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nengines: ",
    env!("PEER_ENGINES"),
    "\nexecutor ABI: ",
    "1",
    "\ncommit: ",
    env!("PEER_COMMIT")
);

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one executor over the synthetic workload on one backend under
    /// one persistence policy.
    Run(RunFlags),
    /// Run the same workload on every compiled-in backend under fresh,
    /// every-tx:1, every-block:1 and until-crash, side by side.
    Compare(CompareArgs),
}

#[derive(Args, Debug)]
struct CompareArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// Also write a grouped bar chart of the median throughputs to FILE (SVG).
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Measured repetitions of every configuration, interleaved; the table shows medians.
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Only this backend (repeatable) [default: every compiled-in one].
    #[arg(long, value_name = "BACKEND")]
    backend: Vec<peer::backends::BackendKind>,
    /// Only this policy (repeatable, in this order) [default: fresh, every-tx:1, every-block:1,
    /// until-crash].
    #[arg(long, value_name = "SPEC")]
    policy: Vec<executor_core::PersistencePolicy>,
    /// Also validate every-tx:1 in order on N workers on every backend, and show the scaling
    /// against one thread (the digests must agree) [default: the config's `threads`].
    #[arg(long, value_name = "N", value_parser = settings::positive::<std::num::NonZeroUsize>)]
    threads: Option<std::num::NonZeroUsize>,
}

fn cmd_run(flags: &RunFlags) -> Result<(), Error> {
    let settings::Resolved { run: s, metrics } = settings::resolve(flags)?;
    if let Some(path) = &metrics {
        peer::input::check_output(path).map_err(|e| Error::Usage(format!("--metrics {}: {e}", path.display())))?;
    }
    let bar = progress_bar(s.transactions, flags.common.json);
    bar.set_message(format!("{} {}", s.backend, s.policy));
    let report = peer::run::run(&s, &mut |done| bar.set_position(done));
    bar.finish_and_clear();
    let report = report?;
    if let Some(path) = &metrics {
        peer::metrics::write(path, &report)?;
    }
    if flags.common.json {
        println!("{}", serde_json::to_string(&report).expect("report serialises"));
    } else {
        print_summary(&report);
    }
    Ok(())
}

fn cmd_compare(args: &CompareArgs) -> Result<(), Error> {
    let flags = RunFlags { common: args.common.clone(), threads: args.threads, ..Default::default() };
    let base = settings::resolve(&flags)?.run;
    if let Some(path) = &args.chart {
        peer::input::check_output(path).map_err(|e| Error::Usage(format!("--chart {}: {e}", path.display())))?;
    }
    let bar = progress_bar(0, args.common.json);
    let selection = peer::compare::Selection { backends: args.backend.clone(), policies: args.policy.clone() };
    let comparison = peer::compare::compare(&base, &selection, args.repeat, &bar);
    bar.finish_and_clear();
    let comparison = comparison?;
    if let Some(path) = &args.chart {
        let title = format!(
            "peer compare: {} ({} transactions, median of {})",
            base.executor.name, base.transactions, args.repeat
        );
        std::fs::write(path, peer::compare::chart(&comparison, &title))
            .map_err(|e| Error::Usage(format!("cannot write the chart {}: {e}", path.display())))?;
    }
    if args.common.json {
        println!("{}", serde_json::to_string(&comparison.rows).expect("rows serialise"));
    } else {
        peer::compare::print(&comparison);
    }
    match comparison.disagreement() {
        Some(message) => Err(Error::Inconsistent(message)),
        None => Ok(()),
    }
}

fn main() -> ExitCode {
    // RUST_LOG, when set, must parse: a typo would otherwise silence the
    // logs an operator asked for.
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => match tracing_subscriber::EnvFilter::try_new(&spec) {
            Ok(filter) => filter,
            Err(e) => {
                eprintln!("error: RUST_LOG {spec:?}: {e}");
                return ExitCode::from(2);
            }
        },
        _ => "warn".into(),
    };
    // Colour only for a terminal: logs redirected to a file stay plain text.
    // PEER_LOG_FORMAT=json: one JSON object per line, for log shippers.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    match std::env::var("PEER_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().init(),
        Ok("text") | Err(_) => {
            builder.with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()).init()
        }
        Ok(other) => {
            eprintln!("error: PEER_LOG_FORMAT {other:?}: use \"text\" or \"json\"");
            return ExitCode::from(2);
        }
    }
    // A panic inside the host is caught and retried by the driver; report
    // it as a log line, never as a raw panic message on the user's terminal.
    std::panic::set_hook(Box::new(|info| tracing::error!("host panic: {info}")));
    // A closed pipe (`peer … | head -1`) ends the program quietly, as it
    // does any Unix tool, instead of a failed print panicking.
    // SAFETY: restoring a signal's default disposition at start-up, before
    // any thread exists.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
        None => cmd_run(&cli.run),
        Some(Command::Run(flags)) => cmd_run(flags),
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
