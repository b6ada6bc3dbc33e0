//! Node identity: an ed25519 [`Keypair`] and the [`PeerId`] derived from it.
//!
//! A `PeerId` *is* the 32-byte ed25519 public key, so anyone holding one can
//! verify a signature from that peer without a lookup. Its text form is
//! lowercase RFC 4648 base32 without padding (52 characters), which is stable,
//! case-insensitive when parsed and safe in URLs and file names.
//!
//! Key files hold the 32-byte secret seed in hex behind a version line. They
//! are written with mode 0600 and refused when group or others can read them,
//! because anyone who reads the file can impersonate the node.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::LazyLock;

use data_encoding::Encoding;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand::{RngCore, SeedableRng};

/// Lowercase base32 (RFC 4648 alphabet) without padding; parsing also
/// accepts upper case.
static PEER_ID_BASE32: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.translate.from.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.translate.to.push_str("abcdefghijklmnopqrstuvwxyz");
    // The specification above is a constant known to be valid.
    #[allow(clippy::expect_used)]
    spec.encoding().expect("valid base32 specification")
});

/// First line of a key file; names the format so it can evolve.
const KEY_FILE_HEADER: &str = "switchyard-ed25519-secret-v1";

/// Length of a PeerId's text form.
pub const PEER_ID_TEXT_LEN: usize = 52;

/// Errors about identities, signatures and key files.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not a 32-byte ed25519 public key.
    #[error("invalid peer id: {0}")]
    InvalidPeerId(String),
    /// A signature did not verify against the claimed peer.
    #[error("signature from peer {peer} does not verify")]
    BadSignature {
        /// The peer that supposedly signed.
        peer: PeerId,
    },
    /// A signature had the wrong length.
    #[error("signature must be 64 bytes, got {0}")]
    SignatureLength(usize),
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    KeyFileIo {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file's content is not a Switchyard key.
    #[error("key file {path}: {reason}")]
    KeyFileFormat {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file can be read by group or others.
    #[error(
        "key file {path} has mode {mode:o}; it must not be readable by group or others (chmod 600)"
    )]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// A peer's identity: its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId([u8; 32]);

impl PeerId {
    /// Builds a PeerId from 32 bytes, checking that they are a valid ed25519
    /// public key (a point on the curve).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| {
            IdentityError::InvalidPeerId(format!("expected 32 bytes, got {}", bytes.len()))
        })?;
        VerifyingKey::from_bytes(&array)
            .map_err(|_| IdentityError::InvalidPeerId("not an ed25519 public key".into()))?;
        Ok(Self(array))
    }

    /// The 32 public-key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 8 characters of the text form, for logs and tables.
    pub fn short(&self) -> String {
        let mut text = self.to_string();
        text.truncate(8);
        text
    }

    /// Verifies `signature` over `message` by this peer.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        let signature = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| IdentityError::SignatureLength(signature.len()))?;
        // Construction validated the key; a failure here can only mean the
        // key was not built through `from_bytes`, which the type prevents.
        let key = VerifyingKey::from_bytes(&self.0)
            .map_err(|_| IdentityError::InvalidPeerId("not an ed25519 public key".into()))?;
        key.verify_strict(message, &signature)
            .map_err(|_| IdentityError::BadSignature { peer: *self })
    }

    /// Verifies a signature made with [`Keypair::sign_in_domain`].
    pub fn verify_in_domain(
        &self,
        domain: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), IdentityError> {
        self.verify(&domain_message(domain, message), signature)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&PEER_ID_BASE32.encode(&self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

impl FromStr for PeerId {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != PEER_ID_TEXT_LEN {
            return Err(IdentityError::InvalidPeerId(format!(
                "expected {PEER_ID_TEXT_LEN} base32 characters, got {}",
                text.len()
            )));
        }
        let bytes = PEER_ID_BASE32
            .decode(text.as_bytes())
            .map_err(|e| IdentityError::InvalidPeerId(format!("bad base32: {e}")))?;
        Self::from_bytes(&bytes)
    }
}

/// An ed25519 keypair: the node's identity.
#[derive(Clone)]
pub struct Keypair {
    secret: SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.peer_id().short())
    }
}

