//! `/metrics`: what each family means (its `# HELP` line), and the rendered
//! text in a stable order (docs/PROTOCOL.md 5.3).
//!
//! The Prometheus exporter renders families and series from hash maps, so
//! two scrapes list them in different orders; Prometheus does not mind, but a
//! person reading or diffing two scrapes does. [`sorted`] puts families in
//! name order and series in label order.

/// Every family the server records, with its `# HELP` text.
const FAMILIES: &[(&str, &str)] = &[
    (
        "switchboard_connections",
        "Open line and WebSocket connections, by transport.",
    ),
    (
        "switchboard_connections_total",
        "Line and WebSocket connections accepted since the start, by transport.",
    ),
    (
        "switchboard_requests_total",
        "Lines and WebSocket messages received from clients, by transport.",
    ),
    (
        "switchboard_events_sent_total",
        "Events written to clients, by transport.",
    ),
    (
        "switchboard_http_requests_total",
        "HTTP requests answered, by route, method and status.",
    ),
    (
        "switchboard_messages_total",
        "Room messages delivered by this node.",
    ),
    (
        "switchboard_deliveries_total",
        "Room messages times the local members they went to.",
    ),
    (
        "switchboard_slow_consumers_dropped_total",
        "Connections closed because they did not read their events in time.",
    ),
    (
        "switchboard_errors_total",
        "Errors sent to clients, by error code.",
    ),
    (
        "switchboard_refused_connections_total",
        "Connections refused at accept, by the limit they were over.",
    ),
    (
        "switchboard_rooms_evicted_total",
        "Memberless rooms forgotten, history and all, at --max-rooms (--memory only).",
    ),
    (
        "switchboard_redis_rtt_seconds",
        "Round-trip time of the message log's Redis calls, in seconds.",
    ),
    (
        "switchboard_redis_reconnects_total",
        "Times the Redis subscriber reconnected.",
    ),
];

/// Gives every family its `# HELP` line; call once the recorder is installed.
pub fn describe() {
    for &(name, help) in FAMILIES {
        if name.ends_with("_total") {
            metrics::describe_counter!(name, help);
        } else if name.ends_with("_seconds") {
            metrics::describe_histogram!(name, metrics::Unit::Seconds, help);
        } else {
            metrics::describe_gauge!(name, help);
        }
    }
}

/// The exporter's text with families in name order and, within each, the
/// series in label order (a summary's or histogram's lines for one label
/// set stay together, in their own order).
pub fn sorted(rendered: &str) -> String {
    let mut families: Vec<Family<'_>> = rendered
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(Family::parse)
        .collect();
    families.sort_by(|a, b| a.name.cmp(b.name));
    let mut out = String::with_capacity(rendered.len());
    for family in &mut families {
        family.series.sort_by_cached_key(|line| series_key(line));
        for line in family.comments.iter().chain(&family.series) {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// One family's lines: its `#` comments, then its series.
struct Family<'a> {
    /// The family's name, from its `# TYPE` line.
    name: &'a str,
    /// `# HELP` and `# TYPE`.
    comments: Vec<&'a str>,
    /// One line per sample.
    series: Vec<&'a str>,
}

impl<'a> Family<'a> {
    /// Splits one block of the exporter's text.
    fn parse(block: &'a str) -> Self {
        let (comments, series): (Vec<&str>, Vec<&str>) = block
            .lines()
            .filter(|line| !line.is_empty())
            .partition(|line| line.starts_with('#'));
        let name = comments
            .iter()
            .find_map(|line| line.strip_prefix("# TYPE "))
            .or_else(|| series.first().copied())
            .and_then(|rest| rest.split([' ', '{']).next())
            .unwrap_or("");
        Self {
            name,
            comments,
            series,
        }
    }
}

/// What a sample line sorts by: its labels without `le` and `quantile`, so
/// that the lines of one histogram or summary series keep their order.
fn series_key(line: &str) -> String {
    let series = line.rsplit_once(' ').map_or(line, |(series, _)| series);
    let Some(open) = series.find('{') else {
        return String::new();
    };
    let mut rest = series[open + 1..].strip_suffix('}').unwrap_or("");
    let mut kept = Vec::new();
    while let Some((name, after)) = rest.split_once("=\"") {
        let value_len = closing_quote(after);
        if !matches!(name, "le" | "quantile") {
            let pair_len = name.len() + 2 + value_len + 1;
            kept.push(rest.get(..pair_len).unwrap_or(rest));
        }
        let after_value = after.get(value_len + 1..).unwrap_or("");
        rest = after_value.strip_prefix(',').unwrap_or(after_value);
    }
    kept.join(",")
}

/// The length of a label value up to its closing quote (skipping `\"`).
fn closing_quote(value: &str) -> usize {
    let mut escaped = false;
    for (at, c) in value.char_indices() {
        match c {
            '"' if !escaped => return at,
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
    }
    value.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_series_come_in_name_order() {
        let rendered = "# TYPE b_total counter\nb_total{x=\"2\"} 1\nb_total{x=\"1\"} 5\n\n\
                        # HELP a_seconds Time.\n# TYPE a_seconds summary\n\
                        a_seconds{quantile=\"0\"} 1\na_seconds{quantile=\"1\"} 2\na_seconds_sum 3\na_seconds_count 2\n\n";
        assert_eq!(
            sorted(rendered),
            "# HELP a_seconds Time.\n# TYPE a_seconds summary\n\
             a_seconds{quantile=\"0\"} 1\na_seconds{quantile=\"1\"} 2\na_seconds_sum 3\na_seconds_count 2\n\n\
             # TYPE b_total counter\nb_total{x=\"1\"} 5\nb_total{x=\"2\"} 1\n\n"
        );
    }

    #[test]
    fn a_route_with_braces_sorts_by_its_whole_label_set() {
        let line = "h_total{route=\"/api/rooms/{room}/messages\",status=\"201\"} 4";
        assert_eq!(
            series_key(line),
            "route=\"/api/rooms/{room}/messages\",status=\"201\""
        );
        assert_eq!(series_key("s{a=\"x\",quantile=\"0.5\"} 1"), "a=\"x\"");
        assert_eq!(series_key("s_sum{a=\"x\"} 1"), "a=\"x\"");
        assert_eq!(
            series_key("s{a=\"say \\\"hi\\\"\",le=\"1\"} 1"),
            "a=\"say \\\"hi\\\"\""
        );
        assert_eq!(series_key("s{quantile=\"1\"} 2"), series_key("s_count 1"));
    }

    #[test]
    fn every_family_is_described_once() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
    }
}
