//! `switchyard room new NAME`: a room's write key and the config block
//! that opens the room.
//!
//! A room is named by its admin's PeerId and its name; its updates are
//! signed with a shared **write key** (ed25519) that the admin may replace
//! (`reactor_gossip::room`). [`new_room`] makes that key, saves it
//! (mode 0600, never over an existing file) and returns the
//! `[[reactors.gossip.rooms]]` block to paste into the `config.toml` of
//! every node of the room: the nodes that write keep `write_key_file` and
//! get a copy of the key file, the others drop that line.

use std::path::{Path, PathBuf};

use anyhow::Context;
use p2p::{Keypair, PeerId};

use crate::config::Config;

/// Where a room's write key goes by default, under the data directory.
pub const ROOM_KEYS_DIR: &str = "room-keys";

/// What [`new_room`] made.
#[derive(Debug, Clone)]
pub struct NewRoom {
    /// The write key's PeerId (its public half).
    pub write_key: PeerId,
    /// The admin's PeerId.
    pub admin: PeerId,
    /// Where the write key's secret was saved.
    pub key_path: PathBuf,
    /// The config block, with comments: valid TOML to append to a
    /// `config.toml`.
    pub block: String,
}

/// Makes a write key for the room `name` and the config block that opens
/// it. The admin is `admin`, else this node (whose key must exist, as for
/// `switchyard id`). The key goes to `key_file` (relative to the working
/// directory), else `<data_dir>/room-keys/<name>.key` (written relative to
/// the data directory in the block); an existing file is never
/// overwritten.
pub fn new_room(
    config: &Config,
    name: &str,
    admin: Option<PeerId>,
    key_file: Option<&Path>,
) -> anyhow::Result<NewRoom> {
    if let Some(problem) = crate::config::name_problem(name) {
        anyhow::bail!("room name {problem}");
    }
    let admin = match admin {
        Some(admin) => admin,
        None => node_peer_id(config)?,
    };
    let (key_path, written) = match key_file {
        Some(path) => {
            let path = if path.is_absolute() {
                path.to_path_buf()
            } else {
                std::env::current_dir()
                    .context("the working directory")?
                    .join(path)
            };
            (path.clone(), path)
        }
        None => {
            let relative = Path::new(ROOM_KEYS_DIR).join(format!("{}.key", file_stem(name)));
            (config.data_dir().join(&relative), relative)
        }
    };
    if key_path.exists() {
        anyhow::bail!(
            "{} exists (a key is never overwritten); name another file with --key-file",
            key_path.display()
        );
    }
    let key = Keypair::generate();
    key.save(&key_path).context("write key")?;
    let write_key = key.peer_id();
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let block = format!(
        "# Room {name:?}: paste into the config.toml of every node in the room.\n\
         # Nodes that write keep write_key_file and need a copy of {file}\n\
         # (secret: whoever holds it can write); the others drop that line.\n\
         [[reactors.gossip.rooms]]\n\
         name = {name_value}\n\
         admin = {admin_value}\n\
         write_key = {write_value}\n\
         write_key_file = {file_value}\n",
        file = key_path.display(),
        name_value = quote(name),
        admin_value = quote(&admin.to_string()),
        write_value = quote(&write_key.to_string()),
        file_value = quote(&written.display().to_string()),
    );
    Ok(NewRoom {
        write_key,
        admin,
        key_path,
        block,
    })
}

/// This node's PeerId, from its key (created by `init` or the first `run`).
fn node_peer_id(config: &Config) -> anyhow::Result<PeerId> {
    let path = config.key_path();
    if !path.exists() {
        anyhow::bail!(
            "no node key at {}: `switchyard init` creates one (the room's admin is this node), or name the admin with --admin",
            path.display()
        );
    }
    Ok(Keypair::load(&path).context("node key")?.peer_id())
}

/// A file name for a room name: its letters, digits, `-`, `_` and `.`,
/// anything else as `_`, never starting with a dot.
fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.starts_with('.') {
        format!("room{stem}")
    } else {
        stem
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_block_parses_as_config_and_names_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: Some(dir.path().to_path_buf()),
            ..Config::default()
        };
        // Without a node key (and no --admin): said, nothing written.
        let error = new_room(&config, "lobby", None, None).unwrap_err();
        assert!(error.to_string().contains("switchyard init"), "{error}");
        assert!(!dir.path().join(ROOM_KEYS_DIR).exists());
        let node = crate::launch::load_key(&config).unwrap();
        let name = "a \"quoted\" room\\";
        let made = new_room(&config, name, None, None).unwrap();
        assert_eq!(made.admin, node.peer_id());
        assert_eq!(
            made.key_path,
            dir.path().join("room-keys/a__quoted__room_.key")
        );
        assert_eq!(
            Keypair::load(&made.key_path).unwrap().peer_id(),
            made.write_key
        );
        let parsed: Config = toml::from_str(&made.block).unwrap();
        let room = &parsed.reactors.gossip.rooms[0];
        assert_eq!(room.name, name);
        assert_eq!(room.admin, Some(node.peer_id().to_string()));
        assert_eq!(room.write_key, Some(made.write_key.to_string()));
        assert_eq!(
            room.write_key_file.as_deref(),
            Some(Path::new("room-keys/a__quoted__room_.key"))
        );
        // Never over an existing key; a bad name is refused.
        let again = new_room(&config, name, None, None).unwrap_err();
        assert!(again.to_string().contains("never overwritten"), "{again}");
        assert!(new_room(&config, "a/b", None, None).is_err());
        // Another admin, and a key file elsewhere.
        let admin = Keypair::from_seed(9).peer_id();
        let file = dir.path().join("elsewhere/x.key");
        let made = new_room(&config, "..", Some(admin), Some(&file)).unwrap();
        assert_eq!((made.admin, &made.key_path), (admin, &file));
        let parsed: Config = toml::from_str(&made.block).unwrap();
        assert_eq!(
            parsed.reactors.gossip.rooms[0].write_key_file.as_deref(),
            Some(file.as_path())
        );
        assert_eq!(file_stem(".."), "room..");
    }
}
