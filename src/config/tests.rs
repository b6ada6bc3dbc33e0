//! The commented file held to the schema, and the documented ranges held
//! to validation: every test here walks `Config`'s own serialization, so a
//! field added to a section is covered without a line written here.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::error::{MAX_DURATION, human};
use super::template::{ENTRIES, Entry, Field, Range, lookup};
use super::*;

/// A configuration with every optional field set and one room with every
/// field, so that its serialization shows the whole schema.
fn everything_set() -> Config {
    let mut config = Config {
        data_dir: Some("/var/lib/switchyard".into()),
        ..Config::default()
    };
    config.metrics.listen = Some(SocketAddr::from(([127, 0, 0, 1], 26660)));
    config.transports.tcp.suites = Some(vec![TcpSuite::ChaChaPoly, TcpSuite::AesGcm]);
    let peer = p2p::Keypair::from_seed(1).peer_id().to_string();
    config.reactors.gossip.rooms.push(RoomSection {
        name: "lobby".into(),
        admin: Some(peer.clone()),
        write_key: Some(peer),
        write_key_file: Some("lobby.hex".into()),
    });
    config
}

fn serialize(config: &Config) -> toml::Table {
    toml::Table::try_from(config).expect("a configuration serializes")
}

/// Every leaf of a serialized configuration by dotted path, with `[]` for
/// the elements of an array of tables.
fn leaves(table: &toml::Table, prefix: &str, out: &mut Vec<(String, toml::Value)>) {
    for (key, value) in table {
        let path = format!("{prefix}{key}");
        match value {
            toml::Value::Table(inner) => leaves(inner, &format!("{path}."), out),
            toml::Value::Array(items)
                if !items.is_empty() && items.iter().all(toml::Value::is_table) =>
            {
                for item in items.iter().filter_map(toml::Value::as_table) {
                    leaves(item, &format!("{path}[]."), out);
                }
            }
            other => out.push((path, other.clone())),
        }
    }
}

fn schema() -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    leaves(&serialize(&everything_set()), "", &mut out);
    out
}

/// Every field the template documents.
fn documented() -> Vec<&'static Field> {
    let mut out = Vec::new();
    for entry in ENTRIES {
        match entry {
            Entry::Field(field) => out.push(field),
            Entry::TableArray { fields, .. } => out.extend(fields.iter()),
            Entry::Table { .. } => {}
        }
    }
    out
}

#[test]
fn the_template_documents_exactly_the_schema() {
    let schema: BTreeSet<String> = schema().into_iter().map(|(path, _)| path).collect();
    let fields = documented();
    let documented: BTreeSet<String> = fields.iter().map(|f| f.path.to_string()).collect();
    assert_eq!(
        documented.len(),
        fields.len(),
        "a field is documented twice"
    );
    let missing: Vec<_> = schema.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&schema).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "fields without a comment: {missing:?}; comments of no field: {stale:?}"
    );
    for field in fields {
        assert!(
            !field.comment.trim().is_empty(),
            "{} has no comment",
            field.path
        );
    }
    let full = serialize(&everything_set());
    for entry in ENTRIES {
        match entry {
            Entry::Table { path, .. } => assert!(
                lookup(&full, path).is_some_and(toml::Value::is_table),
                "[{path}] is not a table of the schema"
            ),
            Entry::TableArray { path, .. } => assert!(
                lookup(&full, path).is_some_and(toml::Value::is_array),
                "[[{path}]] is not an array of the schema"
            ),
            Entry::Field(_) => {}
        }
    }
}

#[test]
fn the_default_file_shows_a_value_or_an_example_for_every_field() {
    let defaults = serialize(&Config::default());
    for field in documented() {
        if field.path.contains("[]") {
            assert!(field.example.is_some(), "{} needs an example", field.path);
            continue;
        }
        match (lookup(&defaults, field.path), field.example) {
            (Some(_), None) | (None, Some(_)) => {}
            (Some(_), Some(_)) => panic!("{} has a default: no example needed", field.path),
            (None, None) => panic!("{} is unset by default: give an example", field.path),
        }
    }
    let text = default_config_toml().expect("the defaults render");
    assert_eq!(
        Config::from_toml_str(&text).expect("parses"),
        Config::default()
    );
    let text = everything_set().to_commented_toml().expect("renders");
    assert_eq!(
        Config::from_toml_str(&text).expect("parses"),
        everything_set()
    );
}

fn is_duration(value: &toml::Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| humantime_serde::re::humantime::parse_duration(text).is_ok())
}

#[test]
fn every_number_and_duration_documents_its_range() {
    let fields = documented();
    for (path, value) in schema() {
        let Some(field) = fields.iter().find(|f| f.path == path) else {
            panic!("{path} is not documented");
        };
        let fits = match field.range {
            Range::Count { .. } => value.is_integer(),
            Range::Share => value.is_float(),
            Range::Duration { .. } => is_duration(&value),
            Range::Any => !value.is_integer() && !value.is_float() && !is_duration(&value),
        };
        assert!(fits, "{path} = {value} is documented as {:?}", field.range);
    }
}

