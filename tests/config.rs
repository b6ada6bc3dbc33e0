//! The node's TOML configuration through its public API: defaults, the
//! commented file `switchyard init` writes, errors that name the field,
//! and the conversions into the router's and transports' settings.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use switchyard::config::{Config, ConfigError, LogFormat, default_config_toml};
use switchyard::p2p::{Keypair, PeerAddress};

fn peer(seed: u64) -> String {
    Keypair::from_seed(seed).peer_id().to_string()
}

fn parse_err(text: &str) -> ConfigError {
    match Config::from_toml_str(text) {
        Ok(config) => panic!("accepted {text:?} as {config:?}"),
        Err(e) => e,
    }
}

/// Asserts the text is refused by validation, naming `field` in the error
/// and in its message, and that the message contains `reason`.
fn assert_invalid(text: &str, field: &str, reason: &str) {
    let err = parse_err(text);
    let message = err.to_string();
    assert_eq!(err.field(), Some(field), "{text:?}: {message}");
    assert!(
        message.contains(&format!("invalid value for {field}: ")),
        "{text:?}: {message:?} does not name {field}"
    );
    assert!(
        message.contains(reason),
        "{text:?}: {message:?} lacks {reason:?}"
    );
}

/// Every dotted key path of a TOML table, arrays' contents excluded.
fn keys(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = format!("{prefix}{key}");
        match value {
            toml::Value::Table(inner) => keys(inner, &format!("{path}."), out),
            _ => {
                out.insert(path);
            }
        }
    }
}

fn key_set(text: &str) -> BTreeSet<String> {
    let table: toml::Table = toml::from_str(text).expect("valid TOML");
    let mut out = BTreeSet::new();
    keys(&table, "", &mut out);
    out
}

/// A configuration in which every field differs from its default and
/// every optional field is set.
fn everything_changed() -> Config {
    let text = format!(
        r#"
data_dir = "/srv/switchyard \"node\" 1"
network_id = "test-net"
key_file = "keys/other.hex"

[p2p]
external_addresses = ["tcp://203.0.113.7:7400", "quic://node.example.org:7401"]

[transports.tcp]
enabled = true
listen = "[::1]:7400"
handshake_timeout = "3s"
max_handshakes_per_prefix = 2
max_handshakes = 20

[transports.quic]
enabled = true
listen = "127.0.0.1:7401"
handshake_timeout = "4s"
idle_timeout = "1m"
keep_alive_interval = "20s"
max_handshakes_per_prefix = 3
max_handshakes = 30
max_reassembly_bytes = 4194304

[peers]
bootstrap = ["tcp://{a}@127.0.0.1:7500", "quic://{b}@seed.example.org:7501"]
persistent = ["tcp://{c}@[::1]:7502"]
max_inbound = 5
max_outbound = 6
max_requested_outbound = 7
max_inbound_per_prefix = 2
max_ports_per_host = 1
allow_private_addresses = true
ban_duration = "1h 30m"
score_half_life = "2h"

[limits]
handshake_timeout = "5s"
dial_timeout = "6s"
max_pending_handshakes = 7
max_pending_handshakes_per_prefix = 3
ping_interval = "8s"
pong_timeout = "9s"
close_grace = "500ms"
max_frame_size = 1048640
recv_bytes_per_peer = 3145728

[reactors.pex]
enabled = false
min_peers = 3
request_interval = "45s"
max_addresses_per_response = 50
min_request_gap = "20s"
seed_mode = true
observed_quorum = 5

[reactors.gossip]
enabled = true
topics = ["chat", "news"]
max_payload_size = 1000
active_view = 4
passive_view = 20
max_topics = 8
max_room_state = 65536
origin_rate = 10
origin_burst = 20
max_origins = 100
neighbor_rate = 500
neighbor_new_origins = 7

[[reactors.gossip.rooms]]
name = "lobby"
admin = "{a}"
write_key = "{b}"
write_key_file = "lobby.hex"

[[reactors.gossip.rooms]]
name = "mine"

[reactors.ring]
enabled = true
gateway = true
gateways = ["tcp://{a}@127.0.0.1:7500"]
target_degree = 5
max_degree = 9
maintenance_interval = "3s"
max_load_share = 0.25
max_neighbors_per_prefix = 6
max_joins_per_prefix = 3
join_quota_window = "10m"
location_ttl = "2days"

[api]
enabled = false
listen = "127.0.0.1:9000"

[metrics]
listen = "127.0.0.1:9001"

[log]
format = "json"
filter = "info,p2p::router=debug"
"#,
        a = peer(1),
        b = peer(2),
        c = peer(3),
    );
    let config = Config::from_toml_str(&text).expect("valid config");
    assert_eq!(
        key_set(&text),
        key_set(&toml::to_string(&config).expect("serialize")),
        "the test text must set every field"
    );
    config
}

