//! The commented configuration file: every field with its value, a
//! comment saying what it does, and its range.
//!
//! One table, [`ENTRIES`], holds the prose: for each field of the schema,
//! in the order the file shows them, its comment, its documented range
//! ([`Range`]) and, for a field that is unset by default, an example. The
//! fields and their values are not written here: the file is rendered from
//! the configuration's own serialization, so a value in the file is the
//! value in the code. Tests hold the table to the schema
//! (`super::tests`): the table names exactly the fields `Config`
//! serializes, each with a comment; the file parses back to the
//! configuration it was rendered from; and, for every field with a range,
//! a value just outside it is refused with an error naming the field.

use std::fmt::Write as _;
use std::time::Duration;

use super::error::{ConfigError, MAX_DURATION, human};
use super::reactors::{MAX_GOSSIP_ORIGINS, MAX_ROOM_STATE, MIN_ROOM_STATE};
use super::{Config, MAX_FRAME_SIZE, MIN_FRAME_SIZE};

/// What values a field takes, beyond its type. The file states it under
/// the field's comment; validation enforces it (a test checks both).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Range {
    /// Any value of the type (booleans, strings, addresses), or bounds
    /// that depend on other fields, which the comment states.
    Any,
    /// A whole number from `min` to `max` (no bound when `None`),
    /// inclusive.
    Count { min: u64, max: Option<u64> },
    /// A share: above 0, at most 1.
    Share,
    /// A duration of at least `min` (`None`: longer than zero) and at most
    /// a year ([`MAX_DURATION`]).
    Duration { min: Option<Duration> },
}

/// The ranges the table uses most.
const ANY: Range = Range::Any;
const COUNT: Range = Range::Count { min: 0, max: None };
const AT_LEAST_1: Range = Range::Count { min: 1, max: None };
const DURATION: Range = Range::Duration { min: None };

const fn between(min: usize, max: usize) -> Range {
    Range::Count {
        min: min as u64,
        max: Some(max as u64),
    }
}

const fn at_least(min: usize) -> Range {
    Range::Count {
        min: min as u64,
        max: None,
    }
}

/// One field of the file.
#[derive(Debug)]
pub(super) struct Field {
    /// Its dotted path; `[]` stands for every element of an array of
    /// tables (`reactors.gossip.rooms[].name`).
    pub path: &'static str,
    /// What it does, one comment line per `\n`-separated line.
    pub comment: &'static str,
    /// Its documented range.
    pub range: Range,
    /// For a field unset by default: a value shown commented out.
    pub example: Option<&'static str>,
}

/// One entry of the file, in order.
#[derive(Debug)]
pub(super) enum Entry {
    /// A `[table]` header with its comment.
    Table {
        path: &'static str,
        comment: &'static str,
    },
    /// A `key = value` line with its comment.
    Field(Field),
    /// `[[table]]`s, one per element, with the fields of each; a
    /// commented example when there are none.
    TableArray {
        path: &'static str,
        comment: &'static str,
        fields: &'static [Field],
    },
}

const fn field(path: &'static str, comment: &'static str, range: Range) -> Entry {
    Entry::Field(Field {
        path,
        comment,
        range,
        example: None,
    })
}

const fn optional(path: &'static str, comment: &'static str, example: &'static str) -> Entry {
    Entry::Field(Field {
        path,
        comment,
        range: ANY,
        example: Some(example),
    })
}

const fn table(path: &'static str, comment: &'static str) -> Entry {
    Entry::Table { path, comment }
}

const ROOM_FIELDS: &[Field] = &[
    Field {
        path: "reactors.gossip.rooms[].name",
        comment: "The room's name, also its API path: /rooms/<name>.",
        range: ANY,
        example: Some("\"lobby\""),
    },
    Field {
        path: "reactors.gossip.rooms[].admin",
        comment: "The admin, who may rotate the write key (default: this node).",
        range: ANY,
        example: Some("\"<peer-id>\""),
    },
    Field {
        path: "reactors.gossip.rooms[].write_key",
        comment: "The shared write key at genesis (default: write_key_file's, else the admin's).",
        range: ANY,
        example: Some("\"<peer-id>\""),
    },
    Field {
        path: "reactors.gossip.rooms[].write_key_file",
        comment: "The write key's secret (hex), for a node that may write; relative to data_dir.",
        range: ANY,
        example: Some("\"lobby_write_key.hex\""),
    },
];