/// `value` written at the dotted `path` of an otherwise empty file.
fn file_setting(path: &str, value: toml::Value) -> String {
    let mut document = toml::Table::new();
    let mut table = &mut document;
    let (parents, key) = path.rsplit_once('.').unwrap_or(("", path));
    for part in parents.split('.').filter(|p| !p.is_empty()) {
        table = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a table");
    }
    table.insert(key.into(), value);
    toml::to_string(&document).expect("serialize")
}

/// Values just outside a range, and one the type refuses.
fn outside(range: Range) -> Vec<toml::Value> {
    use toml::Value::{Float, Integer, String};
    match range {
        Range::Any => Vec::new(),
        Range::Count { min, max } => {
            let mut values = vec![Integer(-1)];
            if min > 0 {
                values.push(Integer(i64::try_from(min - 1).expect("small")));
            }
            if let Some(max) = max {
                values.push(Integer(i64::try_from(max + 1).expect("small")));
            }
            values
        }
        Range::Share => vec![Float(0.0), Float(-0.5), Float(1.5), Float(f64::NAN)],
        Range::Duration { min } => {
            let below = match min {
                Some(min) => human(min - Duration::from_secs(1)),
                None => "0s".into(),
            };
            vec![
                String(below),
                String(human(MAX_DURATION + Duration::from_secs(1))),
                Integer(10),
            ]
        }
    }
}

#[test]
fn every_documented_range_is_enforced_naming_the_field() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for field in documented() {
        for value in outside(field.range) {
            checked += 1;
            let text = file_setting(field.path, value);
            match Config::from_toml_str(&text) {
                Ok(_) => failures.push(format!("{text:?} was accepted")),
                Err(e) if e.field() != Some(field.path) => {
                    failures.push(format!("{text:?} was refused naming {:?}: {e}", e.field()));
                }
                Err(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 100, "only {checked} values checked");
}

#[test]
fn validation_errors_say_where_the_text_sets_the_field() {
    let error =
        Config::from_toml_str("network_id = \"n\"\n\n[reactors.ring]\nmax_load_share = 2.0\n")
            .expect_err("out of range");
    assert_eq!(error.field(), Some("reactors.ring.max_load_share"));
    assert_eq!(error.position(), Some(Position { line: 4, column: 1 }));
    let message = error.to_string();
    assert!(
        message.starts_with(
            "config line 4, column 1: invalid value for reactors.ring.max_load_share: "
        ),
        "{message}"
    );
    // Changed in code: no text, no position.
    let mut config = Config::default();
    config.reactors.ring.config.load.max_share = 2.0;
    assert_eq!(config.validate().expect_err("2.0").position(), None);
}

/// `transports.tcp.suites`: unset follows the CPU; set, it reaches the
/// transport in its order; an empty list, a suite named twice or an
/// unknown name is refused naming the field.
#[test]
fn tcp_suites_are_read_checked_and_handed_to_the_transport() {
    use transport_tcp::CipherSuite;
    let tcp = |text: &str| Config::from_toml_str(text).map(|c| c.tcp_config());
    let default = tcp("").expect("defaults").expect("tcp enabled");
    assert_eq!(default.suites, CipherSuite::default_preference());
    let set = tcp("[transports.tcp]\nsuites = [\"chachapoly\", \"aesgcm\"]\n")
        .expect("valid")
        .expect("tcp enabled");
    assert_eq!(
        set.suites,
        vec![CipherSuite::ChaChaPoly, CipherSuite::AesGcm]
    );
    for (text, says) in [
        ("suites = []", "at least one"),
        ("suites = [\"aesgcm\", \"aesgcm\"]", "twice"),
        ("suites = [\"aes\"]", "aesgcm"),
    ] {
        let error = tcp(&format!("[transports.tcp]\n{text}\n")).expect_err(text);
        let message = error.to_string();
        assert!(
            message.contains("transports.tcp.suites") && message.contains(says),
            "{text}: {message}"
        );
    }
}

#[test]
fn data_dir_precedence() {
    let os = |s: &str| Some(OsString::from(s));
    let file = Path::new("/from/file");
    assert_eq!(
        resolve_data_dir(Some(file), os("/env"), os("/home/u")),
        file
    );
    assert_eq!(
        resolve_data_dir(None, os("/env"), os("/home/u")),
        Path::new("/env")
    );
    assert_eq!(
        resolve_data_dir(None, os(""), os("/home/u")),
        Path::new("/home/u/.switchyard")
    );
    assert_eq!(
        resolve_data_dir(None, None, None),
        Path::new("./.switchyard")
    );
}

#[test]
fn colliding_sockets() {
    let a = |s: &str| s.parse::<SocketAddr>().expect("socket address");
    assert!(collide(a("0.0.0.0:1"), a("127.0.0.1:1")));
    assert!(collide(a("127.0.0.1:1"), a("127.0.0.1:1")));
    assert!(!collide(a("127.0.0.1:1"), a("127.0.0.2:1")));
    assert!(!collide(a("127.0.0.1:0"), a("127.0.0.1:0")));
    assert!(!collide(a("127.0.0.1:1"), a("127.0.0.1:2")));
}
