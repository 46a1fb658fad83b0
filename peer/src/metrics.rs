//! `peer run --metrics FILE`: the run's counters and timings in the
//! Prometheus text exposition format (version 0.0.4), for a node exporter's
//! textfile collector or any scraper that reads files, or in OpenMetrics
//! 1.0 (`--metrics-format openmetrics`). Every sample carries the `backend`
//! and `policy` labels; every label combination is present from the start
//! (zeros), so rates and alerts need no `absent()`.

use crate::Error;
use crate::report::RunReport;
use std::fmt::Write as _;
use std::path::Path;

/// Escapes a label value as the format requires.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// Which text format `--metrics` writes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
pub enum MetricsFormat {
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    #[default]
    Prometheus,
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`):
    /// counter families named without `_total`, and a final `# EOF`.
    #[value(name = "openmetrics")]
    #[strum(serialize = "openmetrics")]
    #[serde(rename = "openmetrics")]
    OpenMetrics,
}

struct Out {
    text: String,
    labels: String,
    format: MetricsFormat,
}

impl Out {
    /// One metric family: its help, type, and samples (extra labels, value).
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(&[(&str, &str)], f64)]) {
        // OpenMetrics names a counter's family without the `_total` its
        // samples carry; 0.0.4 names the family as its samples.
        let family = match (self.format, kind) {
            (MetricsFormat::OpenMetrics, "counter") => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let _ = writeln!(self.text, "# HELP peer_executor_{family} {help}");
        let _ = writeln!(self.text, "# TYPE peer_executor_{family} {kind}");
        for (extra, value) in samples {
            let mut labels = self.labels.clone();
            for (k, v) in *extra {
                let _ = write!(labels, ",{k}=\"{}\"", escape(v));
            }
            let _ = writeln!(self.text, "peer_executor_{name}{{{labels}}} {value}");
        }
    }

    /// A histogram family: cumulative `_bucket{le}` samples, `_sum`,
    /// `_count`.
    fn histogram(&mut self, name: &str, help: &str, h: &executor_core::Histogram) {
        let _ = writeln!(self.text, "# HELP peer_executor_{name} {help}");
        let _ = writeln!(self.text, "# TYPE peer_executor_{name} histogram");
        let labels = &self.labels;
        for (bound, n) in h.cumulative() {
            let le = if bound.is_infinite() { "+Inf".to_string() } else { format!("{bound:e}") };
            let _ = writeln!(self.text, "peer_executor_{name}_bucket{{{labels},le=\"{le}\"}} {n}");
        }
        let _ = writeln!(self.text, "peer_executor_{name}_sum{{{labels}}} {}", h.sum().as_secs_f64());
        let _ = writeln!(self.text, "peer_executor_{name}_count{{{labels}}} {}", h.count());
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help, &[(&[], value)]);
    }
}

/// [`abi::ABI_VERSION`] as a label value (a test keeps them equal).
const ABI_VERSION: &str = "1";