/// The file's first lines.
const HEADER: &str = "\
# Switchyard node configuration.
#
# Every field is optional: a field left out takes the default shown in the
# file `switchyard init` writes, and with no file at all the node runs on
# those defaults. Unknown fields are errors, so a typo is reported rather
# than ignored. Durations are written \"500ms\", \"10s\", \"2m\", \"1h\", and are
# longer than zero and at most a year unless a field says otherwise; sizes
# are in bytes. Peer addresses are tcp://<peer-id>@<host>:<port> or
# quic://...; `switchyard id` prints a node's peer id.

";

/// Every field of the file, in order, with its comment and range.
pub(super) const ENTRIES: &[Entry] = &[
    optional(
        "data_dir",
        "Where the key, the peer store and the rooms live. Unset: $SWITCHYARD_HOME, else\n\
         $HOME/.switchyard, else ./.switchyard. Relative to the working directory.",
        "\"/var/lib/switchyard\"",
    ),
    field(
        "network_id",
        "Nodes talk only to nodes with the same network id (at most 242 bytes).",
        ANY,
    ),
    field(
        "key_file",
        "The node's secret key (hex); relative to data_dir unless absolute.",
        ANY,
    ),
    table("p2p", "How this node presents itself to its peers."),
    field(
        "p2p.external_addresses",
        "The addresses announced to peers, which they store and dial, for a node\n\
         behind NAT or listening on 0.0.0.0: e.g. [\"tcp://203.0.113.7:26656\"]\n\
         (this node's PeerId is added). Empty: the listen addresses, without\n\
         0.0.0.0 or ::, which nobody can dial.",
        ANY,
    ),
    table(
        "transports.tcp",
        "TCP with a Noise handshake: the default transport.",
    ),
    field("transports.tcp.enabled", "Run the TCP transport.", ANY),
    field(
        "transports.tcp.listen",
        "Address and port to listen on; 0.0.0.0 accepts from every interface.",
        ANY,
    ),
    field(
        "transports.tcp.handshake_timeout",
        "Deadline for the whole Noise handshake of one connection.",
        DURATION,
    ),
    field(
        "transports.tcp.max_handshakes_per_prefix",
        "Handshakes in progress from one network (an IPv4 /24 or IPv6 /48) at\n\
         most; more are closed at once.",
        AT_LEAST_1,
    ),
    field(
        "transports.tcp.max_handshakes",
        "Handshakes in progress in all at most.",
        AT_LEAST_1,
    ),
    optional(
        "transports.tcp.suites",
        "Cipher suites offered when dialing and accepted when listening, in order of\n\
         preference: \"aesgcm\" (AES-256-GCM) and \"chachapoly\" (ChaCha20-Poly1305).\n\
         A listener takes the first of the dialer's suites it accepts. At least one,\n\
         none twice; leave out \"chachapoly\" and nodes that have nothing else cannot\n\
         connect. Unset: [\"aesgcm\", \"chachapoly\"] on a CPU with AES instructions,\n\
         [\"chachapoly\"] otherwise.",
        "[\"aesgcm\", \"chachapoly\"]",
    ),
    table(
        "transports.quic",
        "QUIC with TLS 1.3 over UDP; each channel gets its own stream.",
    ),
    field("transports.quic.enabled", "Run the QUIC transport.", ANY),
    field(
        "transports.quic.listen",
        "UDP address and port to listen (and dial) from.",
        ANY,
    ),
    field(
        "transports.quic.handshake_timeout",
        "Deadline for the QUIC and TLS handshake of one connection.",
        DURATION,
    ),
    field(
        "transports.quic.idle_timeout",
        "A connection that hears nothing from its peer for this long is dead.",
        DURATION,
    ),
    field(
        "transports.quic.keep_alive_interval",
        "Send a PING after this much quiet; must be below idle_timeout.",
        DURATION,
    ),
    field(
        "transports.quic.max_handshakes_per_prefix",
        "Handshakes in progress from one network (an IPv4 /24 or IPv6 /48) at\n\
         most; more are refused at once.",
        AT_LEAST_1,
    ),
    field(
        "transports.quic.max_handshakes",
        "Handshakes in progress in all at most.",
        AT_LEAST_1,
    ),
    field(
        "transports.quic.max_reassembly_bytes",
        "Bytes of unfinished frames one connection may make us buffer over all its\n\
         streams; more closes it. At least limits.max_frame_size.",
        at_least(MIN_FRAME_SIZE),
    ),
    table(
        "peers",
        "Who to dial at start, and how many connections to keep.",
    ),
    field(
        "peers.bootstrap",
        "Added to the address book at start and dialed like any other peer,\n\
         e.g. [\"tcp://<peer-id>@203.0.113.7:26656\"].",
        ANY,
    ),
    field(
        "peers.persistent",
        "Always redialed, never evicted, admitted even when the limits are full.",
        ANY,
    ),
    field(
        "peers.max_inbound",
        "Connected inbound peers at most (0: accept none).",
        COUNT,
    ),
    field(
        "peers.max_outbound",
        "Connected outbound peers at most; the node dials until it has this many.",
        AT_LEAST_1,
    ),
    field(
        "peers.max_requested_outbound",
        "Outbound connections reactors may add past max_outbound for peers they\n\
         need (gossip neighbours, ring links).",
        COUNT,
    ),
    field(
        "peers.max_inbound_per_prefix",
        "Connected inbound peers from one network (an IPv4 /24 or IPv6 /48) at most.",
        AT_LEAST_1,
    ),
    field(
        "peers.max_ports_per_host",
        "Endpoints one host (IP or name) may have in the address book when\n\
         learned from peers, whatever the port, so one host cannot flood it.",
        AT_LEAST_1,
    ),
    field(
        "peers.allow_private_addresses",
        "Take loopback, private and link-local addresses from peers and the peer\n\
         store. Leave off on a public node; a devnet or private network turns it\n\
         on. Bootstrap, persistent and API addresses may always be private.",
        ANY,
    ),
    field(
        "peers.ban_duration",
        "How long a peer (or a network) that misbehaved badly enough stays banned.",
        DURATION,
    ),
    field(
        "peers.score_half_life",
        "Scores of peers and networks halve every this long: misbehaviour is\n\
         forgiven in time.",
        DURATION,
    ),
    table(
        "limits",
        "The router: timeouts and sizes that apply to every connection.",
    ),
    field(
        "limits.handshake_timeout",
        "Deadline for the Hello exchange that follows the transport's handshake.",
        DURATION,
    ),
    field(
        "limits.dial_timeout",
        "Deadline for dialing one address.",
        DURATION,
    ),
    field(
        "limits.max_pending_handshakes",
        "Inbound Hello exchanges in progress at once; more are refused.",
        AT_LEAST_1,
    ),
    field(
        "limits.max_pending_handshakes_per_prefix",
        "... and from one network (an IPv4 /24 or IPv6 /48), so one cannot take them all.",
        AT_LEAST_1,
    ),
    field(
        "limits.ping_interval",
        "Ping a connection that has received nothing for this long.",
        DURATION,
    ),
    field(
        "limits.pong_timeout",
        "Close a connection that receives nothing for this long after a ping.",
        DURATION,
    ),
    field(
        "limits.close_grace",
        "Time a closing connection gets to send its goodbye.",
        DURATION,
    ),
    field(
        "limits.max_frame_size",
        "Largest frame accepted from a peer, in bytes, on every transport\n\
         (the default is 16 MiB plus framing).",
        between(MIN_FRAME_SIZE, MAX_FRAME_SIZE),
    ),
    field(
        "limits.recv_bytes_per_peer",
        "Bytes one peer may make us hold in receive queues, over all channels\n\
         (what it sent and no reactor took yet, and what its credit allows at\n\
         each channel's largest message). All peers: this times (max_inbound +\n\
         max_outbound + max_requested_outbound + persistent peers + 1).",
        at_least(MIN_FRAME_SIZE),
    ),
    table(
        "reactors.pex",
        "Peer exchange: how a node learns addresses beyond its bootstrap peers.",
    ),
    field("reactors.pex.enabled", "Run peer exchange.", ANY),
    field(
        "reactors.pex.min_peers",
        "Below this many connected peers, ask peers for more addresses; at most\n\
         peers.max_inbound + peers.max_outbound.",
        COUNT,
    ),
    field(
        "reactors.pex.request_interval",
        "Ask one peer at most this often.",
        DURATION,
    ),
    field(
        "reactors.pex.max_addresses_per_response",
        "Addresses sent in one response at most.",
        between(1, reactor_pex::MAX_ADDRESSES_PER_RESPONSE),
    ),
    field(
        "reactors.pex.min_request_gap",
        "A peer asking more often than this is refused and penalised; at most\n\
         request_interval.",
        DURATION,
    ),
    field(
        "reactors.pex.seed_mode",
        "Seed mode, for bootstrap nodes: disconnect an inbound peer once its\n\
         request is answered, so any number of nodes can join through this one.",
        ANY,
    ),
    field(
        "reactors.pex.observed_quorum",
        "Peers tell us the IP they see us at; once this many distinct networks\n\
         (/24, /48) agree, announce it with our listen ports (0: never).\n\
         [p2p] external_addresses win.",
        between(0, reactor_pex::MAX_OBSERVED_QUORUM),
    ),
    table(
        "reactors.gossip",
        "Topic gossip (HyParView + Plumtree) and replicated chat rooms on it.\n\
         The API publishes (POST /gossip/topics/<name>/messages), streams\n\
         (GET .../messages, server-sent events) and reads and writes rooms.",
    ),
    field(
        "reactors.gossip.enabled",
        "Run gossip; with no topic it only answers other nodes.",
        ANY,
    ),
    field(
        "reactors.gossip.topics",
        "Topics joined at start and kept, e.g. [\"chat\"]; the API can join more.",
        ANY,
    ),
    field(
        "reactors.gossip.max_room_state",
        "Largest room state, in bytes.",
        between(MIN_ROOM_STATE, MAX_ROOM_STATE),
    ),
    field(
        "reactors.gossip.max_payload_size",
        "Largest payload published or accepted, in bytes.",
        between(
            1,
            p2p::router::MAX_MESSAGE_SIZE - reactor_gossip::MESSAGE_OVERHEAD,
        ),
    ),
    field(
        "reactors.gossip.active_view",
        "Neighbours per topic (HyParView's active view).",
        between(1, 64),
    ),
    field(
        "reactors.gossip.passive_view",
        "Known members kept per topic (HyParView's passive view).",
        between(0, 1024),
    ),
    field(
        "reactors.gossip.max_topics",
        "Topics joined at once at most, rooms included; at least as many as\n\
         topics and rooms configured.",
        AT_LEAST_1,
    ),
    field(
        "reactors.gossip.origin_rate",
        "Messages per second one origin may have delivered and forwarded here,\n\
         per topic, on average (0: no limit); beyond it they are dropped.",
        COUNT,
    ),
    field(
        "reactors.gossip.origin_burst",
        "Messages one origin may send in a burst (0 only when origin_rate is 0).",
        AT_LEAST_1,
    ),
    field(
        "reactors.gossip.max_origins",
        "Origins whose rate is tracked per topic.",
        between(1, MAX_GOSSIP_ORIGINS),
    ),
    field(
        "reactors.gossip.neighbor_rate",
        "New messages per second one neighbour may push, per topic, whatever their\n\
         origins (bursts of twice that; 0: no limit). Set it above what a topic\n\
         carries.",
        COUNT,
    ),
    field(
        "reactors.gossip.neighbor_new_origins",
        "Origins new to this node per second one neighbour may introduce (bursts\n\
         of ten times that; 0: no limit), so fresh keys do not multiply origin_rate.",
        COUNT,
    ),
    Entry::TableArray {
        path: "reactors.gossip.rooms",
        comment: "Chat rooms opened at start, one table each",
        fields: ROOM_FIELDS,
    },
    table(
        "reactors.ring",
        "The small-world ring: a location negotiated with a gateway, links drawn\n\
         from Kleinberg's distribution, greedy routing. GET /ring shows it.",
    ),
    field("reactors.ring.enabled", "Run the ring.", ANY),
    field(
        "reactors.ring.gateway",
        "Serve as a gateway: fix our own location and negotiate joiners'.",
        ANY,
    ),
    field(
        "reactors.ring.gateways",
        "Gateways to join through and trust, e.g. [\"tcp://<peer-id>@203.0.113.7:26656\"]\n\
         (dialed at start); a node that is not a gateway needs at least one.",
        ANY,
    ),
    field(
        "reactors.ring.target_degree",
        "Below this many neighbours, ask for more links; at most max_degree.",
        at_least(2),
    ),
    field(
        "reactors.ring.max_degree",
        "Above this many, drop the worst-placed links; at least target_degree.",
        COUNT,
    ),
    field(
        "reactors.ring.maintenance_interval",
        "Time between maintenance rounds (± 25 %).",
        DURATION,
    ),
    field(
        "reactors.ring.location_ttl",
        "Gateway: how long a granted location holds (kept in data_dir/ring, so a\n\
         joiner gets the same one until then, across restarts).",
        Range::Duration {
            min: Some(reactor_ring::config::MIN_LOCATION_TTL),
        },
    ),
    field(
        "reactors.ring.max_joins_per_prefix",
        "Gateway: new locations granted to one network per join_quota_window.",
        AT_LEAST_1,
    ),
    field(
        "reactors.ring.join_quota_window",
        "Gateway: the window of max_joins_per_prefix.",
        DURATION,
    ),
    field(
        "reactors.ring.max_neighbors_per_prefix",
        "Neighbours from one network (IPv4 /24, IPv6 /48) at most.",
        AT_LEAST_1,
    ),
    field(
        "reactors.ring.max_load_share",
        "Disconnect a neighbour causing more than this share of the bytes we\n\
         handle for neighbours.",
        Range::Share,
    ),
    table(
        "api",
        "The HTTP API: status, peers, and the reactors' routes.",
    ),
    field("api.enabled", "Serve the API.", ANY),
    field(
        "api.listen",
        "Keep it on loopback: the API can dial and ban peers.",
        ANY,
    ),
    table("metrics", "Prometheus metrics, served at /metrics."),
    optional(
        "metrics.listen",
        "A separate address for /metrics. Unset: on the API's address (and not at\n\
         all when the API is disabled).",
        "\"127.0.0.1:26660\"",
    ),
    table("log", "Logs, written to standard error."),
    field(
        "log.format",
        "\"text\" for people, \"json\" for one JSON object per line.",
        ANY,
    ),
    field(
        "log.filter",
        "Which logs to keep: a tracing filter such as \"info\" or \"info,p2p=debug\".",
        ANY,
    ),
];

