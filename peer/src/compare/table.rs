//! `peer compare`'s tables — throughput, scaling, plain-engine references,
//! loads — built once as cells and rendered three ways: fixed-width text
//! on stdout, Markdown (`--export-markdown`) and CSV (`--export-csv`, the
//! raw numbers, one row per configuration and reference).

use super::{CompareRow, Comparison};
use crate::report::Profile;
use std::fmt::Write as _;

/// One table: what it shows, its headers, its rows of cells. Cells are
/// right-aligned but for the first `left` columns.
struct Table {
    caption: String,
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    left: usize,
}

impl Table {
    /// Fixed-width text: each column as wide as its widest cell.
    fn text(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                let cells = self.rows.iter().map(|r| r[i].chars().count());
                cells.chain([self.headers[i].chars().count()]).max().unwrap_or(0)
            })
            .collect();
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, (cell, width)) in cells.zip(&widths).enumerate() {
                let pad = " ".repeat(width - cell.chars().count());
                let sep = if i == 0 { "" } else { "  " };
                match i < self.left {
                    true => write!(out, "{sep}{cell}{pad}"),
                    false => write!(out, "{sep}{pad}{cell}"),
                }
                .expect("a String takes writes");
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(&mut self.headers.iter().copied());
        for row in &self.rows {
            out += &line(&mut row.iter().map(String::as_str));
        }
        out
    }

    /// A GitHub-flavoured Markdown table (pipes in cells escaped).
    fn markdown(&self) -> String {
        let cell = |c: &str| c.replace('|', "\\|");
        let mut out = format!("| {} |\n", self.headers.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | "));
        let rule: Vec<&str> = (0..self.headers.len()).map(|i| if i < self.left { "---" } else { "---:" }).collect();
        out += &format!("|{}|\n", rule.join("|"));
        for row in &self.rows {
            out += &format!("| {} |\n", row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
        }
        out
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn profile(row: &CompareRow, f: fn(&Profile) -> f64) -> f64 {
    row.report.profile.as_ref().map_or(0.0, f)
}

/// Every table of the comparison, in the order shown.
fn tables(c: &Comparison) -> Vec<Table> {
    let mut tables = vec![throughput(c)];
    tables.extend(scaling(c));
    tables.extend(references(c));
    tables.push(loads(c));
    tables
}

/// A ratio's cell: `—` where its reference row was not run (`--policy`
/// without `fresh` or `until-crash`).
fn ratio(r: f64) -> String {
    if r > 0.0 { format!("{r:.2}") } else { "—".into() }
}

fn throughput(c: &Comparison) -> Table {
    let warm = match c.warmup {
        0 => "no warm-up; no profile".to_string(),
        n => format!(
            "after a warm-up of {n} transactions; blank, call, instantiate and init times from the (timed) warm-up"
        ),
    };
    let rows = c
        .rows
        .iter()
        .map(|row| {
            let r = &row.report;
            let (min, max) = row.range();
            vec![
                r.backend.to_string(),
                row.label(),
                format!("{:.0}", r.tx_per_sec),
                format!("{min:.0}"),
                format!("{max:.0}"),
                ratio(row.vs_fresh),
                ratio(row.vs_until_crash),
                ratio(row.vs_best_backend),
                r.stats.blanks.to_string(),
                r.stats.recycles.to_string(),
                format!("{:.2}", profile(row, |p| p.blank_us)),
                format!("{:.2}", profile(row, |p| p.call_p50_us)),
                format!("{:.3}", profile(row, |p| p.instantiate_ms)),
                format!("{:.3}", profile(row, |p| p.init_ms)),
                format!("{:.1}", mib(r.peak_rss_bytes)),
                format!("{:.1}", r.load_s * 1e3),
                format!(
                    "{} {}",
                    r.verdict_digest.get(..12).unwrap_or(&r.verdict_digest),
                    if row.digests_agree { "agree" } else { "DIFFER" }
                ),
            ]
        })
        .collect();
    Table {
        caption: format!(
            "median of {} interleaved repetitions (min and max beside it) {warm}; peak memory reset between runs",
            c.repeat
        ),
        headers: vec![
            "backend",
            "policy",
            "tx/s",
            "min",
            "max",
            "×fresh",
            "×u-c",
            "×best",
            "blanks",
            "recycles",
            "blank µs",
            "call p50 µs",
            "inst ms",
            "init ms",
            "peak MiB",
            "load ms",
            "digests",
        ],
        rows,
        left: 2,
    }
}

/// With `--threads`: each backend's in-order parallel validation against
/// its one-thread run of the same policy.
fn scaling(c: &Comparison) -> Option<Table> {
    let rows: Vec<Vec<String>> = c
        .rows
        .iter()
        .filter_map(|row| {
            let r = &row.report;
            Some(vec![
                r.backend.to_string(),
                r.policy.to_string(),
                r.threads.to_string(),
                format!("{:.0}", r.tx_per_sec),
                format!("{:.2}", row.vs_one_thread?),
                r.parallel.reexecutions.to_string(),
                r.parallel.conflicts.to_string(),
            ])
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        caption: "in-order parallel validation (--threads): the same verdicts and state, and the scaling".into(),
        headers: vec!["backend", "policy", "threads", "tx/s", "×1 thr", "re-executed", "conflicts"],
        rows,
        left: 2,
    })
}

/// The median tx/s of `backend` under `policy` on one thread.
fn rate(c: &Comparison, backend: crate::BackendKind, policy: &str) -> Option<f64> {
    c.rows
        .iter()
        .find(|r| r.report.backend == backend && r.report.threads == 1 && r.report.policy.to_string() == policy)
        .map(|r| r.report.tx_per_sec)
}

/// The plain references of each engine, and how the driver's `every-tx:1`
/// and `until-crash` compare with them.
fn references(c: &Comparison) -> Option<Table> {
    let rows: Vec<Vec<String>> = c
        .references
        .iter()
        .map(|r| {
            let ratio = |policy| match (rate(c, r.backend, policy), r.tx_per_sec) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "—".into(),
            };
            vec![
                r.backend.to_string(),
                r.reference.to_string(),
                r.tx_per_sec.map_or("—".into(), |t| format!("{t:.0}")),
                ratio("every-tx:1"),
                ratio("until-crash"),
            ]
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        caption: "plain-engine references: the unmodified executor embedded as without this project (table and chart \
                  only; not in --json, not in the digest check; — = not measured: plain warm+fuel ran out of fuel or \
                  stack, so the unmetered run might not end)"
            .into(),
        headers: vec!["backend", "reference", "tx/s", "every-tx:1 ÷ it", "until-crash ÷ it"],
        rows,
        left: 2,
    })
}

fn loads(c: &Comparison) -> Table {
    let ratio = |a: f64, b: Option<f64>| b.map_or("-".into(), |b| format!("{:.1}", a / b));
    let ms = |x: Option<f64>, none: &str| x.map_or(none.into(), |x| format!("{:.3}", x * 1e3));
    let rows = c
        .loads
        .iter()
        .map(|(backend, l)| {
            vec![
                backend.to_string(),
                format!("{:.3}", l.cold_s * 1e3),
                format!("{:.3}", l.prepare_s * 1e3),
                ms(l.warm_s, "(no cache)"),
                ratio(l.cold_s, l.warm_s),
                format!("{:.3}", l.init_build_s * 1e3),
                ms(l.snapshot_build_s, "(unportable)"),
                ratio(l.init_build_s, l.snapshot_build_s),
            ]
        })
        .collect();
    Table {
        caption: "starting the executor (median of 5): cold = checks + instrumentation + compile; warm = from the \
                  cache; then the first blank instance, by executor_init or from the cached blank snapshot"
            .into(),
        headers: vec![
            "backend",
            "cold ms",
            "of it prep",
            "warm ms",
            "cold÷warm",
            "init ms",
            "snapshot ms",
            "init÷snap",
        ],
        rows,
        left: 1,
    }
}

/// Prints every table on stdout.
pub fn print(c: &Comparison) {
    for (i, t) in tables(c).iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}", t.caption);
        print!("{}", t.text());
    }
}