/// The report as metrics text in `format`.
pub fn render(r: &RunReport, format: MetricsFormat) -> String {
    let mut o = Out {
        text: String::new(),
        labels: format!("backend=\"{}\",policy=\"{}\"", r.backend, escape(&r.policy.to_string())),
        format,
    };
    let s = &r.stats;
    let c = "counter";
    let g = "gauge";
    // Engines separated by "; " (a comma in a label value trips simple
    // parsers).
    let engines = env!("PEER_ENGINES").replace(", ", "; ");
    let build = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("engines", engines.as_str()),
        ("abi", ABI_VERSION),
        ("commit", env!("PEER_COMMIT")),
    ];
    o.family("build_info", g, "1, labelled with what this peer was built from.", &[(&build[..], 1.0)]);
    o.one("transactions_total", c, "Transactions validated.", s.transactions as f64);
    o.one("blocks_total", c, "Blocks ended.", s.blocks as f64);
    let kinds: Vec<(String, u64)> = s.rejected.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    // One label set for the whole family: `kind` is "none" but for
    // rejections.
    let mut verdicts: Vec<(Vec<(&str, &str)>, f64)> = vec![
        (vec![("verdict", "approved"), ("kind", "none")], s.approved as f64),
        (vec![("verdict", "denied"), ("kind", "none")], s.denied as f64),
    ];
    verdicts.extend(kinds.iter().map(|(k, n)| (vec![("verdict", "rejected"), ("kind", k.as_str())], *n as f64)));
    let verdicts: Vec<(&[(&str, &str)], f64)> = verdicts.iter().map(|(l, v)| (&l[..], *v)).collect();
    o.family("verdicts_total", c, "Verdicts by outcome and rejection kind.", &verdicts);
    o.one("blanks_total", c, "Scheduled blanks (restores to the post-init state).", s.blanks as f64);
    let names: Vec<&str> = s.recycles_by_cause.keys().map(|k| k.into()).collect();
    let labels: Vec<[(&str, &str); 1]> = names.iter().map(|k| [("cause", *k)]).collect();
    let causes: Vec<(&[(&str, &str)], f64)> =
        labels.iter().zip(s.recycles_by_cause.values()).map(|(l, n)| (&l[..], *n as f64)).collect();
    o.family("recycles_total", c, "Instances rebuilt, by cause.", &causes);
    o.one(
        "instances_built_total",
        c,
        "Instances built (instantiate + executor_init or snapshot).",
        s.instances_built as f64,
    );
    o.one(
        "restored_builds_total",
        c,
        "Instances built from the blank snapshot, no executor_init.",
        s.restored_builds as f64,
    );
    o.one("upgrades_total", c, "Executor upgrades installed.", s.upgrades as f64);
    o.one("audits_total", c, "Transactions also validated on a blank instance.", s.audits as f64);
    o.one("state_leaks_total", c, "Audited transactions whose warm verdict differed.", s.state_leaks as f64);
    o.one("host_failures_total", c, "Host failures survived by a retry.", s.host_failures as f64);
    o.one("validation_seconds_total", c, "Time spent validating.", r.elapsed_s);
    o.one("transactions_per_second", g, "Validation throughput of the run.", r.tx_per_sec);
    o.one("load_seconds", g, "Loading the executor: checks, compile (or cache), first instance.", r.load_s);
    o.one("instrument_seconds", g, "Of the load: the instrumentation pass.", r.instrument_s);
    o.one("compile_seconds", g, "Of the load: the engine's compilation or the cache load.", r.compile_s);
    let outcome = s.cache.to_string();
    o.family(
        "cache_load",
        g,
        "1 for how the executor's compiled code was obtained.",
        &[(&[("outcome", &outcome)], 1.0)],
    );
    let snapshot = s.snapshot.to_string();
    o.family(
        "blank_snapshot",
        g,
        "1 for where the executor's blank state comes from (restored, captured, off, unportable).",
        &[(&[("outcome", &snapshot)], 1.0)],
    );
    o.one("peak_rss_bytes", g, "Peak resident memory of the process.", r.peak_rss_bytes as f64);
    if let Some(p) = &r.profile {
        o.one("recycle_seconds_total", c, "Of validation: rebuilds for recycles.", p.recycles_s);
    }
    if r.profile.is_some() {
        let histograms = [
            (
                "build",
                "Instance builds: instantiate, then start and executor_init or the blank snapshot.",
                &s.build_histogram,
            ),
            ("blank", "Scheduled blanks (restores, or rebuilds where a restore cannot).", &s.blank_histogram),
            (
                "call",
                "Guest calls of one transaction (executor_alloc, payload copy, executor_validate).",
                &s.call_histogram,
            ),
        ];
        for (what, help, h) in histograms {
            o.histogram(&format!("{what}_duration_seconds"), help, h);
        }
    }
    o.one("validation_threads", g, "Workers validating in order (--threads; 1 without).", r.threads as f64);
    let p = &r.parallel;
    o.one("executions_total", c, "Transaction runs of in-order parallel validation.", p.executions as f64);
    o.one("reexecutions_total", c, "Runs started again: a value read changed, or the executor.", p.reexecutions as f64);
    o.one("conflicts_total", c, "Runs found to have read a value an earlier commit changed.", p.conflicts as f64);
    o.one(
        "taken_over_total",
        c,
        "Runs the committer took over (transactions too short to run in parallel).",
        p.taken_over as f64,
    );
    if let Some(rate) = r.prevalidation_tx_per_sec {
        o.one("prevalidation_transactions_per_second", g, "Parallel pre-validation throughput.", rate);
    }
    o.one(
        "guest_log_lines_dropped_total",
        c,
        "Guest log lines the rate limit dropped (PEER_GUEST_LOG_RATE).",
        executor_core::guest_log::dropped_total() as f64,
    );
    if format == MetricsFormat::OpenMetrics {
        o.text.push_str("# EOF\n");
    }
    o.text
}

/// Writes [`render`] to `path` atomically (a temporary file renamed), so a
/// collector never reads half a file.
pub fn write(path: &Path, r: &RunReport, format: MetricsFormat) -> Result<(), Error> {
    let err = |e: std::io::Error| Error::Output { path: path.display().to_string(), message: e.to_string() };
    let (replacement, mut file) = crate::input::Replacement::create(path).map_err(err)?;
    std::io::Write::write_all(&mut file, render(r, format).as_bytes()).map_err(err)?;
    drop(file);
    replacement.commit().map_err(err)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_abi_label_is_the_abi_version() {
        assert_eq!(super::ABI_VERSION, abi::ABI_VERSION.to_string());
    }
}
