//! `peer compare --chart FILE.svg`: a grouped bar chart of throughput, one
//! group per policy, one bar per backend, on a log scale (`fresh` is tens
//! of times slower than the rest, so a linear axis would flatten it). Plain
//! SVG written by hand: no plotting dependency for one picture.

use std::fmt::Write;

/// One bar: group (policy), series (backend), value (tx/s).
pub struct Bar<'a> {
    /// The group on the x axis.
    pub group: &'a str,
    /// The series (colour).
    pub series: &'a str,
    /// The bar's value, > 0.
    pub value: f64,
}

const COLOURS: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948"];

/// The chart as an SVG document.
pub fn grouped_bars(title: &str, unit: &str, bars: &[Bar<'_>]) -> String {
    // Names come from the user (an executor's file name): escaped, so the
    // SVG stays well-formed XML whatever they hold.
    let title = &escape(title);
    let unit = &escape(unit);
    let escaped: Vec<(String, String)> = bars.iter().map(|b| (escape(b.group), escape(b.series))).collect();
    let bars: Vec<Bar<'_>> = bars
        .iter()
        .zip(&escaped)
        .map(|(b, (group, series))| Bar { group: group.as_str(), series: series.as_str(), value: b.value })
        .collect();
    let bars = &bars[..];
    let mut groups: Vec<&str> = Vec::new();
    let mut series: Vec<&str> = Vec::new();
    for b in bars {
        if !groups.contains(&b.group) {
            groups.push(b.group);
        }
        if !series.contains(&b.series) {
            series.push(b.series);
        }
    }
    let (width, height, left, top, bottom) = (200.0 + 170.0 * groups.len() as f64, 420.0, 80.0, 50.0, 60.0);
    let plot_h = height - top - bottom;
    let max = bars.iter().map(|b| b.value).fold(1.0, f64::max);
    let min = bars.iter().map(|b| b.value).filter(|v| *v > 0.0).fold(max, f64::min);
    let (lo, hi) = (min.log10().floor(), max.log10().ceil().max(min.log10().floor() + 1.0));
    let y = |v: f64| top + plot_h * (1.0 - (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo));
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(svg, r#"<text x="{}" y="24" font-size="16" text-anchor="middle">{title}</text>"#, width / 2.0);
    for e in (lo as i32)..=(hi as i32) {
        let yy = y(10f64.powi(e));
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{yy}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">1e{e}</text>"##,
            width - 120.0,
            left - 6.0,
            yy + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{}" transform="rotate(-90 18 {})" text-anchor="middle">{unit} (log scale)</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    let group_w = (width - left - 120.0) / groups.len().max(1) as f64;
    let bar_w = (group_w * 0.8) / series.len().max(1) as f64;
    for (g, group) in groups.iter().enumerate() {
        let x0 = left + g as f64 * group_w + group_w * 0.1;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{group}</text>"#,
            x0 + group_w * 0.4,
            height - bottom + 20.0
        );
        for (s, name) in series.iter().enumerate() {
            let Some(bar) = bars.iter().find(|b| b.group == *group && b.series == *name) else { continue };
            let (x, top_y) = (x0 + s as f64 * bar_w, y(bar.value));
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{top_y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{name} {group}: {:.0} {unit}</title></rect>"#,
                bar_w * 0.92,
                top + plot_h - top_y,
                COLOURS[s % COLOURS.len()],
                bar.value
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"#,
                x + bar_w * 0.46,
                top_y - 3.0,
                short(bar.value)
            );
        }
    }
    for (s, name) in series.iter().enumerate() {
        let yy = top + 20.0 * s as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{yy}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{name}</text>"#,
            width - 105.0,
            COLOURS[s % COLOURS.len()],
            width - 88.0,
            yy + 10.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A bar's label: two or three significant digits (1.3k, 20k, 783k, 1.2M).
fn short(v: f64) -> String {
    let (scaled, unit) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if scaled < 10.0 && !unit.is_empty() { format!("{scaled:.1}{unit}") } else { format!("{scaled:.0}{unit}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rect_per_bar_and_a_legend_entry_per_series() {
        let bars = [
            Bar { group: "fresh", series: "a", value: 2e4 },
            Bar { group: "fresh", series: "b", value: 3e4 },
            Bar { group: "until-crash", series: "a", value: 5e5 },
            Bar { group: "until-crash", series: "b", value: 4e5 },
        ];
        let svg = grouped_bars("t", "tx/s", &bars);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // 4 bars + 2 legend swatches + the background.
        assert_eq!(svg.matches("<rect").count(), 4 + 2 + 1);
        assert!(svg.contains("500k") && svg.contains("20k"));
        assert_eq!(
            (short(1330.0), short(1_225_989.0), short(993.0), short(783_050.0)),
            ("1.3k".into(), "1.2M".into(), "993".into(), "783k".into())
        );
    }
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
mod escape_tests {
    #[test]
    fn names_from_users_cannot_break_the_xml() {
        let svg =
            super::grouped_bars("a&b<c>.wat \"q\"", "tx/s", &[super::Bar { group: "<g>", series: "s&", value: 3.0 }]);
        assert!(svg.contains("a&amp;b&lt;c&gt;.wat &quot;q&quot;"), "{svg}");
        assert!(!svg.contains("a&b") && !svg.contains("<g>") && !svg.contains("s&<"), "{svg}");
    }
}