impl Keypair {
    /// A fresh keypair from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Self::from_secret_bytes(seed)
    }

    /// A deterministic keypair for tests and simulations: the same seed gives
    /// the same identity. Never use it for a real node.
    pub fn from_seed(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        rand_chacha::ChaCha12Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
        Self::from_secret_bytes(bytes)
    }

    /// A keypair from its 32-byte secret seed.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        Self {
            secret: SigningKey::from_bytes(&secret),
        }
    }

    /// The 32-byte secret seed. Handle with care.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// This keypair's PeerId.
    pub fn peer_id(&self) -> PeerId {
        PeerId(self.secret.verifying_key().to_bytes())
    }

    /// Signs `message`; the 64-byte signature verifies with [`PeerId::verify`].
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.secret.sign(message).to_bytes()
    }

    /// Signs `message` in a named domain (e.g. `"switchyard/gossip/v1"`), so a
    /// signature made for one purpose cannot be replayed for another.
    pub fn sign_in_domain(&self, domain: &str, message: &[u8]) -> [u8; 64] {
        self.sign(&domain_message(domain, message))
    }

    /// Writes the key to `path` with mode 0600, creating parent directories.
    /// Fails if the file already exists, so a key is never overwritten.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |source| IdentityError::KeyFileIo {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        let text = format!("{KEY_FILE_HEADER}\n{}\n", hex(&self.secret_bytes()));
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads a key written by [`Keypair::save`].
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::KeyFileIo {
            path: path.to_path_buf(),
            source,
        };
        let format = |reason: &str| IdentityError::KeyFileFormat {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::KeyFilePermissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let text = fs::read_to_string(path).map_err(io)?;
        if text.len() > 1024 {
            return Err(format("file is larger than any key file"));
        }
        let mut lines = text.lines();
        if lines.next() != Some(KEY_FILE_HEADER) {
            return Err(format(&format!("first line must be {KEY_FILE_HEADER}")));
        }
        let secret = lines
            .next()
            .and_then(unhex)
            .ok_or_else(|| format("second line must be 64 hex characters"))?;
        Ok(Self::from_secret_bytes(secret))
    }

    /// Loads the key at `path`, or generates and saves one if there is none.
    pub fn load_or_generate(path: &Path) -> Result<Self, IdentityError> {
        if path.exists() {
            Self::load(path)
        } else {
            let key = Self::generate();
            key.save(path)?;
            Ok(key)
        }
    }
}

/// `len(domain) as u64 big-endian ‖ domain ‖ message`: domain separation
/// for signatures. The length prefix makes every (domain, message) pair
/// encode differently, whatever bytes the domain holds.
fn domain_message(domain: &str, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + domain.len() + message.len());
    out.extend_from_slice(&(domain.len() as u64).to_be_bytes());
    out.extend_from_slice(domain.as_bytes());
    out.extend_from_slice(message);
    out
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(text.trim().as_bytes())
        .ok()?
        .try_into()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn peer_id_text_round_trips_and_is_stable() {
        let peer = Keypair::from_seed(7).peer_id();
        let text = peer.to_string();
        assert_eq!(text.len(), PEER_ID_TEXT_LEN);
        assert_eq!(text.parse::<PeerId>().ok(), Some(peer));
        assert_eq!(text.to_uppercase().parse::<PeerId>().ok(), Some(peer));
        // Same seed, same identity, same text: the form is stable.
        assert_eq!(Keypair::from_seed(7).peer_id().to_string(), text);
        assert_ne!(Keypair::from_seed(8).peer_id(), peer);
        assert!(text.starts_with(&peer.short()));
    }

    #[test]
    fn malformed_peer_ids_are_refused_with_a_reason() {
        assert!("abc".parse::<PeerId>().is_err());
        let bad = "1".repeat(PEER_ID_TEXT_LEN);
        assert!(matches!(
            bad.parse::<PeerId>(),
            Err(IdentityError::InvalidPeerId(_))
        ));
        assert!(PeerId::from_bytes(&[0u8; 31]).is_err());
    }

    #[test]
    fn signatures_verify_only_for_the_signer_and_domain() {
        let a = Keypair::from_seed(1);
        let b = Keypair::from_seed(2);
        let sig = a.sign(b"hello");
        assert!(a.peer_id().verify(b"hello", &sig).is_ok());
        assert!(a.peer_id().verify(b"hellO", &sig).is_err());
        assert!(b.peer_id().verify(b"hello", &sig).is_err());
        assert!(a.peer_id().verify(b"hello", &sig[..10]).is_err());
        let dsig = a.sign_in_domain("gossip", b"m");
        assert!(a.peer_id().verify_in_domain("gossip", b"m", &dsig).is_ok());
        assert!(a.peer_id().verify_in_domain("queue", b"m", &dsig).is_err());
        // Shifting bytes between domain and message never verifies.
        let shifted = a.sign_in_domain("ab", b"c");
        assert!(a.peer_id().verify_in_domain("a", b"bc", &shifted).is_err());
    }

    #[test]
    fn key_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/node.key");
        let key = Keypair::generate();
        key.save(&path).expect("save");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(Keypair::load(&path).expect("load").peer_id(), key.peer_id());
        assert!(
            key.save(&path).is_err(),
            "an existing key is never overwritten"
        );
        let again = Keypair::load_or_generate(&path).expect("load existing");
        assert_eq!(again.peer_id(), key.peer_id());
    }

    #[cfg(unix)]
    #[test]
    fn key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        Keypair::generate().save(&path).expect("save");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            Keypair::load(&path),
            Err(IdentityError::KeyFilePermissions { .. })
        ));
    }

    #[test]
    fn garbage_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        fs::write(&path, "not a key\n").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let err = Keypair::load(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("first line"), "{err}");
    }

    proptest! {
        #[test]
        fn any_valid_key_round_trips_through_text(seed in any::<u64>()) {
            let peer = Keypair::from_seed(seed).peer_id();
            prop_assert_eq!(peer.to_string().parse::<PeerId>().ok(), Some(peer));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".{0,80}") {
            let _ = text.parse::<PeerId>();
        }
    }
}