#[test]
fn empty_text_is_the_default() {
    assert_eq!(Config::from_toml_str("").expect("empty"), Config::default());
}

#[test]
fn default_file_parses_to_exactly_the_defaults() {
    let text = default_config_toml().expect("the defaults render");
    assert_eq!(
        Config::from_toml_str(&text).expect("default file"),
        Config::default()
    );
}

#[test]
fn default_file_shows_every_field_with_a_comment() {
    let text = default_config_toml().expect("the defaults render");
    // Options that default to None appear commented out; uncomment them and
    // the file must hold every field the configuration has.
    let uncommented = text
        .replace("# data_dir = ", "data_dir = ")
        .replace("# listen = ", "listen = ")
        .replace("# [[reactors.gossip.rooms]]", "[[reactors.gossip.rooms]]")
        .replace("# # ", "# ")
        .replace("# name = ", "name = ")
        .replace("# admin = ", "admin = ")
        .replace("# write_key = ", "write_key = ")
        .replace("# write_key_file = ", "write_key_file = ");
    assert_eq!(
        key_set(&uncommented),
        key_set(&toml::to_string(&everything_changed()).expect("serialize")),
    );
    let lines: Vec<&str> = uncommented.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.contains(" = ") && !line.starts_with('#') && !line.starts_with(' ') {
            assert!(
                i > 0 && lines[i - 1].starts_with('#'),
                "{line:?} has no comment above it"
            );
        }
    }
}

#[test]
fn commented_file_round_trips_any_config() {
    let config = everything_changed();
    let text = config.to_commented_toml().expect("renders");
    assert_eq!(
        Config::from_toml_str(&text).expect("rendered config"),
        config
    );
}

/// Asserts the text is refused by the parser with an error naming the
/// dotted `field` and containing `shown`.
fn assert_parse_error(text: &str, field: &str, shown: &str) {
    let err = parse_err(text);
    assert!(
        matches!(err, ConfigError::Parse { .. }),
        "{text:?}: {err:?}"
    );
    assert_eq!(err.field(), Some(field), "{text:?}: {err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("(field {field})")),
        "{text:?}: {message}"
    );
    assert!(message.contains(shown), "{text:?}: {message}");
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    for (text, field, shown) in [
        (
            "netwrk_id = \"x\"\n",
            "netwrk_id",
            "unknown field `netwrk_id`",
        ),
        (
            "[peers]\nmax_outbund = 3\n",
            "peers.max_outbund",
            "unknown field `max_outbund`",
        ),
        (
            "[transports.tcp]\nlisten_addr = \"0.0.0.0:1\"\n",
            "transports.tcp.listen_addr",
            "unknown field `listen_addr`",
        ),
        (
            "[reactors.pex]\nmin_peer = 3\n",
            "reactors.pex.min_peer",
            "unknown field `min_peer`",
        ),
        (
            "[reactors.gossip]\nenable = true\n",
            "reactors.gossip.enable",
            "unknown field `enable`",
        ),
        (
            "[[reactors.gossip.rooms]]\nname = \"x\"\nwriter = \"y\"\n",
            "reactors.gossip.rooms[0].writer",
            "unknown field `writer`",
        ),
        (
            "[reactors.store]\nenabled = true\n",
            "reactors.store",
            "unknown field `store`",
        ),
        (
            "transports = { tcp = { enable = false } }\n",
            "transports.tcp.enable",
            "unknown field `enable`",
        ),
        // Reactor settings the node's file does not expose.
        (
            "[reactors.ring]\nmax_htl = 3\n",
            "reactors.ring.max_htl",
            "unknown field `max_htl`",
        ),
        (
            "[reactors.gossip]\nneighbor_burst = 3\n",
            "reactors.gossip.neighbor_burst",
            "unknown field `neighbor_burst`",
        ),
    ] {
        assert_parse_error(text, field, shown);
    }
}