impl Range {
    /// The range as the file states it, or `None` when there is nothing
    /// to state (any value, or the default duration range the header
    /// states once).
    pub(super) fn describe(self) -> Option<String> {
        match self {
            Range::Any | Range::Count { min: 0, max: None } | Range::Duration { min: None } => None,
            Range::Count { min, max: None } => Some(format!("at least {min}")),
            Range::Count {
                min,
                max: Some(max),
            } => Some(format!("{min} to {max}")),
            Range::Share => Some("above 0, at most 1".into()),
            Range::Duration { min: Some(min) } => Some(format!(
                "at least {}, at most {}",
                human(min),
                human(MAX_DURATION)
            )),
        }
    }
}

impl Config {
    /// This configuration as a TOML file in which every field appears with
    /// its value, a comment saying what it does and its range; a field
    /// unset here is shown commented out with an example. Parsing the text
    /// gives back this configuration. Paths that are not UTF-8 are written
    /// lossily; a number set in code beyond TOML's 64-bit integers is an
    /// error. [`default_config_toml`] is this for [`Config::default`].
    pub fn to_commented_toml(&self) -> Result<String, ConfigError> {
        let mut config = self.clone();
        let lossy = |path: &std::path::Path| path.to_string_lossy().into_owned().into();
        config.data_dir = config.data_dir.as_deref().map(lossy);
        config.key_file = lossy(&config.key_file);
        for room in &mut config.reactors.gossip.rooms {
            room.write_key_file = room.write_key_file.as_deref().map(lossy);
        }
        let values =
            toml::Table::try_from(&config).map_err(|e| ConfigError::Render(e.to_string()))?;
        let mut out = String::from(HEADER);
        for entry in ENTRIES {
            match entry {
                Entry::Table { path, comment } => {
                    out.push('\n');
                    push_comment(&mut out, comment);
                    let _ = writeln!(out, "[{path}]");
                }
                Entry::Field(field) => push_field(&mut out, field, lookup(&values, field.path)),
                Entry::TableArray {
                    path,
                    comment,
                    fields,
                } => push_table_array(&mut out, path, comment, fields, lookup(&values, path)),
            }
        }
        Ok(out)
    }
}

