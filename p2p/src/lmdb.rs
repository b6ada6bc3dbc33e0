//! Opening an LMDB environment (feature `heed`): the one helper every
//! heed store of a node uses (the peer store, the ring's records, the
//! rooms' checkpoints), so the `unsafe` open and its argument live in one
//! place.
//!
//! Each store keeps its own environment in its own directory under the
//! node's data directory, with named databases of raw bytes (keys and
//! values are the store's own encoding, checked when read back).

use std::path::{Path, PathBuf};

use ::heed::types::Bytes;
use ::heed::{Database, Env, EnvOpenOptions};

/// `heed`, for stores in other crates (so they need not pin it).
pub use ::heed;

/// A database of raw bytes.
pub type RawDatabase = Database<Bytes, Bytes>;

/// Why an LMDB environment could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LmdbOpenError {
    /// The directory could not be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The environment or one of its databases could not be opened.
    #[error("cannot open LMDB environment at {path}: {source}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: ::heed::Error,
    },
}

/// Opens (creating if needed) the LMDB environment in directory `dir`,
/// with a map of `map_size` bytes (address space reserved, not disk) and
/// the databases `names` (created if missing), in that order.
///
/// One process may have a directory open once at a time: opening it again
/// while its [`Env`] is alive fails ([`LmdbOpenError::Open`]).
pub fn open<const N: usize>(
    dir: &Path,
    map_size: usize,
    names: [&str; N],
) -> Result<(Env, [RawDatabase; N]), LmdbOpenError> {
    let path = dir.to_path_buf();
    std::fs::create_dir_all(dir).map_err(|source| LmdbOpenError::CreateDir {
        path: path.clone(),
        source,
    })?;
    let open_error = |source| LmdbOpenError::Open {
        path: path.clone(),
        source,
    };
    let mut options = EnvOpenOptions::new();
    let max_dbs = u32::try_from(N).unwrap_or(u32::MAX);
    options.map_size(map_size).max_dbs(max_dbs);
    // SAFETY: LMDB memory-maps the data file; modifying that file outside
    // LMDB while it is mapped is undefined behaviour. The directory is the
    // node's own and only written through LMDB (whose lock file
    // coordinates processes), and heed refuses a second open of the same
    // path in this process.
    #[allow(unsafe_code)]
    let env = unsafe { options.open(dir) }.map_err(open_error)?;
    let mut wtxn = env.write_txn().map_err(open_error)?;
    let mut dbs = Vec::with_capacity(N);
    for name in names {
        let db: RawDatabase = env
            .create_database(&mut wtxn, Some(name))
            .map_err(open_error)?;
        dbs.push(db);
    }
    wtxn.commit().map_err(open_error)?;
    let dbs =
        <[RawDatabase; N]>::try_from(dbs).unwrap_or_else(|_| unreachable!("one database per name"));
    Ok((env, dbs))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_environment_opens_with_its_databases_once_per_process() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("a/b");
        let (env, [one, two]) = open(&at, 1024 * 1024, ["one", "two"]).unwrap();
        let mut wtxn = env.write_txn().unwrap();
        one.put(&mut wtxn, b"k", b"1").unwrap();
        wtxn.commit().unwrap();
        let rtxn = env.read_txn().unwrap();
        assert_eq!(one.get(&rtxn, b"k").unwrap(), Some(&b"1"[..]));
        assert_eq!(two.get(&rtxn, b"k").unwrap(), None);
        drop(rtxn);
        assert!(matches!(
            open(&at, 1024 * 1024, ["one"]),
            Err(LmdbOpenError::Open { .. })
        ));
        drop(env);
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let error = open(&file.join("under"), 1024 * 1024, ["one"]).unwrap_err();
        assert!(matches!(error, LmdbOpenError::CreateDir { .. }), "{error}");
    }
}