#[test]
fn wrong_types_name_the_field() {
    for (text, field, shown) in [
        (
            "[peers]\nmax_outbound = \"ten\"\n",
            "peers.max_outbound",
            "expected usize",
        ),
        (
            "[peers]\nmax_inbound = -1\n",
            "peers.max_inbound",
            "expected usize",
        ),
        (
            "[transports.tcp]\nlisten = \"localhost\"\n",
            "transports.tcp.listen",
            "invalid socket address",
        ),
        (
            "[limits]\nping_interval = \"soon\"\n",
            "limits.ping_interval",
            "expected a duration",
        ),
        (
            "[log]\nformat = \"xml\"\n",
            "log.format",
            "expected `text` or `json`",
        ),
        ("[api]\nenabled = 1\n", "api.enabled", "expected a boolean"),
        ("network_id = 5\n", "network_id", "expected a string"),
        (
            "[peers]\npersistent = [3]\n",
            "peers.persistent[0]",
            "expected an address",
        ),
        // The keys of a reactor's section, its own and the node's.
        (
            "[reactors.pex]\nenabled = \"yes\"\n",
            "reactors.pex.enabled",
            "expected a boolean",
        ),
        (
            "[reactors.pex]\nrequest_interval = 30\n",
            "reactors.pex.request_interval",
            "expected a duration",
        ),
        (
            "[reactors.gossip]\nactive_view = \"six\"\n",
            "reactors.gossip.active_view",
            "expected usize",
        ),
        (
            "[[reactors.gossip.rooms]]\nname = 5\n",
            "reactors.gossip.rooms[0].name",
            "expected a string",
        ),
        (
            "[reactors.ring]\nmax_load_share = \"half\"\n",
            "reactors.ring.max_load_share",
            "expected f64",
        ),
        (
            "[reactors.ring]\ngateways = [1]\n",
            "reactors.ring.gateways[0]",
            "expected an address",
        ),
    ] {
        assert_parse_error(text, field, shown);
    }
}

/// A reactor's section is read key by key, the node's keys and the
/// reactor's own together: an error points at the key or value, and an
/// unknown key is told every key the section takes.
#[test]
fn reactor_section_errors_point_at_the_key() {
    let text = "[reactors.gossip]\ntopics = [\"chat\"]\nenable = true\n";
    let message = parse_err(text).to_string();
    assert!(message.contains("at line 3, column 1"), "{message}");
    for key in [
        "`enabled`",
        "`topics`",
        "`rooms`",
        "`active_view`",
        "`neighbor_rate`",
    ] {
        assert!(message.contains(key), "{message} does not offer {key}");
    }
    let text = "[reactors.ring]\nenabled = false\n\nmax_load_share = \"half\"\n";
    let message = parse_err(text).to_string();
    assert!(message.contains("at line 4, column 18"), "{message}");
    let text = format!(
        "[reactors.ring]\ngateways = [\n  \"tcp://{}@127.0.0.1:1\",\n  \"tcp://nobody@127.0.0.1:2\",\n]\n",
        peer(1)
    );
    let err = parse_err(&text);
    assert_eq!(err.field(), Some("reactors.ring.gateways[1]"));
    assert!(err.to_string().contains("at line 4, column 3"), "{err}");
}

/// Issue 17 item 7: documented ranges hold whether or not the reactor is
/// enabled, so a file that turns it on later holds no surprise.
#[test]
fn ranges_of_disabled_reactors_are_checked() {
    for (text, field) in [
        (
            "[reactors.ring]\nenabled = false\nmax_load_share = 2.0",
            "reactors.ring.max_load_share",
        ),
        (
            "[reactors.ring]\nlocation_ttl = \"400days\"",
            "reactors.ring.location_ttl",
        ),
        (
            "[reactors.gossip]\nenabled = false\nactive_view = 0",
            "reactors.gossip.active_view",
        ),
        (
            "[reactors.pex]\nenabled = false\nmax_addresses_per_response = 101",
            "reactors.pex.max_addresses_per_response",
        ),
    ] {
        assert_eq!(parse_err(text).field(), Some(field), "{text:?}");
    }
}

#[test]
fn validation_errors_say_where_the_field_is() {
    let text = "network_id = \"n\"\n[peers]\nmax_inbound = 3\n  max_outbound = 0\n";
    let err = parse_err(text);
    assert_eq!(
        err.to_string(),
        "config line 4, column 3: invalid value for peers.max_outbound: must be at least 1 (got 0)"
    );
    // A default in conflict with a set field: the nearest table written.
    let text = "[peers]\nmax_inbound = 0\nmax_outbound = 2\n";
    let err = parse_err(text);
    assert_eq!(err.field(), Some("reactors.pex.min_peers"));
    assert_eq!(err.position(), None, "no [reactors] in the text");
    let text = "[reactors.pex]\nseed_mode = true\n[peers]\nmax_inbound = 0\nmax_outbound = 2\n";
    let position = parse_err(text)
        .position()
        .expect("[reactors.pex] is written");
    assert_eq!((position.line, position.column), (1, 11), "at `pex`");
}

