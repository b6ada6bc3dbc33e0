//! The Grafana dashboard in `contrib/grafana/switchyard.json` names only
//! series a running node serves: every metric of every panel's PromQL (and
//! of the template variables' queries) is declared in the `/metrics` of a
//! node running every reactor, before any traffic.

mod common;

use common::{Proc, config};
use serde_json::Value;

const DASHBOARD: &str = include_str!("../contrib/grafana/switchyard.json");

/// PromQL words that are neither functions (those are followed by `(`)
/// nor metric names.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

/// PromQL's aggregation operators, which may be followed by `by (…)` or
/// `without (…)` before their `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Removes what a PromQL expression holds between `open` and `close`
/// (label matchers, range selectors), and string literals with it.
fn strip_between(expr: &str, open: char, close: char) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for c in expr.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            c if c == open => depth += 1,
            c if c == close && depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The metric names a PromQL expression selects.
fn metric_names(expr: &str) -> Vec<String> {
    let expr = strip_between(&strip_between(expr, '{', '}'), '[', ']');
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    // The label list of `by (…)`, `without (…)`, `on (…)`, … follows.
    let mut labels_next = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' || c.is_ascii_digit() || c == '.' {
            // A variable or a number (with its suffix letters): skip it.
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            if c == '(' && labels_next {
                // Skip the label list.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                labels_next = false;
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut next = i;
        while next < chars.len() && chars[next] == ' ' {
            next += 1;
        }
        let is_call = chars.get(next) == Some(&'(');
        let lower = word.to_ascii_lowercase();
        if KEYWORDS.contains(&lower.as_str()) {
            labels_next = matches!(
                lower.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            );
        } else if !is_call && !AGGREGATIONS.contains(&lower.as_str()) {
            names.push(word);
        }
    }
    names
}

/// Whether `/metrics` text holds `name`: a sample of that name, or a
/// declared family (`# TYPE family …`) whose samples are `name`, the
/// family itself or it with a suffix the exposition format adds.
fn served(metrics: &str, name: &str) -> bool {
    let families = metrics.lines().filter_map(|l| {
        let mut words = l.strip_prefix("# TYPE ")?.split_whitespace();
        words.next()
    });
    let suffixes = [
        "", "_total", "_bucket", "_sum", "_count", "_created", "_info",
    ];
    let declared = families
        .into_iter()
        .any(|f| suffixes.iter().any(|s| format!("{f}{s}") == name));
    declared
        || metrics.lines().filter(|l| !l.starts_with('#')).any(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
}

/// Every PromQL expression of the dashboard: its panels' targets (rows'
/// nested panels too) and its template variables' queries.
fn expressions(dashboard: &Value) -> Vec<String> {
    fn panels(list: &Value, out: &mut Vec<String>) {
        for panel in list.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(expr.to_string());
                }
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = match &variable["query"] {
            Value::String(q) => q.clone(),
            Value::Object(o) => o
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            _ => String::new(),
        };
        // `label_values(metric, label)`: the metric is the first argument.
        if let Some(args) = query.strip_prefix("label_values(") {
            out.push(args.split(',').next().unwrap_or("").to_string());
        } else if variable["type"] == "query" {
            out.push(query);
        }
    }
    out
}

#[test]
fn the_promql_reader_finds_the_metric_names() {
    assert_eq!(
        metric_names(
            r#"sum by (channel, reason) (rate(foo_total{instance=~"$instance", x="a}b"}[$__rate_interval])) > 0"#
        ),
        ["foo_total"]
    );
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) / on (job) group_left y"
        ),
        ["x_bucket", "y"]
    );
    assert_eq!(
        metric_names("-sum without (peer) (a) + b offset 5m and bool c"),
        ["a", "b", "c"]
    );
    let metrics = "# HELP f_x F.\n# TYPE f_x counter\nf_x_total 1\ng{a=\"b\"} 2\n";
    assert!(served(metrics, "f_x_total"));
    assert!(served(metrics, "f_x"));
    assert!(served(metrics, "g"));
    assert!(!served(metrics, "f"));
    assert!(!served(metrics, "f_x_bogus"));
}

#[test]
fn every_series_of_the_dashboard_is_served_by_a_running_node() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let exprs = expressions(&dashboard);
    assert!(exprs.len() >= 20, "too few queries: {exprs:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    // Every reactor: gossip and peer exchange run by default, the ring
    // when enabled.
    let node = Proc::start(&config(
        &dir.path().join("n"),
        &[],
        "\n[reactors.ring]\nenabled = true\ngateway = true\n",
    ));
    let metrics = node.get_text("/metrics");
    let mut named = Vec::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr:?}");
        for name in names {
            assert!(
                served(&metrics, &name),
                "the dashboard's {name} (in {expr:?}) is not in /metrics:\n{metrics}"
            );
            named.push(name);
        }
    }
    // What an operator looks at first is on it.
    for wanted in [
        "switchyard_p2p_peers",
        "switchyard_p2p_connections",
        "switchyard_p2p_handshakes_total",
        "switchyard_p2p_handshakes_refused_total",
        "switchyard_p2p_transport_bytes_sent_total",
        "switchyard_p2p_transport_bytes_received_total",
        "switchyard_p2p_messages_dropped_total",
        "switchyard_p2p_send_queue_depth",
        "switchyard_gossip_delivered_total",
        "switchyard_ring_neighbors",
    ] {
        assert!(named.iter().any(|n| n == wanted), "no panel shows {wanted}");
    }
    assert!(node.stop());
}
