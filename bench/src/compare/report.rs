//! The report of a transport comparison: each figure measured in rounds
//! (the stacks taking turns within a round), its median over the rounds,
//! and a final Markdown table with the ratios of Switchyard to the raw
//! baseline, to rust-libp2p and to a row's second baseline (if it has one)
//! against the targets, and what each stack ran (ciphers, windows, socket
//! buffers) beside the figures; then one `RESULT name=value unit` line per
//! figure for `grep '^RESULT'`.

use super::{Throughput, percentile};

/// The figures of one row, for its check; `None` where a stack did not
/// run.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// Switchyard's figure.
    pub switchyard: Option<f64>,
    /// The raw baseline's figure.
    pub raw: Option<f64>,
    /// rust-libp2p's figure.
    pub libp2p: Option<f64>,
    /// The second baseline's figure (e.g. a bare handshake), if the row has
    /// one.
    pub second: Option<f64>,
}

/// Whether a row's target is met; `None` when a figure it needs is
/// missing (write it with `?`: `|f| Some(f.switchyard? <= 0.5 * f.libp2p?)`).
pub type Check = fn(&Figures) -> Option<bool>;

/// One row of the final table; a figure is `None` when its stack did not
/// run.
pub struct Row {
    /// What the row measures, e.g. `(1) bulk 64 KiB`.
    pub figure: String,
    /// The unit of the figures.
    pub unit: &'static str,
    /// Switchyard's figure.
    pub switchyard: Option<f64>,
    /// The raw baseline's figure.
    pub raw: Option<f64>,
    /// rust-libp2p's figure.
    pub libp2p: Option<f64>,
    /// A second baseline of this row only, by name (e.g. `bare snow XX`),
    /// and its figure.
    pub second: Option<(String, Option<f64>)>,
    /// What each stack ran: ciphers, windows, buffers (the last column).
    pub stacks: String,
    /// The target, in words (empty when there is none).
    pub target: &'static str,
    /// Whether the target is met.
    pub check: Option<Check>,
}

impl Row {
    /// The row's figures, for its check.
    pub fn figures(&self) -> Figures {
        Figures {
            switchyard: self.switchyard,
            raw: self.raw,
            libp2p: self.libp2p,
            second: self.second.as_ref().and_then(|(_, v)| *v),
        }
    }
}

/// The rows of the final table and the `RESULT` lines, collected as the
/// measurements run.
#[derive(Default)]
pub struct Report {
    /// The table's rows.
    pub rows: Vec<Row>,
    /// The `RESULT` lines.
    pub results: Vec<String>,
}

impl Report {
    /// Adds `RESULT name=value unit`, if the figure was measured.
    pub fn result(&mut self, name: &str, value: Option<f64>, unit: &str) {
        if let Some(value) = value {
            self.results
                .push(format!("RESULT {name}={value:.1} {unit}"));
        }
    }

    /// Prints the table, its baseline column headed `raw_name` (e.g.
    /// `raw TCP`), then the `RESULT` lines and the load average at the
    /// end of the run.
    pub fn print(&self, raw_name: &str) {
        println!();
        println!(
            "| figure | unit | switchyard | {raw_name} | libp2p | second baseline | switchyard/raw | switchyard/libp2p | switchyard/second | target | met | ciphers, windows, buffers |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        let value = |v: Option<f64>| v.map_or_else(|| "–".to_string(), group);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}×", a / b),
            _ => "–".to_string(),
        };
        for row in &self.rows {
            let figures = row.figures();
            let met = match row.check.and_then(|check| check(&figures)) {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            let second = match &row.second {
                Some((name, v)) => format!("{name}: {}", value(*v)),
                None => "–".to_string(),
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.figure,
                row.unit,
                value(row.switchyard),
                value(row.raw),
                value(row.libp2p),
                second,
                ratio(row.switchyard, row.raw),
                ratio(row.switchyard, row.libp2p),
                ratio(row.switchyard, figures.second),
                row.target,
                met,
                row.stacks
            );
        }
        println!();
        for line in &self.results {
            println!("{line}");
        }
        println!("at the end: {}", crate::machine::load());
    }
}

/// One figure of one stack, one value per round.
#[derive(Default)]
pub struct Series {
    /// The stack (and variant) measured.
    pub name: String,
    /// One value per round.
    pub values: Vec<f64>,
}

impl Series {
    /// An empty series.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            values: Vec::new(),
        }
    }

    /// The median over the rounds (the mean of the middle two for an even
    /// count), if the stack ran.
    pub fn median(&self) -> Option<f64> {
        let mut v = self.values.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }

    /// Prints `name: median (min–max; every round)`.
    pub fn summary(&self, unit: &str) {
        let Some(median) = self.median() else {
            return;
        };
        let min = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self
            .values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let rounds: Vec<String> = self.values.iter().map(|v| group(*v)).collect();
        println!(
            "  {:<28} median {:>10} {unit}  (range {} – {}; rounds: {})",
            self.name,
            group(median),
            group(min),
            group(max),
            rounds.join(", ")
        );
    }
}

/// Two percentiles of one stack's samples, one value per round each.
pub struct Percentiles {
    /// The lower percentile (e.g. p50), in µs.
    pub lo: Series,
    /// The higher percentile (e.g. p99), in µs.
    pub hi: Series,
}

impl Percentiles {
    /// Empty series for the stack `name`.
    pub fn new(name: &str) -> Self {
        Self {
            lo: Series::new(name),
            hi: Series::new(name),
        }
    }

    /// Adds one round's samples (ns); prints the round's percentiles (µs).
    pub fn add(&mut self, round: usize, mut samples: Vec<u64>, (lo, hi): (f64, f64)) {
        let (a, b) = (
            us(percentile(&mut samples, lo)),
            us(percentile(&mut samples, hi)),
        );
        println!(
            "  round {round}  {:<28} p{lo:.0} {a:>8.1} µs  p{hi:.0} {b:>8.1} µs  ({} samples)",
            self.lo.name,
            samples.len()
        );
        self.lo.values.push(a);
        self.hi.values.push(b);
    }
}

/// Prints one round of a one-way run.
pub fn show(round: usize, name: &str, t: &Throughput) {
    println!(
        "  round {round}  {name:<28} {:>10.0} msg/s {:>9.1} MB/s  ({} messages in {:.2} s)",
        t.messages_per_sec(),
        t.mb_per_sec(),
        t.tally.messages,
        t.elapsed.as_secs_f64()
    );
}

/// Nanoseconds to microseconds.
pub fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// `1234567.8` → `"1,234,568"`; values under 100 keep one decimal.
pub fn group(value: f64) -> String {
    if value < 100.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