#[test]
fn syntax_errors_show_the_line() {
    let err = parse_err("[peers\nmax_outbound = 3\n");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn each_validation_rule_names_its_field() {
    let long_id = "x".repeat(300);
    let cases = [
        (
            "network_id = \"\"".to_string(),
            "network_id",
            "must not be empty",
        ),
        (
            format!("network_id = \"{long_id}\""),
            "network_id",
            "at most 242 bytes",
        ),
        ("key_file = \"\"".into(), "key_file", "must not be empty"),
        ("data_dir = \"~/sy\"".into(), "data_dir", "not expanded"),
        (
            "[transports.tcp]\nenabled = false".into(),
            "transports",
            "no transport is enabled",
        ),
        (
            "[transports.tcp]\nhandshake_timeout = \"0s\"".into(),
            "transports.tcp.handshake_timeout",
            "longer than zero",
        ),
        (
            "[transports.tcp]\nmax_handshakes_per_prefix = 0".into(),
            "transports.tcp.max_handshakes_per_prefix",
            "at least 1 (got 0)",
        ),
        (
            "[transports.tcp]\nmax_handshakes = 0".into(),
            "transports.tcp.max_handshakes",
            "at least 1 (got 0)",
        ),
        (
            "[transports.quic]\nidle_timeout = \"0s\"".into(),
            "transports.quic.idle_timeout",
            "longer than zero",
        ),
        (
            "[transports.quic]\nidle_timeout = \"5s\"\nkeep_alive_interval = \"5s\"".into(),
            "transports.quic.keep_alive_interval",
            "shorter than transports.quic.idle_timeout",
        ),
        (
            "[transports.quic]\nmax_handshakes = 0".into(),
            "transports.quic.max_handshakes",
            "at least 1",
        ),
        (
            "[peers]\nmax_outbound = 0".into(),
            "peers.max_outbound",
            "must be at least 1 (got 0)",
        ),
        (
            "[peers]\nmax_inbound_per_prefix = 0".into(),
            "peers.max_inbound_per_prefix",
            "at least 1 (got 0)",
        ),
        (
            "[peers]\nmax_ports_per_host = 0".into(),
            "peers.max_ports_per_host",
            "at least 1 (got 0)",
        ),
        (
            "[peers]\nscore_half_life = \"0s\"".into(),
            "peers.score_half_life",
            "longer than zero",
        ),
        (
            "[peers]\nban_duration = \"0s\"".into(),
            "peers.ban_duration",
            "longer than zero",
        ),
        (
            "[peers]\nban_duration = \"2years\"".into(),
            "peers.ban_duration",
            "at most 1year",
        ),
        (
            "[limits]\nhandshake_timeout = \"0ms\"".into(),
            "limits.handshake_timeout",
            "longer than zero",
        ),
        (
            "[limits]\ndial_timeout = \"0s\"".into(),
            "limits.dial_timeout",
            "longer than zero",
        ),
        (
            "[limits]\nmax_pending_handshakes = 0".into(),
            "limits.max_pending_handshakes",
            "at least 1",
        ),
        (
            "[limits]\nping_interval = \"0s\"".into(),
            "limits.ping_interval",
            "longer than zero",
        ),
        (
            "[limits]\npong_timeout = \"0s\"".into(),
            "limits.pong_timeout",
            "longer than zero",
        ),
        (
            "[limits]\nclose_grace = \"0s\"".into(),
            "limits.close_grace",
            "longer than zero",
        ),
        (
            "[limits]\nmax_frame_size = 100".into(),
            "limits.max_frame_size",
            "(got 100)",
        ),
        (
            "[limits]\nmax_frame_size = 1000000000".into(),
            "limits.max_frame_size",
            "(got 1000000000)",
        ),
        (
            "[limits]\nrecv_bytes_per_peer = 1000".into(),
            "limits.recv_bytes_per_peer",
            "at least 65536 (got 1000)",
        ),
        (
            "[limits]\nmax_frame_size = 1048640\n[transports.quic]\nmax_reassembly_bytes = 1000000"
                .into(),
            "transports.quic.max_reassembly_bytes",
            "at least limits.max_frame_size (1048640)",
        ),
        (
            "[peers]\nmax_inbound = 0\nmax_outbound = 2\n[reactors.pex]\nmin_peers = 3".into(),
            "reactors.pex.min_peers",
            "can never be reached",
        ),
        (
            "[reactors.pex]\nrequest_interval = \"0s\"".into(),
            "reactors.pex.request_interval",
            "request_interval must be more than zero",
        ),
        (
            "[reactors.pex]\nmax_addresses_per_response = 101".into(),
            "reactors.pex.max_addresses_per_response",
            "is 101; it must be in 1..=100",
        ),
        (
            "[reactors.pex]\nmax_addresses_per_response = 0".into(),
            "reactors.pex.max_addresses_per_response",
            "is 0;",
        ),
        (
            "[reactors.pex]\nrequest_interval = \"10s\"\nmin_request_gap = \"11s\"".into(),
            "reactors.pex.min_request_gap",
            "min_request_gap (11s) exceeds request_interval (10s)",
        ),
        (
            "[reactors.gossip]\nenabled = false\n[[reactors.gossip.rooms]]\nname = \"a\"".into(),
            "reactors.gossip.rooms",
            "rooms run on gossip",
        ),
        (
            "[reactors.gossip]\nmax_payload_size = 0".into(),
            "reactors.gossip.max_payload_size",
            "(got 0)",
        ),
        (
            "[reactors.gossip]\nactive_view = 65".into(),
            "reactors.gossip.active_view",
            "must be in 1..=64 (got 65)",
        ),
        (
            "[reactors.gossip]\npassive_view = 2000".into(),
            "reactors.gossip.passive_view",
            "at most 1024",
        ),
        (
            "[reactors.gossip]\nmax_topics = 1\ntopics = [\"a\", \"b\"]".into(),
            "reactors.gossip.max_topics",
            "hold the 2 topics and rooms",
        ),
        (
            "[reactors.gossip]\norigin_burst = 0".into(),
            "reactors.gossip.origin_burst",
            "at least 1 when origin_rate is set (got 0)",
        ),
        (
            "[reactors.gossip]\nmax_origins = 0".into(),
            "reactors.gossip.max_origins",
            "(got 0)",
        ),
        (
            "[reactors.gossip]\nmax_room_state = 10".into(),
            "reactors.gossip.max_room_state",
            "(got 10)",
        ),
        (
            "[reactors.gossip]\ntopics = [\"a\", \"a/b\"]".into(),
            "reactors.gossip.topics[1]",
            "no '/'",
        ),
        (
            "[reactors.gossip]\ntopics = [\"a\", \"a\"]".into(),
            "reactors.gossip.topics[1]",
            "listed twice",
        ),
        (
            "[[reactors.gossip.rooms]]\nname = \"\"".into(),
            "reactors.gossip.rooms[0].name",
            "1 to 128 bytes",
        ),
        (
            "[[reactors.gossip.rooms]]\nname = \"a\"\n[[reactors.gossip.rooms]]\nname = \"a\"".into(),
            "reactors.gossip.rooms[1].name",
            "listed twice",
        ),
        (
            "[[reactors.gossip.rooms]]\nname = \"a\"\nadmin = \"nope\"".into(),
            "reactors.gossip.rooms[0].admin",
            "not a peer id",
        ),
        (
            "[[reactors.gossip.rooms]]\nname = \"a\"\nwrite_key = \"nope\"".into(),
            "reactors.gossip.rooms[0].write_key",
            "not a peer id",
        ),
        (
            "[reactors.ring]\nenabled = true".into(),
            "reactors.ring.gateways",
            "joins through a gateway",
        ),
        (
            format!("[reactors.ring]\nenabled = true\ngateways = [\"quic://{}@127.0.0.1:1\"]", peer(1)),
            "reactors.ring.gateways[0]",
            "transports.quic.enabled is false",
        ),
        (
            "[reactors.ring]\nenabled = true\ngateway = true\nmaintenance_interval = \"0s\"".into(),
            "reactors.ring.maintenance_interval",
            "maintenance_interval must be more than zero",
        ),
        (
            "[reactors.ring]\nenabled = true\ngateway = true\nmax_load_share = 1.5".into(),
            "reactors.ring.max_load_share",
            "is 1.5; it must be in (0, 1]",
        ),
        (
            "[reactors.ring]\nenabled = true\ngateway = true\nmax_neighbors_per_prefix = 0".into(),
            "reactors.ring.max_neighbors_per_prefix",
            "at least 1",
        ),
        (
            "[reactors.ring]\nenabled = true\ngateway = true\nmax_joins_per_prefix = 0".into(),
            "reactors.ring.max_joins_per_prefix",
            "at least 1",
        ),
        (
            "[reactors.ring]\nenabled = true\ngateway = true\njoin_quota_window = \"0s\"".into(),
            "reactors.ring.join_quota_window",
            "join_quota_window must be more than zero",
        ),
        (
            "[reactors.ring]\nenabled = true\ngateway = true\nlocation_ttl = \"10m\"".into(),
            "reactors.ring.location_ttl",
            "is 600s; it must be at least an hour",
        ),
        (
            "[reactors.ring]\nenabled = true\ngateway = true\ntarget_degree = 31".into(),
            "reactors.ring.target_degree",
            "target_degree is 31; it must be at least 2 (successor and predecessor) and at most max_degree (30)",
        ),
        (
            "[peers]\nmax_inbound = 2\nmax_outbound = 3\nmax_requested_outbound = 4\n[reactors.pex]\nmin_peers = 2\n[reactors.ring]\nenabled = true\ngateway = true".into(),
            "reactors.ring.target_degree",
            "can never be reached",
        ),
        (
            "[api]\nlisten = \"127.0.0.1:26656\"".into(),
            "api.listen",
            "same TCP port as transports.tcp.listen",
        ),
        (
            "[metrics]\nlisten = \"127.0.0.1:26658\"".into(),
            "metrics.listen",
            "same TCP port as api.listen",
        ),
        (
            "[log]\nfilter = \"p2p=loudest\"".into(),
            "log.filter",
            "not a tracing filter directive",
        ),
    ];
    for (text, field, reason) in cases {
        assert_invalid(&text, field, reason);
    }
}

#[test]
fn external_addresses_must_be_dialable_over_an_enabled_transport() {
    for (text, reason) in [
        (
            "[p2p]\nexternal_addresses = [\"tcp://0.0.0.0:26656\"]\n",
            "unspecified IP",
        ),
        (
            "[p2p]\nexternal_addresses = [\"203.0.113.7:26656\"]\n",
            "tcp://host:port",
        ),
        (
            "[p2p]\nexternal_addresses = [\"udp://203.0.113.7:1\"]\n",
            "not udp://",
        ),
        (
            "[p2p]\nexternal_addresses = [\"tcp://203.0.113.7:0\"]\n",
            "port",
        ),
        (
            "[p2p]\nexternal_addresses = [\"quic://203.0.113.7:26656\"]\n",
            "transports.quic.enabled is false",
        ),
    ] {
        assert_invalid(text, "p2p.external_addresses[0]", reason);
    }
    let config = Config::from_toml_str(
        "[p2p]\nexternal_addresses = [\"tcp://203.0.113.7:26656\", \"tcp://node.example.org:1\"]\n",
    )
    .expect("valid");
    let me = switchyard::p2p::Keypair::from_seed(5).peer_id();
    let addresses = config.p2p.addresses(me).expect("addresses");
    assert_eq!(addresses.len(), 2);
    assert!(addresses.iter().all(|a| a.peer == me));
    assert_eq!(
        addresses[0].to_string(),
        format!("tcp://{me}@203.0.113.7:26656")
    );
    // A full address must name this node.
    let other = switchyard::p2p::Keypair::from_seed(6).peer_id();
    let config = Config::from_toml_str(&format!(
        "[p2p]\nexternal_addresses = [\"tcp://{other}@203.0.113.7:26656\"]\n"
    ))
    .expect("valid syntax");
    let err = config.p2p.addresses(me).expect_err("another node's");
    assert!(err.to_string().contains("another PeerId"), "{err}");
}

#[test]
fn validate_checks_a_config_changed_in_code() {
    let mut config = Config::default();
    config.peers.max_outbound = 0;
    let err = config.validate().expect_err("max_outbound 0");
    assert_eq!(
        err.to_string(),
        "invalid value for peers.max_outbound: must be at least 1 (got 0)"
    );
}

#[test]
fn the_same_port_on_tcp_and_quic_is_fine() {
    let text = "[transports.quic]\nenabled = true\nlisten = \"0.0.0.0:26656\"\n";
    Config::from_toml_str(text).expect("TCP and UDP ports are distinct");
}

#[test]
fn peer_address_errors_name_the_list_and_index() {
    let text = format!(
        "[peers]\nbootstrap = [\"tcp://{}@127.0.0.1:1\", \"tcp://nobody@127.0.0.1:2\"]\n",
        peer(1)
    );
    assert_parse_error(
        &text,
        "peers.bootstrap[1]",
        "address \"tcp://nobody@127.0.0.1:2\"",
    );
    assert_parse_error(&text, "peers.bootstrap[1]", "invalid peer id");
    assert_parse_error(
        "[peers]\npersistent = [\"127.0.0.1:7400\"]\n",
        "peers.persistent[0]",
        "no scheme",
    );
}

#[test]
fn peer_addresses_must_use_an_enabled_transport() {
    let quic = format!(
        "[peers]\nbootstrap = [\"quic://{}@127.0.0.1:1\"]\n",
        peer(1)
    );
    assert_invalid(
        &quic,
        "peers.bootstrap[0]",
        "transports.quic.enabled is false",
    );
    let with_quic = format!("{quic}[transports.quic]\nenabled = true\n");
    Config::from_toml_str(&with_quic).expect("quic address with quic enabled");

    let memory = format!(
        "[peers]\npersistent = [\"tcp://{}@127.0.0.1:1\", \"memory://{}\"]\n",
        peer(1),
        peer(2)
    );
    assert_invalid(&memory, "peers.persistent[1]", "tcp:// or quic://");
}

#[test]
fn relative_key_file_is_resolved_against_the_data_dir() {
    let config = Config::from_toml_str("data_dir = \"/var/lib/sy\"\n").expect("config");
    assert_eq!(config.data_dir(), Path::new("/var/lib/sy"));
    assert_eq!(config.key_path(), Path::new("/var/lib/sy/node_key.hex"));

    let config = Config::from_toml_str("data_dir = \"/var/lib/sy\"\nkey_file = \"keys/k.hex\"\n")
        .expect("config");
    assert_eq!(config.key_path(), Path::new("/var/lib/sy/keys/k.hex"));

    let config = Config::from_toml_str("data_dir = \"/var/lib/sy\"\nkey_file = \"/etc/k.hex\"\n")
        .expect("config");
    assert_eq!(config.key_path(), Path::new("/etc/k.hex"));
}

#[test]
fn default_data_dir_follows_the_environment() {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let expected = match (non_empty("SWITCHYARD_HOME"), non_empty("HOME")) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(home)) => PathBuf::from(home).join(".switchyard"),
        (None, None) => PathBuf::from("./.switchyard"),
    };
    let config = Config::default();
    assert_eq!(config.data_dir(), expected);
    assert_eq!(config.key_path(), expected.join("node_key.hex"));
}

