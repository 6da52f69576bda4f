//! Expected file digests ([`Checksum`]: MD5 or SHA-256) and the streaming hasher behind them.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use md5::{Digest, Md5};
use sha2::Sha256;

use super::error::{io_error, DataError};

/// An expected digest of a file, as lowercase or uppercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Checksum {
    /// MD5 (32 hex digits).
    Md5(String),
    /// SHA-256 (64 hex digits).
    Sha256(String),
}

impl Checksum {
    /// The algorithm name: `"md5"` or `"sha256"`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Md5(_) => "md5",
            Checksum::Sha256(_) => "sha256",
        }
    }

    /// The expected digest as given.
    pub fn hex(&self) -> &str {
        match self {
            Checksum::Md5(h) | Checksum::Sha256(h) => h,
        }
    }

    fn hex_len(&self) -> usize {
        match self {
            Checksum::Md5(_) => 32,
            Checksum::Sha256(_) => 64,
        }
    }

    /// The digest of `bytes` with this checksum's algorithm, as lowercase hex.
    pub fn digest(&self, bytes: &[u8]) -> String {
        let mut h = Hasher::new(self);
        h.update(bytes);
        h.finish()
    }

    /// Checks `bytes` against the expected digest (hex compared case-insensitively).
    pub fn verify(&self, bytes: &[u8]) -> Result<(), DataError> {
        self.check("data", &self.digest(bytes))
    }

    /// Checks a file against the expected digest, reading it in chunks.
    pub fn verify_file(&self, path: &Path) -> Result<(), DataError> {
        let mut file = File::open(path).map_err(io_error(path))?;
        let mut hasher = Hasher::new(self);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(path)(e)),
            };
            hasher.update(&buf[..n]);
        }
        self.check(&path.display().to_string(), &hasher.finish())
    }

    /// Compares an actual lowercase-hex digest of `what` with the expected one.
    pub(super) fn check(&self, what: &str, actual: &str) -> Result<(), DataError> {
        let expected = self.hex().trim();
        if expected.len() != self.hex_len() || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DataError::Format {
                what: format!("expected {} checksum `{}`", self.algorithm(), self.hex()),
                detail: format!(
                    "an {} digest is {} hex digits (0-9, a-f)",
                    self.algorithm(),
                    self.hex_len()
                ),
            });
        }
        if expected.eq_ignore_ascii_case(actual) {
            Ok(())
        } else {
            Err(DataError::Checksum {
                what: what.to_string(),
                expected: format!("{}:{}", self.algorithm(), expected.to_ascii_lowercase()),
                actual: format!("{}:{actual}", self.algorithm()),
            })
        }
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex())
    }
}

impl FromStr for Checksum {
    type Err = DataError;

    /// Parses `md5:HEX`, `sha256:HEX`, or bare hex (32 digits: MD5, 64 digits: SHA-256).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let checksum = match s.split_once(':') {
            Some((alg, hex)) if alg.eq_ignore_ascii_case("md5") => Checksum::Md5(hex.into()),
            Some((alg, hex)) if alg.eq_ignore_ascii_case("sha256") => Checksum::Sha256(hex.into()),
            None if s.len() == 32 => Checksum::Md5(s.into()),
            None if s.len() == 64 => Checksum::Sha256(s.into()),
            _ => {
                return Err(DataError::Format {
                    what: format!("checksum `{s}`"),
                    detail: "expected md5:<32 hex digits>, sha256:<64 hex digits>, \
                             or bare hex of one of those lengths"
                        .into(),
                })
            }
        };
        let hex = checksum.hex();
        if hex.len() != checksum.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DataError::Format {
                what: format!("checksum `{s}`"),
                detail: format!(
                    "an {} digest is {} hex digits",
                    checksum.algorithm(),
                    checksum.hex_len()
                ),
            });
        }
        Ok(checksum)
    }
}

/// A running digest with a [`Checksum`]'s algorithm.
pub(super) enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    pub(super) fn new(checksum: &Checksum) -> Self {
        match checksum {
            Checksum::Md5(_) => Hasher::Md5(Md5::new()),
            Checksum::Sha256(_) => Hasher::Sha256(Sha256::new()),
        }
    }

    pub(super) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    pub(super) fn finish(self) -> String {
        match self {
            Hasher::Md5(h) => to_hex(&h.finalize()),
            Hasher::Sha256(h) => to_hex(&h.finalize()),
        }
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        let md5 = Checksum::Md5("900150983CD24FB0D6963F7D28E17F72".into());
        md5.verify(b"abc").unwrap();
        assert!(matches!(
            md5.verify(b"abd"),
            Err(DataError::Checksum { .. })
        ));
        let sha: Checksum =
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                .parse()
                .unwrap();
        sha.verify(b"abc").unwrap();
        assert_eq!(sha.to_string().len(), 7 + 64);
        assert_eq!(
            "900150983cd24fb0d6963f7d28e17f72"
                .parse::<Checksum>()
                .unwrap(),
            Checksum::Md5("900150983cd24fb0d6963f7d28e17f72".into())
        );
        assert!("md5:123".parse::<Checksum>().is_err());
        assert!(matches!(
            Checksum::Md5("xyz".into()).verify(b"abc"),
            Err(DataError::Format { .. })
        ));
    }
}
