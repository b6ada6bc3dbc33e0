//! Why a configuration is refused, where, and the small checks that say so.
//!
//! A parse error (bad TOML, an unknown field, a wrongly typed value) carries
//! the dotted path [`serde_path_to_error`] tracked while deserializing, and
//! the parser's message, which shows the line and column. A validation
//! error names the dotted path of the field that is out of range, and
//! [`Config::from_toml_str`](super::Config::from_toml_str) adds the
//! position of that field in the text when the text sets it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

/// The longest duration accepted anywhere. No timer of the node needs
/// more, and a cap keeps `Instant` arithmetic far from overflow and turns
/// a typo such as `"10000d"` into an error.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(31_557_600); // 1 year

/// Why a configuration could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not TOML, has an unknown field, or a value of the wrong
    /// type. The message is the TOML parser's: it shows the line, the
    /// column and the text there.
    #[error("cannot parse {}{}: {message}", describe(path), at_field(field))]
    Parse {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// The dotted path of the key or value the parser stopped at
        /// (`peers.bootstrap[1]`); `None` for a TOML syntax error.
        field: Option<String>,
        /// The parser's explanation.
        message: String,
    },
    /// A value parsed but is out of range or contradicts another field.
    #[error("{}invalid value for {field}: {reason}", prefix(path, position))]
    Invalid {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// Where the text sets `field` (or the nearest enclosing table it
        /// writes), when the configuration came from text.
        position: Option<Position>,
        /// The dotted path of the field, e.g. `peers.max_outbound` or
        /// `peers.bootstrap[1]`.
        field: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The configuration cannot be written as TOML: a path that is not
    /// UTF-8, or a number set in code beyond TOML's 64-bit integers.
    #[error("cannot write the configuration as TOML: {0}")]
    Render(String),
}

/// A place in a configuration text: 1-based line and column, the column
/// counted in characters, as the TOML parser counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` of `text`.
    fn of(text: &str, offset: usize) -> Position {
        let before = text.get(..offset).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

fn describe(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => format!("config file {}", path.display()),
        None => "config".into(),
    }
}

fn at_field(field: &Option<String>) -> String {
    match field {
        Some(field) => format!(" (field {field})"),
        None => String::new(),
    }
}

fn prefix(path: &Option<PathBuf>, position: &Option<Position>) -> String {
    match (path, position) {
        (Some(path), Some(at)) => format!("config file {}, {at}: ", path.display()),
        (Some(path), None) => format!("config file {}: ", path.display()),
        (None, Some(at)) => format!("config {at}: "),
        (None, None) => String::new(),
    }
}

impl ConfigError {
    /// The dotted path of the offending field (`peers.max_outbound`,
    /// `peers.bootstrap[1]`), when the error has one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::Parse { field, .. } => field.as_deref(),
            ConfigError::Io { .. } | ConfigError::Render(_) => None,
        }
    }

    /// Where the text sets the offending field, for a validation error of
    /// a configuration parsed from text.
    pub fn position(&self) -> Option<Position> {
        match self {
            ConfigError::Invalid { position, .. } => *position,
            _ => None,
        }
    }

    /// A parse error: the parser's message, and the dotted path
    /// `serde_path_to_error` tracked (`None`, or `"."` for the root, when
    /// it stopped before any field, as a syntax error does).
    pub(super) fn parse(field: Option<String>, error: toml::de::Error) -> ConfigError {
        ConfigError::Parse {
            path: None,
            field: field.filter(|f| f != "."),
            message: error.to_string(),
        }
    }

    /// Adds where `text` sets the field of a validation error.
    pub(super) fn located_in(self, text: &str) -> Self {
        match self {
            ConfigError::Invalid {
                path,
                position: None,
                field,
                reason,
            } => ConfigError::Invalid {
                path,
                position: locate(text, &field),
                field,
                reason,
            },
            other => other,
        }
    }

    pub(super) fn in_file(self, file: &Path) -> Self {
        let file = Some(file.to_path_buf());
        match self {
            ConfigError::Parse { field, message, .. } => ConfigError::Parse {
                path: file,
                field,
                message,
            },
            ConfigError::Invalid {
                position,
                field,
                reason,
                ..
            } => ConfigError::Invalid {
                path: file,
                position,
                field,
                reason,
            },
            other => other,
        }
    }
}