#[test]
fn conversions_carry_the_values() {
    let config = everything_changed();

    let router = config.router_config();
    assert_eq!(router.network_id, "test-net");
    assert_eq!(router.handshake_timeout, Duration::from_secs(5));
    assert_eq!(router.dial_timeout, Duration::from_secs(6));
    assert_eq!(router.max_pending_handshakes, 7);
    assert_eq!(router.max_pending_handshakes_per_prefix, 3);
    assert_eq!(router.ping_interval, Duration::from_secs(8));
    assert_eq!(router.pong_timeout, Duration::from_secs(9));
    assert_eq!(router.close_grace, Duration::from_millis(500));
    assert_eq!(router.recv_bytes_per_peer, 3 * 1024 * 1024);
    let pm = &router.peer_manager;
    assert_eq!(pm.max_inbound, 5);
    assert_eq!(pm.max_outbound, 6);
    assert_eq!(pm.max_requested_outbound, 7);
    assert_eq!(pm.max_inbound_per_prefix, 2);
    assert_eq!(pm.max_ports_per_host, 1);
    assert!(pm.allow_private_addresses);
    assert_eq!(pm.ban_duration, Duration::from_secs(90 * 60));
    assert_eq!(pm.score_half_life, Duration::from_secs(2 * 3600));
    let bootstrap: Vec<String> = pm.bootstrap_peers.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        bootstrap,
        [
            format!("tcp://{}@127.0.0.1:7500", peer(1)),
            format!("quic://{}@seed.example.org:7501", peer(2)),
        ]
    );
    let persistent: PeerAddress = format!("tcp://{}@[::1]:7502", peer(3))
        .parse()
        .expect("address");
    assert_eq!(pm.persistent_peers, [persistent]);

    let tcp = config.tcp_config().expect("tcp enabled");
    assert_eq!(tcp.listen, "[::1]:7400".parse().expect("socket address"));
    assert_eq!(tcp.network_id, "test-net");
    assert_eq!(tcp.handshake_timeout, Duration::from_secs(3));
    assert_eq!(tcp.max_handshakes_per_prefix, 2);
    assert_eq!(tcp.max_handshakes, 20);
    assert_eq!(tcp.max_frame_size, 1_048_640);

    let quic = config.quic_config().expect("quic enabled");
    assert_eq!(
        quic.listen,
        "127.0.0.1:7401".parse().expect("socket address")
    );
    assert_eq!(quic.network_id, "test-net");
    assert_eq!(quic.handshake_timeout, Duration::from_secs(4));
    assert_eq!(quic.idle_timeout, Duration::from_secs(60));
    assert_eq!(quic.keep_alive_interval, Duration::from_secs(20));
    assert_eq!(quic.max_handshakes_per_prefix, 3);
    assert_eq!(quic.max_handshakes, 30);
    assert_eq!(quic.max_frame_size, 1_048_640);
    assert_eq!(quic.max_reassembly_bytes, 4 * 1024 * 1024);

    assert!(!config.reactors.pex.enabled);
    assert_eq!(
        config.reactors.pex.config.request_interval,
        Duration::from_secs(45)
    );
    assert_eq!(
        config.reactors.pex.config.min_request_gap,
        Duration::from_secs(20)
    );
    assert!(config.reactors.pex.config.seed_mode);
    assert_eq!(config.reactors.pex.config.observed_quorum, 5);
    let gossip = &config.reactors.gossip.config;
    assert_eq!(gossip.max_payload_size, 1000);
    assert_eq!(gossip.hyparview.active_view_capacity, 4);
    assert_eq!(gossip.hyparview.passive_view_capacity, 20);
    assert_eq!(gossip.plumtree.origin_rate, 10);
    assert_eq!(gossip.plumtree.origin_burst, 20);
    assert_eq!(gossip.plumtree.max_origins, 100);
    assert_eq!(gossip.plumtree.neighbor_rate, 500);
    assert_eq!(gossip.plumtree.neighbor_burst, 1000);
    assert_eq!(gossip.plumtree.neighbor_new_origins, 7);
    assert_eq!(gossip.plumtree.neighbor_new_origins_burst, 70);
    let ring = config.reactors.ring.ring_config(None);
    assert_eq!(ring.load.max_share, 0.25);
    assert_eq!(ring.max_neighbors_per_prefix, 6);
    assert_eq!(ring.max_joins_per_prefix, 3);
    assert_eq!(ring.join_quota_window, Duration::from_secs(600));
    assert_eq!(ring.location_ttl, Duration::from_secs(2 * 24 * 3600));
    assert!(!config.api.enabled);
    assert_eq!(
        config.metrics.listen,
        Some("127.0.0.1:9001".parse().expect("addr"))
    );
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn defaults_match_the_transports_and_router() {
    let config = Config::default();
    let tcp = config.tcp_config().expect("tcp is on by default");
    let defaults = switchyard::transport_tcp::TcpConfig::default();
    assert_eq!(tcp.listen, "0.0.0.0:26656".parse().expect("addr"));
    assert_eq!(tcp.network_id, "switchyard-local");
    assert_eq!(tcp.handshake_timeout, defaults.handshake_timeout);
    assert_eq!(tcp.max_frame_size, defaults.max_frame_size);
    assert_eq!(tcp.suites, defaults.suites, "the suites follow the CPU");
    assert!(config.quic_config().is_none(), "quic is off by default");
    let router = config.router_config();
    let pm = &router.peer_manager;
    assert_eq!(pm, &switchyard::p2p::PeerManagerConfig::default());
    assert_eq!(config.api.listen, "127.0.0.1:26658".parse().expect("addr"));
    assert_eq!(config.metrics.listen, None);
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.filter, "info");
    assert_eq!(config.reactors.pex.config.max_addresses_per_response, 100);
}

#[test]
fn load_names_the_file() {
    let dir = std::env::temp_dir().join(format!("switchyard-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let missing = dir.join("missing.toml");
    let err = Config::load(&missing).expect_err("missing file");
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.toml"), "{err}");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[peers]\nmax_outbound = 0\n").expect("write");
    let message = Config::load(&bad).expect_err("invalid").to_string();
    assert!(
        message.contains("bad.toml, line 2, column 1: invalid value for peers.max_outbound"),
        "{message}"
    );
    assert!(message.contains("peers.max_outbound"), "{message}");

    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "[api]\nlisten_on = \"127.0.0.1:1\"\n").expect("write");
    let message = Config::load(&typo).expect_err("unknown field").to_string();
    assert!(message.contains("typo.toml"), "{message}");
    assert!(message.contains("listen_on"), "{message}");

    let good = dir.join("good.toml");
    std::fs::write(&good, default_config_toml().expect("render")).expect("write");
    assert_eq!(
        Config::load(&good).expect("default file"),
        Config::default()
    );

    std::fs::remove_dir_all(&dir).expect("clean up");
}