/// The commented configuration file `switchyard init` writes: every field
/// with its default. Parsing it gives exactly [`Config::default`].
pub fn default_config_toml() -> Result<String, ConfigError> {
    Config::default().to_commented_toml()
}

/// The value at a dotted path of a serialized configuration.
pub(super) fn lookup<'v>(table: &'v toml::Table, path: &str) -> Option<&'v toml::Value> {
    let (parents, key) = match path.rsplit_once('.') {
        Some((parents, key)) => (Some(parents), key),
        None => (None, path),
    };
    let mut table = table;
    for part in parents.into_iter().flat_map(|p| p.split('.')) {
        table = table.get(part)?.as_table()?;
    }
    table.get(key)
}

/// The last segment of a dotted path: the key the file writes.
fn key_of(path: &str) -> &str {
    path.rsplit_once('.').map_or(path, |(_, key)| key)
}

fn push_comment(out: &mut String, comment: &str) {
    for line in comment.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
}

fn push_field(out: &mut String, field: &Field, value: Option<&toml::Value>) {
    push_comment(out, field.comment);
    if let Some(range) = field.range.describe() {
        let _ = writeln!(out, "# Range: {range}.");
    }
    let key = key_of(field.path);
    match (value, field.example) {
        (Some(value), _) => {
            let _ = writeln!(out, "{key} = {}", render(value));
        }
        (None, Some(example)) => {
            let _ = writeln!(out, "# {key} = {example}");
        }
        // Every field without an example has a value (a test checks).
        (None, None) => {}
    }
}

