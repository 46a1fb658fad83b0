//! `peer`: the command line of docs/cli.md — the dispatch of [`cli`]'s
//! commands to the library (settings, run, report, compare, tools).

mod cli;

use clap::Parser;
use cli::{CacheAction, CacheArgs, CheckArgs, Cli, Command, CompareArgs, CompileArgs, LogFormat};
use peer::Error;
use peer::progress::progress_bar;
use peer::report::print_summary;
use peer::settings::{self, CommonFlags, RunFlags};
use std::path::PathBuf;
use std::process::ExitCode;

fn cmd_run(flags: &RunFlags, record: Option<&PathBuf>) -> Result<(), Error> {
    let settings::Resolved { run: mut s, metrics, metrics_format } = settings::resolve(flags)?;
    if let Some(path) = &metrics {
        peer::input::check_output(path).map_err(|e| Error::Usage(format!("--metrics {}: {e}", path.display())))?;
    }
    if let Some(path) = record {
        let refused = [
            ("--workload", s.workload.is_some()),
            ("--threads", flags.threads.is_some()),
            ("--prevalidate", flags.prevalidate.is_some()),
        ];
        if let Some((flag, _)) = refused.iter().find(|(_, given)| *given) {
            return Err(Error::Usage(format!(
                "{flag}: not with `peer record`, which records the synthetic workload on one thread"
            )));
        }
        peer::input::check_output(path).map_err(|e| Error::Usage(format!("--out {}: {e}", path.display())))?;
        (s.threads, s.prevalidate, s.record) = (None, None, Some(path.clone()));
    }
    let total = match &s.workload {
        Some(path) => peer::recording::peek_header(path).and_then(|h| h.transactions).unwrap_or(0).min(s.transactions),
        None => s.transactions,
    };
    let bar = progress_bar(total, flags.common.json);
    bar.set_message(format!("{} {}", s.backend, s.policy));
    let report = peer::run::run(&s, &mut |done| bar.set_position(done));
    bar.finish_and_clear();
    executor_core::guest_log::report_dropped();
    let report = report?;
    if let Some(path) = &metrics {
        peer::metrics::write(path, &report, metrics_format)?;
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
    // Every output is checked before the (long) run, not after it.
    let outputs =
        [("--chart", &args.chart), ("--export-markdown", &args.export_markdown), ("--export-csv", &args.export_csv)];
    for (flag, path) in outputs {
        if let Some(path) = path {
            peer::input::check_output(path).map_err(|e| Error::Usage(format!("{flag} {}: {e}", path.display())))?;
        }
    }
    let bar = progress_bar(0, args.common.json);
    let selection = peer::compare::Selection { backends: args.backend.clone(), policies: args.policy.clone() };
    let rounds = peer::compare::Rounds {
        warmup: args.warmup.unwrap_or_else(|| peer::compare::Rounds::default_warmup(base.transactions)),
        repeat: args.repeat,
    };
    let comparison = peer::compare::compare(&base, &selection, rounds, &bar);
    bar.finish_and_clear();
    executor_core::guest_log::report_dropped();
    let comparison = comparison?;
    let title =
        format!("peer compare: {} ({} transactions, median of {})", base.executor.name, base.transactions, args.repeat);
    let write = |flag: &str, path: &Option<PathBuf>, text: &dyn Fn() -> String| match path {
        Some(path) => std::fs::write(path, text())
            .map_err(|e| Error::Usage(format!("{flag} {}: cannot write: {e}", path.display()))),
        None => Ok(()),
    };
    write("--chart", &args.chart, &|| peer::compare::chart(&comparison, &title))?;
    write("--export-markdown", &args.export_markdown, &|| peer::compare::markdown(&comparison, &title))?;
    write("--export-csv", &args.export_csv, &|| peer::compare::csv(&comparison))?;
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

fn cmd_check(args: &CheckArgs) -> Result<(), Error> {
    let flags = RunFlags { common: CommonFlags { no_cache: true, ..args.load.common() }, ..Default::default() };
    let report = peer::tools::check(&settings::resolve(&flags)?.run)?;
    match args.json {
        true => println!("{}", serde_json::to_string(&report).expect("a report serialises")),
        false => peer::tools::print_check(&report),
    }
    Ok(())
}

fn cmd_compile(args: &CompileArgs) -> Result<(), Error> {
    let common = CommonFlags { cache_dir: args.cache_dir.clone(), ..args.load.common() };
    let run = settings::resolve(&RunFlags { common, ..Default::default() })?.run;
    let mut backends = peer::backends::compiled_in();
    if let Some(missing) = args.backend.iter().find(|b| !backends.contains(b)) {
        return Err(Error::NotCompiledIn(*missing));
    }
    if !args.backend.is_empty() {
        backends.retain(|b| args.backend.contains(b));
    }
    let done = peer::tools::compile(&run, &backends)?;
    if args.json {
        println!("{}", serde_json::to_string(&done).expect("a report serialises"));
        return Ok(());
    }
    let dir = run.cache.as_ref().map(|c| c.dir.display().to_string()).unwrap_or_default();
    println!("peer compile: {} into {dir}", run.executor.name);
    for c in done {
        println!("  {}: compiled code {}, blank snapshot {} ({:.1} ms)", c.backend, c.cache, c.snapshot, c.ms);
    }
    Ok(())
}

fn cmd_cache(args: &CacheArgs) -> Result<(), Error> {
    let (flags, verify, clear) = match &args.action {
        CacheAction::Ls(f) => (f, false, false),
        CacheAction::Verify(f) => (f, true, false),
        CacheAction::Clear(f) => (f, false, true),
    };
    let common = CommonFlags { cache_dir: flags.cache_dir.clone(), config: flags.config.clone(), ..Default::default() };
    let run = settings::resolve(&RunFlags { common, ..Default::default() })?.run;
    let config = run
        .cache
        .ok_or_else(|| Error::Usage("no cache directory: give --cache-dir DIR or a config with `cache`".into()))?;
    let Some(cache) = peer::tools::open_cache(&config)? else {
        match flags.json {
            true => println!("{}", if clear { r#"{"removed_files":0,"removed_bytes":0}"# } else { "[]" }),
            false => println!("cache {}: no such directory (nothing cached)", config.dir.display()),
        }
        return Ok(());
    };
    if clear {
        let (files, bytes) = cache.clear();
        match flags.json {
            true => println!(r#"{{"removed_files":{files},"removed_bytes":{bytes}}}"#),
            false => println!("cache {}: removed {files} files, {bytes} bytes", config.dir.display()),
        }
        return Ok(());
    }
    let rows = peer::tools::cache_rows(&cache, verify);
    match flags.json {
        true => println!("{}", serde_json::to_string(&rows).expect("rows serialise")),
        false => peer::tools::print_cache(&config.dir, &rows),
    }
    let bad = rows.iter().filter(|r| r.verified.as_deref().is_some_and(|v| v != "ok")).count();
    match bad {
        0 => Ok(()),
        n => Err(Error::Inconsistent(format!(
            "{n} cache entries failed verification (a run deletes and recompiles them)"
        ))),
    }
}

/// clap's rendered error as one line: the `error:` line, then what clap
/// puts under it — possible values, tips ("a similar argument exists") —
/// folded in; the usage is dropped.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines().skip_while(|l| !l.starts_with("error:"));
    let mut line = lines.next().unwrap_or("error: bad usage").to_string();
    for more in lines.map(str::trim).filter(|l| !l.is_empty()) {
        if more.starts_with("Usage:") || more.starts_with("For more information") {
            break;
        }
        line.push_str(if more.starts_with('[') { " " } else { "; " });
        line.push_str(more);
    }
    line
}

/// Sets up the logs: `RUST_LOG` (default `warn`; an invalid filter is an
/// error, not silence), the format, and the writer that keeps them apart
/// from the progress bar.
fn init_logs(format: Option<LogFormat>) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            tracing_subscriber::EnvFilter::try_new(&spec).map_err(|e| format!("RUST_LOG {spec:?}: {e}"))?
        }
        _ => "warn".into(),
    };
    let format = match (format, std::env::var("PEER_LOG_FORMAT").as_deref()) {
        (Some(format), _) => format,
        (None, Ok("json")) => LogFormat::Json,
        (None, Ok("text") | Err(_)) => LogFormat::Text,
        (None, Ok(other)) => return Err(format!("PEER_LOG_FORMAT {other:?}: use \"text\" or \"json\"")),
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_writer(peer::progress::LogWriter).with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        // Colour only for a terminal: logs redirected to a file stay text.
        LogFormat::Text => {
            builder.with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()).init()
        }
    }
    Ok(())
}

fn main() -> ExitCode {
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
            // cli.md: one `error:` line, status 2 — clap's tips folded in.
            eprintln!("{}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logs(cli.log_format) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    // A panic inside the host is caught and retried by the driver; report
    // it as a log line, never as a raw panic message on the user's terminal.
    std::panic::set_hook(Box::new(|info| tracing::error!("host panic: {info}")));
    let result = match &cli.command {
        None => cmd_run(&cli.run, None),
        Some(Command::Run(flags)) => cmd_run(flags, None),
        Some(Command::Record(args)) => cmd_run(&args.run, Some(&args.out)),
        Some(Command::Check(args)) => cmd_check(args),
        Some(Command::Compile(args)) => cmd_compile(args),
        Some(Command::Cache(args)) => cmd_cache(args),
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