/// The tables as a Markdown document headed `title`.
pub fn markdown(c: &Comparison, title: &str) -> String {
    let mut out = format!("## {}\n", title.replace('\n', " "));
    for t in tables(c) {
        out += &format!("\n{}\n\n{}", t.caption, t.markdown());
    }
    out
}

/// A CSV field, quoted when it must be (RFC 4180).
fn field(text: &str) -> String {
    match text.contains([',', '"', '\n', '\r']) {
        true => format!("\"{}\"", text.replace('"', "\"\"")),
        false => text.to_string(),
    }
}

const CSV_HEADER: &str = "row,backend,policy,threads,reference,tx_per_sec,tx_per_sec_min,tx_per_sec_max,spread,\
vs_fresh,vs_until_crash,vs_best_backend,vs_one_thread,blanks,recycles,blank_us,call_p50_us,call_p99_us,\
blank_p50_us,blank_p99_us,peak_rss_bytes,load_ms,verdict_digest,state_digest,digests_agree";

/// The comparison as CSV with the raw numbers: one `driver` row per
/// configuration, one `reference` row per plain-engine reference (its
/// driver-only cells empty).
pub fn csv(c: &Comparison) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for row in &c.rows {
        let r = &row.report;
        let (min, max) = row.range();
        let p = |f: fn(&Profile) -> f64| profile(row, f).to_string();
        let cells = [
            "driver".to_string(),
            r.backend.to_string(),
            r.policy.to_string(),
            r.threads.to_string(),
            String::new(),
            r.tx_per_sec.to_string(),
            min.to_string(),
            max.to_string(),
            row.spread.to_string(),
            row.vs_fresh.to_string(),
            row.vs_until_crash.to_string(),
            row.vs_best_backend.to_string(),
            row.vs_one_thread.map_or(String::new(), |v| v.to_string()),
            r.stats.blanks.to_string(),
            r.stats.recycles.to_string(),
            p(|p| p.blank_us),
            p(|p| p.call_p50_us),
            p(|p| p.call_p99_us),
            p(|p| p.blank_p50_us),
            p(|p| p.blank_p99_us),
            r.peak_rss_bytes.to_string(),
            (r.load_s * 1e3).to_string(),
            r.verdict_digest.clone(),
            r.state_digest.clone(),
            row.digests_agree.to_string(),
        ];
        out += &(cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(",") + "\n");
    }
    for r in &c.references {
        let mut cells = vec![String::new(); CSV_HEADER.split(',').count()];
        cells[0] = "reference".into();
        cells[1] = r.backend.to_string();
        cells[3] = "1".into();
        cells[4] = r.reference.to_string();
        cells[5] = r.tx_per_sec.map_or(String::new(), |t| t.to_string());
        out += &(cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(",") + "\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{ReferenceRow, rows, tests::report};
    use super::*;
    use crate::BackendKind::{Wasmi, Wasmtime};
    use crate::anchor::Reference;

    fn comparison() -> Comparison {
        let runs = vec![
            vec![report(Wasmtime, "every-tx:1", 400.0, "d"), report(Wasmtime, "every-tx:1", 380.0, "d")],
            vec![report(Wasmi, "every-tx:1", 100.0, "d")],
        ];
        let references = vec![
            ReferenceRow { backend: Wasmtime, reference: Reference::WarmFuel, tx_per_sec: Some(500.0) },
            ReferenceRow { backend: Wasmi, reference: Reference::WarmNoFuel, tx_per_sec: None },
        ];
        Comparison { rows: rows(runs), references, loads: Default::default(), repeat: 2, warmup: 10 }
    }

    #[test]
    fn text_columns_line_up_and_markdown_has_a_row_per_configuration() {
        let c = comparison();
        let text = throughput(&c).text();
        let lines: Vec<&str> = text.lines().collect();
        let at = |l: &str| l.find("every-tx:1").unwrap();
        assert_eq!(at(lines[1]), at(lines[2]), "{text}");
        assert!(lines[1].contains("380") && lines[1].contains("400"), "min and max beside the median: {text}");
        let md = markdown(&c, "t | x");
        assert!(md.starts_with("## t | x\n"));
        assert_eq!(md.matches("| wasmtime | every-tx:1 |").count(), 1, "{md}");
        assert!(md.contains("| wasmi | plain warm | — | — | — |"), "an unmeasured reference: {md}");
    }

    #[test]
    fn csv_has_one_record_per_row_and_reference_with_the_header_s_width() {
        let csv = csv(&comparison());
        let records: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
        let width = records[0].len();
        assert!(records.iter().all(|r| r.len() == width), "{csv}");
        assert_eq!(records.len(), 1 + 2 + 2);
        assert_eq!((records[1][0], records[1][1], records[1][6], records[1][7]), ("driver", "wasmtime", "380", "400"));
        assert_eq!((records[3][0], records[3][4], records[3][5]), ("reference", "plain warm+fuel", "500"));
        assert_eq!(field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
