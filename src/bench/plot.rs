//! `--plot FILE.svg`: the latency distribution as a percentile curve, the
//! way HdrHistogram results are usually drawn (latency against percentile, the
//! percentile axis stretched toward the tail: 0, 90, 99, 99.9, 99.99 %).
//!
//! Written by hand: it is one polyline and a few labels, and plotting crates
//! bring a font stack to lay text out.

use std::fmt::Write;

use hdrhistogram::Histogram;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 450.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 50.0;

/// How far the percentile axis reaches: 1 - 10^-TAIL_NINES (99.99 %).
const TAIL_NINES: f64 = 4.0;

/// An SVG document plotting `histogram` (microseconds) with `title` on top.
pub fn latency_svg(histogram: &Histogram<u64>, title: &str) -> String {
    let max_us = histogram.max().max(1) as f64;
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let x_of = |quantile: f64| MARGIN_LEFT + plot_w * nines(quantile) / TAIL_NINES;
    let y_of = |us: f64| MARGIN_TOP + plot_h * (1.0 - us / max_us);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"##,
        WIDTH / 2.0,
        escape(title)
    );
    for (label, quantile) in [
        ("0%", 0.0),
        ("90%", 0.9),
        ("99%", 0.99),
        ("99.9%", 0.999),
        ("99.99%", 0.9999),
    ] {
        let x = x_of(quantile);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{MARGIN_TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            MARGIN_TOP + plot_h,
            MARGIN_TOP + plot_h + 18.0
        );
    }
    for step in 0..=4 {
        let us = max_us * f64::from(step) / 4.0;
        let y = y_of(us);
        let _ = write!(
            svg,
            r##"<line x1="{MARGIN_LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            MARGIN_LEFT + plot_w,
            MARGIN_LEFT - 6.0,
            y + 4.0,
            format_us(us)
        );
    }
    let points: Vec<String> = (0..=400)
        .map(|i| {
            let quantile = 1.0 - 10f64.powf(-TAIL_NINES * f64::from(i) / 400.0);
            let us = histogram.value_at_quantile(quantile) as f64;
            format!("{:.1},{:.1}", x_of(quantile), y_of(us))
        })
        .collect();
    let _ = write!(
        svg,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/><text x="{}" y="{}" text-anchor="middle">percentile</text></svg>"##,
        points.join(" "),
        MARGIN_LEFT + plot_w / 2.0,
        HEIGHT - 8.0
    );
    svg.push('\n');
    svg
}

/// How many nines `quantile` has: 0.9 → 1, 0.99 → 2; capped at the axis end.
fn nines(quantile: f64) -> f64 {
    (-(1.0 - quantile).max(10f64.powf(-TAIL_NINES)).log10()).clamp(0.0, TAIL_NINES)
}

/// An axis label for a latency.
fn format_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// Escapes text for an SVG element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_axis_counts_nines() {
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0), TAIL_NINES);
        assert_eq!(nines(0.0), 0.0);
    }

    #[test]
    fn draws_a_curve_and_escapes_the_title() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        histogram.record(120).unwrap();
        histogram.record(4_000).unwrap();
        let svg = latency_svg(&histogram, "a <b> & c");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<polyline") && svg.contains("a &lt;b&gt; &amp; c"));
    }
}