fn push_table_array(
    out: &mut String,
    path: &str,
    comment: &str,
    fields: &[Field],
    values: Option<&toml::Value>,
) {
    let tables: Vec<&toml::Table> = values
        .and_then(toml::Value::as_array)
        .map(|items| items.iter().filter_map(toml::Value::as_table).collect())
        .unwrap_or_default();
    if tables.is_empty() {
        // An example table, commented out as a whole: removing one "# "
        // from each line gives a table with its comments.
        let mut example = toml::Table::new();
        for field in fields {
            if let Some(value) = field.example.and_then(|e| e.parse::<toml::Value>().ok()) {
                example.insert(key_of(field.path).into(), value);
            }
        }
        let mut block = format!("[[{path}]]\n");
        for field in fields {
            push_field(&mut block, field, example.get(key_of(field.path)));
        }
        let _ = writeln!(out, "# {comment}, e.g.:");
        for line in block.lines() {
            let _ = writeln!(out, "# {line}");
        }
        return;
    }
    let _ = writeln!(out, "# {comment}.");
    for values in tables {
        let _ = writeln!(out, "[[{path}]]");
        for field in fields {
            let value = values.get(key_of(field.path));
            if value.is_some() {
                push_field(out, field, value);
            }
        }
    }
}

/// A value as the file writes it: arrays of two or more, one element a
/// line.
fn render(value: &toml::Value) -> String {
    match value {
        toml::Value::Array(items) if items.len() > 1 => {
            let mut out = String::from("[\n");
            for item in items {
                let _ = writeln!(out, "    {item},");
            }
            out.push(']');
            out
        }
        other => other.to_string(),
    }
}