/// Where `text` sets the dotted `field` (`reactors.gossip.rooms[1].name`):
/// the start of its key, or of the element for an index. A field the text
/// leaves out (a default in conflict with another field) gets the
/// position of the deepest enclosing table the text names, if any.
fn locate(text: &str, field: &str) -> Option<Position> {
    let document = DeTable::parse(text).ok()?;
    let mut table = document.get_ref();
    let mut found = None;
    'path: for part in field.split('.') {
        let (name, mut indices) = match part.split_once('[') {
            Some((name, rest)) => (name, Some(rest)),
            None => (part, None),
        };
        let Some((key, mut value)) = table.iter().find(|(key, _)| key.get_ref() == name) else {
            break;
        };
        found = Some(key.span().start);
        // `rooms[1]`: descend into element 1 (`1]` is what follows `[`).
        while let Some(rest) = indices {
            let (index, after) = rest.split_once(']').unwrap_or((rest, ""));
            let DeValue::Array(items) = value.get_ref() else {
                break 'path;
            };
            let Some(item) = index.parse::<usize>().ok().and_then(|i| items.get(i)) else {
                break 'path;
            };
            found = Some(item.span().start);
            value = item;
            indices = after.strip_prefix('[');
        }
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    found.map(|offset| Position::of(text, offset))
}

/// A validation error for `field`.
pub(super) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: None,
        position: None,
        field: field.into(),
        reason: reason.into(),
    }
}

pub(super) fn at_least(field: &str, value: usize, min: usize) -> Result<(), ConfigError> {
    if value < min {
        return Err(invalid(
            field,
            format!("must be at least {min} (got {value})"),
        ));
    }
    Ok(())
}

/// Durations are longer than zero and at most a year.
pub(super) fn duration(field: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(invalid(
            field,
            "must be longer than zero, e.g. \"10s\" (got 0s)",
        ));
    }
    at_most_a_year(field, value)
}

/// The cap of [`duration`] alone, for a field whose lower bound a
/// reactor's own validation checks.
pub(super) fn at_most_a_year(field: &str, value: Duration) -> Result<(), ConfigError> {
    if value > MAX_DURATION {
        return Err(invalid(
            field,
            format!("must be at most 1year (got {})", human(value)),
        ));
    }
    Ok(())
}

/// What is wrong with a topic or room name, if anything: a name is 1 to
/// 128 bytes of printable characters, usable as one segment of an API path.
pub fn name_problem(name: &str) -> Option<String> {
    (name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control() || c == '/')).then(
        || format!("{name:?}: a name is 1 to 128 bytes, with no '/' and no control characters"),
    )
}

pub(super) fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    name_problem(name).map_or(Ok(()), |problem| Err(invalid(field, problem)))
}

/// A duration as humantime writes it: "10s", "1m 30s", "250ms".
pub(super) fn human(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a = 1\n[t]\n\u{e9}b = 2\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 1 });
        // After the two-byte é: the third column.
        let b = text.find('b').expect("b");
        assert_eq!(Position::of(text, b), Position { line: 3, column: 2 });
    }

    #[test]
    fn fields_are_located_by_their_dotted_path() {
        let text = "network_id = \"x\"\n\n[peers]\nmax_outbound = 0\nbootstrap = [\"a\",\n  \"b\"]\n\
                    [[reactors.gossip.rooms]]\nname = \"a\"\n[[reactors.gossip.rooms]]\n  name = \"b\"\n";
        let at = |field: &str| locate(text, field).map(|p| (p.line, p.column));
        assert_eq!(at("network_id"), Some((1, 1)));
        assert_eq!(at("peers.max_outbound"), Some((4, 1)));
        assert_eq!(at("peers.bootstrap[1]"), Some((6, 3)));
        assert_eq!(at("reactors.gossip.rooms[1].name"), Some((10, 3)));
        // Not in the text: the nearest table that is.
        assert_eq!(at("peers.max_inbound"), at("peers"));
        assert_eq!(at("limits.max_frame_size"), None);
        assert_eq!(locate("[peers", "peers"), None, "not TOML");
    }
}
