//! Cipher suites: the Noise protocols a connection can run, their ids on
//! the wire and names in configurations, and the order a node prefers by
//! default.
//!
//! Two suites, both Noise XX over X25519 (ADR 0004, section 2a):
//!
//! | suite | id | name | cipher, hash |
//! |---|---|---|---|
//! | [`CipherSuite::ChaChaPoly`] | `0x01` | `chachapoly` | ChaCha20-Poly1305, BLAKE2s |
//! | [`CipherSuite::AesGcm`] | `0x02` | `aesgcm` | AES-256-GCM, SHA-256 |
//!
//! `Noise_XX_25519_ChaChaPoly_BLAKE2s` is mandatory to implement: it is the
//! fallback, and the suite of CPUs without AES hardware, where AES in
//! software is slow. AES-256-GCM is worth it only when both ends have AES
//! and carry-less multiply instructions ([`aes_hardware`]), so a node
//! offers it by default only then ([`CipherSuite::default_preference`]).

use std::fmt;
use std::str::FromStr;

/// A Noise protocol a connection runs: pattern XX, X25519, and a cipher
/// and hash pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// `Noise_XX_25519_ChaChaPoly_BLAKE2s`: mandatory to implement; the
    /// fallback, and the default of CPUs without AES hardware.
    ChaChaPoly,
    /// `Noise_XX_25519_AESGCM_SHA256`, AES-256-GCM: the default first
    /// choice of CPUs with AES and carry-less multiply instructions.
    AesGcm,
}

impl CipherSuite {
    /// Every suite this implementation knows, in id order.
    pub const ALL: [CipherSuite; 2] = [CipherSuite::ChaChaPoly, CipherSuite::AesGcm];

    /// The suite's byte in the preamble (ADR 0004, section 2a). `0x00` is
    /// reserved and never a suite.
    pub const fn id(self) -> u8 {
        match self {
            Self::ChaChaPoly => 0x01,
            Self::AesGcm => 0x02,
        }
    }

    /// The suite of a preamble byte, if this implementation knows it.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            0x01 => Some(Self::ChaChaPoly),
            0x02 => Some(Self::AesGcm),
            _ => None,
        }
    }

    /// The Noise protocol name, e.g. `Noise_XX_25519_AESGCM_SHA256`.
    pub const fn noise_name(self) -> &'static str {
        match self {
            Self::ChaChaPoly => "Noise_XX_25519_ChaChaPoly_BLAKE2s",
            Self::AesGcm => "Noise_XX_25519_AESGCM_SHA256",
        }
    }

    /// The name in configurations and logs: the Noise cipher name in lower
    /// case (`chachapoly`, `aesgcm`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::ChaChaPoly => "chachapoly",
            Self::AesGcm => "aesgcm",
        }
    }

    /// The suites a node offers and accepts unless configured otherwise,
    /// in order of preference: AES-GCM then ChaCha on a CPU with AES and
    /// carry-less multiply instructions ([`aes_hardware`]), ChaCha alone
    /// otherwise. AES in software costs several times ChaCha, so a node
    /// without the instructions does not accept it by default: a peer that
    /// prefers AES-GCM then agrees on ChaCha with it.
    pub fn default_preference() -> Vec<CipherSuite> {
        if aes_hardware() {
            vec![Self::AesGcm, Self::ChaChaPoly]
        } else {
            vec![Self::ChaChaPoly]
        }
    }
}

impl fmt::Display for CipherSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A suite name that is not `chachapoly` or `aesgcm`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cipher suite {0:?}; the suites are \"aesgcm\" and \"chachapoly\"")]
pub struct UnknownSuite(pub String);

impl FromStr for CipherSuite {
    type Err = UnknownSuite;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|suite| suite.name() == s)
            .ok_or_else(|| UnknownSuite(s.to_string()))
    }
}

/// Whether this CPU has the instructions that make AES-GCM fast: AES and
/// carry-less multiplication (x86: `aes` and `pclmulqdq`; aarch64: `aes`
/// and `pmull`), detected at run time. `false` on other architectures.
pub fn aes_hardware() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Checks a list of suites to offer and accept: at least one, at most
/// [`MAX_OFFERED_SUITES`](crate::preamble::MAX_OFFERED_SUITES), none twice.
pub fn check_suites(suites: &[CipherSuite]) -> Result<(), String> {
    if suites.is_empty() {
        return Err("no cipher suite: name at least one of \"aesgcm\", \"chachapoly\"".into());
    }
    if suites.len() > crate::preamble::MAX_OFFERED_SUITES {
        return Err(format!(
            "{} cipher suites; at most {} fit in the preamble",
            suites.len(),
            crate::preamble::MAX_OFFERED_SUITES
        ));
    }
    for (i, suite) in suites.iter().enumerate() {
        if suites[..i].contains(suite) {
            return Err(format!("cipher suite {suite} is named twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_and_noise_names_round_trip() {
        for suite in CipherSuite::ALL {
            assert_eq!(CipherSuite::from_id(suite.id()), Some(suite));
            assert_eq!(suite.name().parse::<CipherSuite>(), Ok(suite));
            assert_eq!(suite.to_string(), suite.name());
            let params: snow::params::NoiseParams =
                suite.noise_name().parse().expect("snow parses the name");
            assert_eq!(params.name, suite.noise_name());
        }
        assert_eq!(CipherSuite::from_id(0), None);
        assert_eq!(CipherSuite::from_id(3), None);
        let err = "aes".parse::<CipherSuite>().expect_err("unknown");
        assert!(err.to_string().contains("aesgcm"), "{err}");
    }

    #[test]
    fn the_default_follows_the_hardware_and_always_ends_with_chacha() {
        let default = CipherSuite::default_preference();
        assert_eq!(default.last(), Some(&CipherSuite::ChaChaPoly));
        assert_eq!(default.contains(&CipherSuite::AesGcm), aes_hardware());
        assert_eq!(check_suites(&default), Ok(()));
    }

    #[test]
    fn suite_lists_are_checked() {
        use CipherSuite::*;
        assert!(check_suites(&[]).is_err());
        assert!(check_suites(&[AesGcm, AesGcm]).is_err());
        assert!(check_suites(&[ChaChaPoly, AesGcm, ChaChaPoly]).is_err());
        assert_eq!(check_suites(&[AesGcm]), Ok(()));
        assert_eq!(check_suites(&[ChaChaPoly, AesGcm]), Ok(()));
    }
}
