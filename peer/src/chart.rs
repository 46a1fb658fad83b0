//! `peer compare --chart FILE.svg`: throughput as dots on a log axis, one
//! column per policy, one colour per backend, whiskers from the slowest to
//! the fastest repetition. Dots, not bars: a bar's length on a log axis
//! depends on where the axis starts, so a 30× ratio could look like 4×;
//! on a log axis the *distance* between two dots is their ratio, whatever
//! the range. Plain SVG written by hand: no plotting dependency for one
//! picture.

use std::fmt::Write;

/// One dot: column (policy), series (backend, the colour), value (tx/s)
/// and its range.
pub struct Point<'a> {
    /// The column on the x axis.
    pub group: &'a str,
    /// The series (colour, legend).
    pub series: &'a str,
    /// The median, > 0.
    pub value: f64,
    /// The slowest and fastest repetition (the whisker), if measured.
    pub range: Option<(f64, f64)>,
    /// A reference, not a measured configuration: drawn hollow.
    pub reference: bool,
}

const COLOURS: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948"];

/// The chart as an SVG document; `y_title` names the value axis (a log
/// scale), `x_title` the columns.
pub fn dot_plot(title: &str, x_title: &str, y_title: &str, points: &[Point<'_>]) -> String {
    // Names come from the user (an executor's file name): escaped, so the
    // SVG stays well-formed XML whatever they hold.
    let (title, x_title, y_title) = (escape(title), escape(x_title), escape(y_title));
    let mut groups: Vec<&str> = Vec::new();
    let mut series: Vec<&str> = Vec::new();
    for p in points {
        if !groups.contains(&p.group) {
            groups.push(p.group);
        }
        if !series.contains(&p.series) {
            series.push(p.series);
        }
    }
    let values =
        || points.iter().flat_map(|p| [p.value, p.range.map_or(p.value, |r| r.0), p.range.map_or(p.value, |r| r.1)]);
    let max = values().fold(f64::MIN_POSITIVE, f64::max);
    let min = values().filter(|v| *v > 0.0).fold(max, f64::min);
    // The axis spans the 1-2-5 gridlines just around the data.
    let (lo, hi) = (nice(min, f64::floor).log10(), nice(max, f64::ceil).log10());
    let hi = if hi - lo < 0.3 { lo + 1.0 } else { hi };
    let (left, right, top, bottom) = (90.0, 130.0, 50.0, 95.0);
    let column = 130.0;
    let width = left + right + column * groups.len().max(1) as f64;
    let height = 460.0;
    let plot_h = height - top - bottom;
    let y = |v: f64| top + plot_h * (1.0 - (v.max(f64::MIN_POSITIVE).log10() - lo) / (hi - lo));
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(svg, r#"<text x="{}" y="24" font-size="15" text-anchor="middle">{title}</text>"#, width / 2.0);
    // Gridlines at 1, 2 and 5 of every decade; labels at the decades.
    for e in (lo.floor() as i32)..=(hi.ceil() as i32) {
        for (m, major) in [(1.0, true), (2.0, false), (5.0, false)] {
            let v = m * 10f64.powi(e);
            if v.log10() > hi + 1e-9 || v.log10() < lo - 1e-9 {
                continue;
            }
            let yy = y(v);
            let stroke = if major { "#bbb" } else { "#eee" };
            let _ = writeln!(
                svg,
                r#"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="{stroke}"/>"#,
                width - right
            );
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}" text-anchor="end"{}>{}</text>"#,
                left - 6.0,
                yy + 4.0,
                if major { "" } else { r##" fill="#888" font-size="10""## },
                short(v)
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="20" y="{0}" transform="rotate(-90 20 {0})" text-anchor="middle">{y_title} (log scale)</text>"#,
        top + plot_h / 2.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{x_title}</text>"#,
        left + (width - left - right) / 2.0,
        height - 18.0
    );
    let _ = writeln!(svg, r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{}" stroke="#444"/>"##, top + plot_h);
    for (g, group) in groups.iter().enumerate() {
        let x0 = left + g as f64 * column;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            x0 + column / 2.0,
            top + plot_h + 18.0,
            escape(group)
        );
        let step = column / (series.len() + 1) as f64;
        for (s, name) in series.iter().enumerate() {
            let Some(p) = points.iter().find(|p| p.group == *group && p.series == *name) else { continue };
            let (x, colour) = (x0 + step * (s + 1) as f64, COLOURS[s % COLOURS.len()]);
            if let Some((low, high)) = p.range {
                let _ = writeln!(
                    svg,
                    r#"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="1.5"/>"#,
                    y(low),
                    y(high)
                );
                for v in [low, high] {
                    let _ = writeln!(
                        svg,
                        r#"<line x1="{:.1}" x2="{:.1}" y1="{2:.1}" y2="{2:.1}" stroke="{colour}"/>"#,
                        x - 4.0,
                        x + 4.0,
                        y(v)
                    );
                }
            }
            let fill = if p.reference { "white" } else { colour };
            let range = p.range.map_or(String::new(), |(l, h)| format!(", {:.0}–{:.0}", l, h));
            let _ = writeln!(
                svg,
                r#"<circle cx="{x:.1}" cy="{:.1}" r="5" fill="{fill}" stroke="{colour}" stroke-width="2"><title>{} {}: {:.0}{range} {y_title}</title></circle>"#,
                y(p.value),
                escape(name),
                escape(group),
                p.value
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="9">{}</text>"#,
                x + 6.0,
                y(p.value) + 3.0,
                short(p.value)
            );
        }
    }
    let legend_x = width - right + 15.0;
    for (s, name) in series.iter().enumerate() {
        let yy = top + 20.0 * s as f64;
        let colour = COLOURS[s % COLOURS.len()];
        let _ = writeln!(
            svg,
            r#"<circle cx="{}" cy="{}" r="5" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            legend_x + 5.0,
            yy + 6.0,
            legend_x + 15.0,
            yy + 10.0,
            escape(name)
        );
    }
    let notes_y = top + 20.0 * series.len() as f64 + 10.0;
    if points.iter().any(|p| p.reference) {
        let _ = writeln!(
            svg,
            r##"<circle cx="{}" cy="{}" r="5" fill="white" stroke="#444" stroke-width="2"/><text x="{}" y="{}">reference</text>"##,
            legend_x + 5.0,
            notes_y + 6.0,
            legend_x + 15.0,
            notes_y + 10.0
        );
    }
    if points.iter().any(|p| p.range.is_some()) {
        let _ = writeln!(svg, r#"<text x="{legend_x}" y="{}" font-size="10">whiskers: min–max</text>"#, notes_y + 30.0);
    }
    svg.push_str("</svg>\n");
    svg
}

/// The 1, 2 or 5 × 10^k next to `v`, rounding by `round` (`floor` or
/// `ceil`).
fn nice(v: f64, round: fn(f64) -> f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    let steps = [1.0, 2.0, 5.0, 10.0];
    let m = v / decade;
    let pick = match round(0.5) == 0.0 {
        true => steps.iter().rev().find(|s| **s <= m * (1.0 + 1e-9)),
        false => steps.iter().find(|s| **s >= m * (1.0 - 1e-9)),
    };
    decade * pick.copied().unwrap_or(1.0)
}

/// A value's label: two or three significant digits (1.3k, 20k, 783k, 1.2M).
pub fn short(v: f64) -> String {
    let (scaled, unit) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if scaled < 10.0 && !unit.is_empty() { format!("{scaled:.1}{unit}") } else { format!("{scaled:.0}{unit}") }
}

/// `text` with XML's special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point<'a>(group: &'a str, series: &'a str, value: f64) -> Point<'a> {
        Point { group, series, value, range: Some((value * 0.9, value * 1.1)), reference: false }
    }

    /// The y of each dot's `cy`, in document order.
    fn dots(svg: &str) -> Vec<f64> {
        svg.split("<circle cx=").skip(1).map(|c| c.split('"').nth(3).unwrap().parse().unwrap()).collect()
    }

    #[test]
    fn one_dot_per_point_a_whisker_per_range_and_a_legend_entry_per_series() {
        let points = [
            point("fresh", "a", 2e4),
            point("fresh", "b", 3e4),
            point("until-crash", "a", 5e5),
            Point { reference: true, range: None, ..point("until-crash", "b", 4e5) },
        ];
        let svg = dot_plot("t", "policy", "tx/s", &points);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // 4 dots + 2 legend entries + the reference's legend entry.
        assert_eq!(svg.matches("<circle").count(), 4 + 2 + 1);
        assert_eq!(svg.matches(r#"stroke-width="1.5""#).count(), 3, "a whisker per measured range");
        assert!(svg.contains("500k") && svg.contains("20k") && svg.contains("(log scale)"));
        assert!(svg.contains(">policy</text>") && svg.contains("whiskers: min–max"));
        assert_eq!(
            (short(1330.0), short(1_225_989.0), short(993.0), short(783_050.0)),
            ("1.3k".into(), "1.2M".into(), "993".into(), "783k".into())
        );
    }

    #[test]
    fn equal_ratios_are_equal_distances_whatever_the_range() {
        // 30× apart, and 2× apart: the distances must be in the ratio
        // log(30) : log(2), on any axis range.
        for scale in [1.0, 1e3] {
            let points = [
                point("x", "a", 1e3 * scale),
                point("x", "b", 3e4 * scale),
                point("y", "a", 1e4 * scale),
                point("y", "b", 2e4 * scale),
            ];
            let y = dots(&dot_plot("t", "p", "tx/s", &points));
            let (big, small) = (y[0] - y[1], y[2] - y[3]);
            let want = 30f64.log10() / 2f64.log10();
            assert!(((big / small) - want).abs() < 0.01, "{big} / {small} should be {want}");
        }
    }

    #[test]
    fn the_axis_spans_the_gridlines_around_the_data() {
        assert_eq!((nice(1.15e6, f64::ceil), nice(1.15e6, f64::floor)), (2e6, 1e6));
        assert_eq!((nice(12_000.0, f64::floor), nice(40_000.0, f64::ceil)), (1e4, 5e4));
        assert_eq!((nice(1000.0, f64::floor), nice(1000.0, f64::ceil)), (1000.0, 1000.0));
    }

    #[test]
    fn names_from_users_cannot_break_the_xml() {
        let svg = dot_plot("a&b<c>.wat \"q\"", "p", "tx/s", &[point("<g>", "s&", 3.0)]);
        assert!(svg.contains("a&amp;b&lt;c&gt;.wat &quot;q&quot;"), "{svg}");
        assert!(!svg.contains("a&b") && !svg.contains("<g>") && !svg.contains("s&<"), "{svg}");
    }
}
