//! CIFAR-10 data sets: loading, checking, subsetting and converting to model input.
//!
//! Everything is read from the CIFAR-10 *binary* format: each record is one label byte
//! (`0..=9`, an index into [`CLASS_NAMES`]) followed by [`IMAGE_BYTES`] = 3072 pixel bytes,
//! three 32×32 row-major planes (1024 red, 1024 green, 1024 blue). A [`Dataset`] keeps the
//! images in that planar layout and hands them to models as `f32` NHWC batches
//! ([`Dataset::fill_nhwc`], [`Dataset::nhwc_batch`]) holding the raw 0..255 pixel values.
//!
//! Sources:
//! * the sets bundled in `<root>/data/cifar10/` ([`Dataset::bundled`], see [`Bundled`]): the
//!   10,000-image test set decoded from a JPEG-q75 copy (so *not* bit-identical to the official
//!   test set), 249 lossless test images with their original test indices, and the first 4,000
//!   training images (lossless);
//! * loose `.bin` files ([`Dataset::from_bin_file`], [`Dataset::from_bin_files`]);
//! * a directory in the official layout ([`Dataset::from_dir`]);
//! * a `.tar.gz` like the official `cifar-10-binary.tar.gz` ([`Dataset::from_archive`]),
//!   read straight from the compressed stream;
//! * a URL of such an archive, downloaded once into a cache folder and checked against a
//!   [`Checksum`] ([`Dataset::from_url`]).
//!
//! [`Dataset::open`] picks one of these from a short text spec (see [`SPEC_FORMS`]).
//! A `Dataset` is cheap to clone: the pixel and label buffers are shared.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use ndarray::Array4;
use sha2::Sha256;

/// The ten CIFAR-10 classes, indexed by label (as in the dataset's `batches.meta.txt`).
pub const CLASS_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Number of classes (labels are `0..NUM_CLASSES`).
pub const NUM_CLASSES: usize = 10;

/// Image height and width in pixels.
pub const IMAGE_SIDE: usize = 32;

/// Pixels per colour plane (32 × 32).
pub const PLANE_BYTES: usize = IMAGE_SIDE * IMAGE_SIDE;

/// Bytes of one image: three planes (R, G, B) of 32 × 32 bytes.
pub const IMAGE_BYTES: usize = 3072;

/// Bytes of one binary record: the label byte plus the image.
pub const RECORD_BYTES: usize = IMAGE_BYTES + 1;

/// Number of images in the official CIFAR-10 test set (original test indices are below this).
pub const TEST_SET_SIZE: usize = 10_000;

/// Where the dataset authors publish the binary version.
pub const OFFICIAL_ARCHIVE_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

/// MD5 of the official `cifar-10-binary.tar.gz`, as published on the CIFAR-10 page.
///
/// (`c58f30108f718f92721af3b95e74349a`, often quoted, is the md5 of the *Python* version,
/// `cifar-10-python.tar.gz`.)
pub const OFFICIAL_ARCHIVE_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

/// The folder the official archive keeps its `.bin` members in.
pub const ARCHIVE_FOLDER: &str = "cifar-10-batches-bin";

/// The accepted forms of a [`Dataset::open`] spec, as shown in error messages.
pub const SPEC_FORMS: &str = "`test` (bundled JPEG-q75 test set, 10,000 images), \
`lossless249` (bundled 249 lossless test images), `train4000` (bundled first 4,000 training \
images), an http:// or https:// URL of a cifar-10-binary.tar.gz-style archive, a path to a \
.bin file of CIFAR-10 records, a directory holding test_batch.bin / data_batch_1..5.bin \
(directly or in cifar-10-batches-bin/), or a path to a .tar.gz / .tgz archive; directories, \
archives and URLs take an optional split suffix `#test` (default) or `#train`";

/// The name of a class label, or `"?"` for a label outside `0..=9`.
pub fn class_name(label: u8) -> &'static str {
    CLASS_NAMES.get(usize::from(label)).copied().unwrap_or("?")
}

/// Everything that can go wrong while finding, fetching or decoding a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read or written.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Bytes that are not valid CIFAR-10 data (or a corrupt archive / index file).
    #[error("{what}: {detail}")]
    Format {
        /// The file, archive member or data set name.
        what: String,
        /// What is wrong, with the allowed values.
        detail: String,
    },
    /// A file's digest differs from the expected one.
    #[error("checksum mismatch for {what}: expected {expected}, got {actual}")]
    Checksum {
        /// The file or URL checked.
        what: String,
        /// The expected digest, `algorithm:hex`.
        expected: String,
        /// The actual digest, `algorithm:hex`.
        actual: String,
    },
    /// A download failed (connection, HTTP status, interrupted body).
    #[error("download of {url} failed: {detail}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// Expected files (or archive members) are missing.
    #[error("{what} not found: expected {expected}; found {found}")]
    NotFound {
        /// What was looked for, and where.
        what: String,
        /// The files that would have been accepted.
        expected: String,
        /// What is there instead.
        found: String,
    },
    /// A class has fewer records than requested (see [`Dataset::stratified`]).
    #[error(
        "{dataset} has only {available} images of class {label} ({class}), \
         {requested} requested per class"
    )]
    TooFew {
        /// The data set name.
        dataset: String,
        /// The class label.
        label: u8,
        /// The class name.
        class: &'static str,
        /// Records of that class in the data set.
        available: usize,
        /// Records requested per class.
        requested: usize,
    },
    /// A [`Dataset::open`] spec that names no data set.
    #[error("cannot open data set `{spec}`: {reason}; accepted forms: {SPEC_FORMS}")]
    BadSpec {
        /// The spec as given.
        spec: String,
        /// Why it was rejected.
        reason: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    fs::read(path).map_err(io_error(path))
}

// ---------------------------------------------------------------------------------------------
// Checksums

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
    fn check(&self, what: &str, actual: &str) -> Result<(), DataError> {
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

enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    fn new(checksum: &Checksum) -> Self {
        match checksum {
            Checksum::Md5(_) => Hasher::Md5(Md5::new()),
            Checksum::Sha256(_) => Hasher::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(self) -> String {
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

// ---------------------------------------------------------------------------------------------
// Splits and bundled sets

/// Which half of the official data set to read from a directory, archive or URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Split {
    /// `test_batch.bin`: 10,000 images.
    #[default]
    Test,
    /// `data_batch_1.bin` … `data_batch_5.bin`: 50,000 images, in that order. Directories and
    /// archives holding only some of the five batches give the ones present, in order.
    Train,
}

impl Split {
    /// The official member files of this split, in load order.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            Split::Test => &["test_batch.bin"],
            Split::Train => &[
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
            ],
        }
    }

    /// What a directory or archive must hold for this split, for error messages.
    fn expected(self) -> &'static str {
        match self {
            Split::Test => "test_batch.bin",
            Split::Train => "one or more of data_batch_1.bin … data_batch_5.bin",
        }
    }

    /// The description of a data set read from `source` with `files` of this split's files.
    fn describe(self, files: usize, source: &str) -> String {
        let total = self.files().len();
        if files < total {
            format!("CIFAR-10 {self} split ({files} of {total} data batches) from {source}")
        } else {
            format!("CIFAR-10 {self} split from {source}")
        }
    }

    /// `"test"` or `"train"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Test => "test",
            Split::Train => "train",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = DataError;

    /// Parses `test` or `train` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "test" => Ok(Split::Test),
            "train" => Ok(Split::Train),
            _ => Err(DataError::Format {
                what: format!("split `{s}`"),
                detail: "expected `test` or `train`".into(),
            }),
        }
    }
}

/// The data sets shipped in `<root>/data/cifar10/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bundled {
    /// The 10,000-image test set, decoded from a JPEG-q75 copy (not lossless).
    Test,
    /// 249 lossless test images, with their original test-set indices.
    Lossless249,
    /// The first 4,000 training images, lossless.
    Train4000,
}

/// The bundled index file mapping each `Lossless249` record to its original test index.
pub const LOSSLESS249_INDEX_FILE: &str = "test_lossless_subset_249_indices.csv";

impl Bundled {
    /// All bundled sets.
    pub const ALL: [Bundled; 3] = [Bundled::Test, Bundled::Lossless249, Bundled::Train4000];

    /// The short name, also the [`Dataset::open`] spec: `test`, `lossless249`, `train4000`.
    pub fn name(self) -> &'static str {
        match self {
            Bundled::Test => "test",
            Bundled::Lossless249 => "lossless249",
            Bundled::Train4000 => "train4000",
        }
    }

    /// The records file inside `<root>/data/cifar10/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Bundled::Test => "test_batch_jpeg75.bin",
            Bundled::Lossless249 => "test_lossless_subset_249.bin",
            Bundled::Train4000 => "train_first4000_lossless.bin",
        }
    }

    /// A one-line description, used as [`Dataset::description`].
    pub fn description(self) -> &'static str {
        match self {
            Bundled::Test => "CIFAR-10 test, JPEG-q75 copy (10,000 images)",
            Bundled::Lossless249 => "CIFAR-10 test, 249 lossless images",
            Bundled::Train4000 => "CIFAR-10 train, first 4,000 (lossless)",
        }
    }

    /// The official split the images come from.
    pub fn split(self) -> Split {
        match self {
            Bundled::Test | Bundled::Lossless249 => Split::Test,
            Bundled::Train4000 => Split::Train,
        }
    }

    /// The bundled set with this [`name`](Self::name) (case-insensitive).
    pub fn from_name(name: &str) -> Option<Bundled> {
        Self::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(name.trim()))
    }
}

impl fmt::Display for Bundled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Dataset

/// A labelled set of CIFAR-10 images, held in memory in the binary format's planar layout.
///
/// Cloning shares the buffers. Indices passed to the accessors are positions in this data set;
/// [`original_index`](Self::original_index) maps them back to the source (e.g. the official
/// test-set index for `lossless249` and for subsets).
#[derive(Clone)]
pub struct Dataset {
    name: String,
    description: String,
    images: Arc<[u8]>,
    labels: Arc<[u8]>,
    original_indices: Option<Arc<[usize]>>,
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("len", &self.len())
            .finish()
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} — {} images",
            self.name,
            self.description,
            self.len()
        )
    }
}

/// Appends the records in `bytes` to `images` / `labels`, checking size and labels.
fn parse_records(
    what: &str,
    bytes: &[u8],
    images: &mut Vec<u8>,
    labels: &mut Vec<u8>,
) -> Result<(), DataError> {
    let format = |detail: String| DataError::Format {
        what: what.to_string(),
        detail,
    };
    if bytes.is_empty() {
        return Err(format(format!(
            "no records: expected one or more CIFAR-10 records of {RECORD_BYTES} bytes \
             (1 label byte + {IMAGE_BYTES} pixel bytes)"
        )));
    }
    let trailing = bytes.len() % RECORD_BYTES;
    if trailing != 0 {
        return Err(format(format!(
            "length {} bytes is not a multiple of the CIFAR-10 record size {RECORD_BYTES} \
             (1 label byte + {IMAGE_BYTES} pixel bytes): {} whole records and {trailing} \
             trailing bytes (truncated, or not CIFAR-10 binary data)",
            bytes.len(),
            bytes.len() / RECORD_BYTES,
        )));
    }
    let (records, _) = bytes.as_chunks::<RECORD_BYTES>();
    images.reserve(records.len() * IMAGE_BYTES);
    labels.reserve(records.len());
    for (i, record) in records.iter().enumerate() {
        let label = record[0];
        if usize::from(label) >= NUM_CLASSES {
            return Err(format(format!(
                "record {i} (byte offset {}) has label {label}; labels must be 0..=9 \
                 (records are {RECORD_BYTES} bytes: 1 label byte + {IMAGE_BYTES} pixel bytes)",
                i * RECORD_BYTES
            )));
        }
        labels.push(label);
        images.extend_from_slice(&record[1..]);
    }
    Ok(())
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Lists up to 20 entries of `dir` (folders with a trailing `/`), prefixed with `prefix`.
fn list_dir(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| {
            let slash = if e.path().is_dir() { "/" } else { "" };
            format!("{prefix}{}{slash}", e.file_name().to_string_lossy())
        })
        .collect();
    names.sort();
    out.extend(names);
}

fn summarize(mut items: Vec<String>) -> String {
    if items.is_empty() {
        return "nothing".into();
    }
    const SHOWN: usize = 20;
    let more = items.len().saturating_sub(SHOWN);
    items.truncate(SHOWN);
    let mut s = items.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

impl Dataset {
    fn from_parts(
        name: String,
        description: String,
        images: Vec<u8>,
        labels: Vec<u8>,
        original_indices: Option<Vec<usize>>,
    ) -> Dataset {
        debug_assert_eq!(images.len(), labels.len() * IMAGE_BYTES);
        Dataset {
            name,
            description,
            images: images.into(),
            labels: labels.into(),
            original_indices: original_indices.map(Into::into),
        }
    }

    /// Decodes CIFAR-10 binary records. `name` names the data set and appears in errors.
    ///
    /// Fails unless `bytes` is a non-empty whole number of 3073-byte records with labels 0..=9.
    pub fn from_bin_bytes(name: &str, bytes: &[u8]) -> Result<Dataset, DataError> {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        parse_records(name, bytes, &mut images, &mut labels)?;
        Ok(Self::from_parts(
            name.into(),
            name.into(),
            images,
            labels,
            None,
        ))
    }

    /// Reads a `.bin` file of CIFAR-10 records. The name is the file name, the description the
    /// path.
    pub fn from_bin_file(path: &Path) -> Result<Dataset, DataError> {
        let bytes = read_file(path)?;
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        parse_records(
            &path.display().to_string(),
            &bytes,
            &mut images,
            &mut labels,
        )?;
        Ok(Self::from_parts(
            display_name(path),
            path.display().to_string(),
            images,
            labels,
            None,
        ))
    }

    /// Reads several `.bin` files and concatenates their records in the given order. Each file
    /// is checked on its own, and errors name the file.
    pub fn from_bin_files(name: &str, paths: &[PathBuf]) -> Result<Dataset, DataError> {
        if paths.is_empty() {
            return Err(DataError::Format {
                what: name.into(),
                detail: "no .bin files given".into(),
            });
        }
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for path in paths {
            let bytes = read_file(path)?;
            parse_records(
                &path.display().to_string(),
                &bytes,
                &mut images,
                &mut labels,
            )?;
        }
        let description = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        Ok(Self::from_parts(
            name.into(),
            description,
            images,
            labels,
            None,
        ))
    }

    /// Reads a split from a directory in the official layout: `test_batch.bin` or
    /// `data_batch_1.bin` … `data_batch_5.bin`, either directly in `dir` or in its
    /// `cifar-10-batches-bin/` subfolder (the first of the two holding any of the split's
    /// files). The train split takes whichever of the five batches are present, in order.
    pub fn from_dir(dir: &Path, split: Split) -> Result<Dataset, DataError> {
        for base in [dir.to_path_buf(), dir.join(ARCHIVE_FOLDER)] {
            let paths: Vec<PathBuf> = split
                .files()
                .iter()
                .map(|f| base.join(f))
                .filter(|p| p.is_file())
                .collect();
            if !paths.is_empty() {
                let name = format!("{}#{split}", display_name(dir));
                let mut ds = Self::from_bin_files(&name, &paths)?;
                ds.description = split.describe(paths.len(), &base.display().to_string());
                return Ok(ds);
            }
        }
        let expected = format!(
            "{} directly in it or in {ARCHIVE_FOLDER}/",
            split.expected()
        );
        if !dir.is_dir() {
            return Err(DataError::NotFound {
                what: format!("directory {}", dir.display()),
                expected,
                found: "no directory at that path".into(),
            });
        }
        let mut found = Vec::new();
        list_dir(dir, "", &mut found);
        list_dir(
            &dir.join(ARCHIVE_FOLDER),
            &format!("{ARCHIVE_FOLDER}/"),
            &mut found,
        );
        Err(DataError::NotFound {
            what: format!("CIFAR-10 {split} files in {}", dir.display()),
            expected,
            found: summarize(found),
        })
    }

    /// Reads a split from a `.tar.gz` shaped like the official `cifar-10-binary.tar.gz`
    /// (members `cifar-10-batches-bin/*.bin`; the first member with the right file name is
    /// taken). The train split takes whichever of the five batches are present, in order.
    ///
    /// When `checksum` is given the archive file is verified first. Members are decoded
    /// straight from the compressed stream, nothing is extracted to disk, and reading stops
    /// once all of the split's members are found.
    pub fn from_archive(
        path: &Path,
        split: Split,
        checksum: Option<&Checksum>,
    ) -> Result<Dataset, DataError> {
        if let Some(checksum) = checksum {
            checksum.verify_file(path)?;
        }
        let file = File::open(path).map_err(io_error(path))?;
        let shown = path.display().to_string();
        let corrupt = |e: io::Error| DataError::Format {
            what: shown.clone(),
            detail: format!("corrupt or truncated .tar.gz archive: {e}"),
        };
        let gz = flate2::read::GzDecoder::new(BufReader::with_capacity(1 << 20, file));
        let mut archive = tar::Archive::new(gz);
        let wanted = split.files();
        let mut members: HashMap<&str, Vec<u8>> = HashMap::new();
        let mut seen = Vec::new();
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            let entry_path = entry.path().map_err(corrupt)?.into_owned();
            let file_name = entry_path.file_name().and_then(|n| n.to_str());
            let hit = wanted.iter().find(|w| Some(**w) == file_name);
            match hit {
                Some(w) if entry.header().entry_type().is_file() && !members.contains_key(w) => {
                    let size = usize::try_from(entry.size()).unwrap_or(usize::MAX);
                    let mut bytes = Vec::with_capacity(size.min(256 << 20));
                    entry.read_to_end(&mut bytes).map_err(corrupt)?;
                    members.insert(w, bytes);
                    if members.len() == wanted.len() {
                        break;
                    }
                }
                _ => seen.push(entry_path.display().to_string()),
            }
        }
        if members.is_empty() {
            return Err(DataError::NotFound {
                what: format!("CIFAR-10 {split} members in archive {shown}"),
                expected: format!("{ARCHIVE_FOLDER}/ holding {}", split.expected()),
                found: summarize(seen),
            });
        }
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for w in wanted.iter().filter(|w| members.contains_key(**w)) {
            parse_records(
                &format!("{shown}:{w}"),
                &members[w],
                &mut images,
                &mut labels,
            )?;
        }
        Ok(Self::from_parts(
            format!("{}#{split}", display_name(path)),
            split.describe(members.len(), &shown),
            images,
            labels,
            None,
        ))
    }

    /// Downloads an archive (see [`download`]) into `cache_dir`, or reuses the cached copy,
    /// and reads a split from it with [`from_archive`](Self::from_archive).
    ///
    /// With `checksum` `None`, the official URL is checked against [`OFFICIAL_ARCHIVE_MD5`] and
    /// other URLs are not checked.
    pub fn from_url(
        url: &str,
        split: Split,
        checksum: Option<&Checksum>,
        cache_dir: &Path,
    ) -> Result<Dataset, DataError> {
        let archive = download(url, checksum, cache_dir)?;
        let mut ds = Self::from_archive(&archive, split, None)?;
        ds.name = format!("{}#{split}", url_file_name(url));
        ds.description = format!("CIFAR-10 {split} split from {url}");
        Ok(ds)
    }

    /// Loads a data set bundled in `<root>/data/cifar10/` (`root` is the folder holding
    /// `data/`). [`Bundled::Lossless249`] also loads its original test indices.
    pub fn bundled(root: &Path, which: Bundled) -> Result<Dataset, DataError> {
        let dir = root.join("data").join("cifar10");
        let path = dir.join(which.file_name());
        if !path.is_file() {
            return Err(DataError::NotFound {
                what: format!("bundled data set `{which}`"),
                expected: path.display().to_string(),
                found: format!(
                    "no such file (is {} the qplay project root, the folder holding data/?)",
                    root.display()
                ),
            });
        }
        let bytes = read_file(&path)?;
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        parse_records(
            &path.display().to_string(),
            &bytes,
            &mut images,
            &mut labels,
        )?;
        let original = match which {
            Bundled::Lossless249 => {
                Some(read_index_csv(&dir.join(LOSSLESS249_INDEX_FILE), &labels)?)
            }
            _ => None,
        };
        Ok(Self::from_parts(
            which.name().into(),
            which.description().into(),
            images,
            labels,
            original,
        ))
    }

    /// Opens a data set from a short spec (see [`SPEC_FORMS`]):
    ///
    /// * `test`, `lossless249`, `train4000`: the bundled sets under `root`;
    /// * `http://…` or `https://…`: an archive URL, cached in `cache_dir` ([`from_url`](Self::from_url));
    /// * a directory ([`from_dir`](Self::from_dir));
    /// * a `.tar.gz` / `.tgz` file ([`from_archive`](Self::from_archive));
    /// * a `.bin` file ([`from_bin_file`](Self::from_bin_file)).
    ///
    /// Directories, archives and URLs take a split suffix `#train` or `#test` (default test).
    /// Relative paths are relative to the current directory; a leading `~/` means `$HOME`.
    pub fn open(spec: &str, root: &Path, cache_dir: &Path) -> Result<Dataset, DataError> {
        let bad = |reason: String| DataError::BadSpec {
            spec: spec.to_string(),
            reason,
        };
        let trimmed = spec.trim();
        if trimmed.is_empty() {
            return Err(bad("the spec is empty".into()));
        }
        let (body, split) = match trimmed.rsplit_once('#') {
            Some((head, tail)) => match tail.parse::<Split>() {
                Ok(split) => (head, Some(split)),
                Err(_) if !expand_home(trimmed).exists() => {
                    return Err(bad(format!(
                        "unknown split `#{tail}`; the split suffix is `#test` or `#train`"
                    )))
                }
                Err(_) => (trimmed, None),
            },
            None => (trimmed, None),
        };
        if let Some(which) = Bundled::from_name(body) {
            if let Some(split) = split.filter(|s| *s != which.split()) {
                return Err(bad(format!(
                    "the bundled set `{which}` is from the {} split, so `#{split}` does not apply",
                    which.split()
                )));
            }
            return Self::bundled(root, which);
        }
        let lower = body.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Self::from_url(body, split.unwrap_or_default(), None, cache_dir);
        }
        let path = expand_home(body);
        if path.is_dir() {
            return Self::from_dir(&path, split.unwrap_or_default());
        }
        if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            if !path.is_file() {
                return Err(DataError::NotFound {
                    what: format!("archive {}", path.display()),
                    expected: "an existing .tar.gz / .tgz file".into(),
                    found: "no file at that path".into(),
                });
            }
            return Self::from_archive(&path, split.unwrap_or_default(), None);
        }
        if lower.ends_with(".bin") {
            if let Some(split) = split {
                return Err(bad(format!(
                    "a .bin file holds one set of records; the `#{split}` suffix applies only \
                     to directories, archives and URLs"
                )));
            }
            if !path.is_file() {
                return Err(DataError::NotFound {
                    what: format!("records file {}", path.display()),
                    expected: "an existing .bin file of CIFAR-10 records".into(),
                    found: "no file at that path".into(),
                });
            }
            return Self::from_bin_file(&path);
        }
        if path.exists() {
            return Err(bad(format!(
                "{} is not a directory, a .bin file or a .tar.gz / .tgz archive",
                path.display()
            )));
        }
        Err(bad(format!(
            "`{body}` is not a bundled set, a URL, or an existing file or directory"
        )))
    }

    /// The short name (`test`, a file name, `archive.tar.gz#train`, plus subset suffixes).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A one-line description: what the images are, or the path they came from.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images (only possible through [`subset`](Self::subset) / [`take`](Self::take)).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The label (0..=9) of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// All labels, in order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The 3072 planar bytes (R plane, G plane, B plane; each 32×32 row-major) of image `i`.
    /// Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// All images back to back, `len() * 3072` planar bytes.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// The index of image `i` in the source it came from (the official test set for
    /// `lossless249`, the parent set for subsets); `i` itself when there is no mapping.
    /// Panics if `i >= len()`.
    pub fn original_index(&self, i: usize) -> usize {
        match &self.original_indices {
            Some(original) => original[i],
            None => {
                assert!(
                    i < self.len(),
                    "index {i} out of range for {} images",
                    self.len()
                );
                i
            }
        }
    }

    /// The original indices, when this set carries a mapping (see
    /// [`original_index`](Self::original_index)).
    pub fn original_indices(&self) -> Option<&[usize]> {
        self.original_indices.as_deref()
    }

    /// A new data set holding copies of the chosen records, in the order given (repeats
    /// allowed). Original indices carry over. The name gets a `[subset N #hash]` suffix that
    /// differs for different index lists. Panics if an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * IMAGE_BYTES);
        let mut labels = Vec::with_capacity(indices.len());
        let mut original = Vec::with_capacity(indices.len());
        for &i in indices {
            assert!(
                i < self.len(),
                "subset index {i} out of range for {} ({} images)",
                self.name,
                self.len()
            );
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
            original.push(self.original_index(i));
        }
        Self::from_parts(
            format!(
                "{}[subset {} #{:08x}]",
                self.name,
                indices.len(),
                index_hash(indices)
            ),
            format!("{}, subset of {}", self.description, indices.len()),
            images,
            labels,
            Some(original),
        )
    }

    /// The first `n` images (all of them, unchanged, when `n >= len()`); the name gets a
    /// `[..n]` suffix.
    pub fn take(&self, n: usize) -> Dataset {
        if n >= self.len() {
            return self.clone();
        }
        Self::from_parts(
            format!("{}[..{n}]", self.name),
            format!("{}, first {n}", self.description),
            self.images[..n * IMAGE_BYTES].to_vec(),
            self.labels[..n].to_vec(),
            self.original_indices.as_ref().map(|o| o[..n].to_vec()),
        )
    }

    /// Indices of the first `per_class` images of each class, in data order (so the result
    /// is sorted). Fails, naming the class, if a class has fewer.
    pub fn stratified(&self, per_class: usize) -> Result<Vec<usize>, DataError> {
        let counts = self.class_counts();
        if let Some(label) = (0..NUM_CLASSES).find(|&c| counts[c] < per_class) {
            return Err(DataError::TooFew {
                dataset: self.name.clone(),
                label: label as u8,
                class: CLASS_NAMES[label],
                available: counts[label],
                requested: per_class,
            });
        }
        let mut taken = [0usize; NUM_CLASSES];
        let mut out = Vec::with_capacity(per_class * NUM_CLASSES);
        for (i, &label) in self.labels.iter().enumerate() {
            let t = &mut taken[usize::from(label)];
            if *t < per_class {
                *t += 1;
                out.push(i);
                if out.len() == per_class * NUM_CLASSES {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Number of images of each class.
    pub fn class_counts(&self) -> [usize; NUM_CLASSES] {
        let mut counts = [0usize; NUM_CLASSES];
        for &label in self.labels.iter() {
            counts[usize::from(label)] += 1;
        }
        counts
    }

    /// Writes the chosen images into `out` as raw 0..255 pixel values in NHWC order
    /// (`indices.len()` × 32 × 32 × 3, channels R, G, B), the models' input layout.
    ///
    /// Panics if `out.len() != indices.len() * 3072` or an index is out of range.
    pub fn fill_nhwc(&self, indices: &[usize], out: &mut [f32]) {
        assert_eq!(
            out.len(),
            indices.len() * IMAGE_BYTES,
            "fill_nhwc: output holds {} floats, {} images need {}",
            out.len(),
            indices.len(),
            indices.len() * IMAGE_BYTES
        );
        let (images, _) = self.images.as_chunks::<IMAGE_BYTES>();
        let (outs, _) = out.as_chunks_mut::<IMAGE_BYTES>();
        for (&i, dst) in indices.iter().zip(outs) {
            let src = &images[i];
            let (r, gb) = src.split_at(PLANE_BYTES);
            let (g, b) = gb.split_at(PLANE_BYTES);
            let (pixels, _) = dst.as_chunks_mut::<3>();
            for (((px, &r), &g), &b) in pixels.iter_mut().zip(r).zip(g).zip(b) {
                *px = [f32::from(r), f32::from(g), f32::from(b)];
            }
        }
    }

    /// The chosen images as an `(n, 32, 32, 3)` array of raw 0..255 values (see
    /// [`fill_nhwc`](Self::fill_nhwc)).
    pub fn nhwc_batch(&self, indices: &[usize]) -> Array4<f32> {
        let mut out = vec![0f32; indices.len() * IMAGE_BYTES];
        self.fill_nhwc(indices, &mut out);
        Array4::from_shape_vec((indices.len(), IMAGE_SIDE, IMAGE_SIDE, 3), out)
            .expect("length matches shape")
    }
}

/// FNV-1a over the indices, to tell subsets apart by name.
fn index_hash(indices: &[usize]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &i in indices {
        for b in (i as u64).to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    (h ^ (h >> 32)) as u32
}

/// Reads the `lossless249` index CSV (header with `record` and `test_index` columns, and
/// optionally `label`), checking it against the records' labels.
fn read_index_csv(path: &Path, labels: &[u8]) -> Result<Vec<usize>, DataError> {
    let text = fs::read_to_string(path).map_err(io_error(path))?;
    let format = |detail: String| DataError::Format {
        what: path.display().to_string(),
        detail,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| {
        format("empty file; expected a header `record,test_index,label,...`".into())
    })?;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let column = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(record_col), Some(index_col)) = (column("record"), column("test_index")) else {
        return Err(format(format!(
            "header `{header}` lacks the `record` and `test_index` columns"
        )));
    };
    let label_col = column("label");
    let mut original = vec![usize::MAX; labels.len()];
    for (line_no, line) in lines {
        let line_no = line_no + 1;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let field = |col: usize, name: &str| -> Result<usize, DataError> {
            let value = fields
                .get(col)
                .ok_or_else(|| format(format!("line {line_no}: missing `{name}` column")))?;
            value.parse().map_err(|_| {
                format(format!(
                    "line {line_no}: `{name}` is `{value}`, expected a non-negative integer"
                ))
            })
        };
        let record = field(record_col, "record")?;
        let index = field(index_col, "test_index")?;
        if record >= labels.len() {
            return Err(format(format!(
                "line {line_no}: record {record} out of range 0..{}",
                labels.len()
            )));
        }
        if index >= TEST_SET_SIZE {
            return Err(format(format!(
                "line {line_no}: test_index {index} out of range 0..{TEST_SET_SIZE}"
            )));
        }
        if original[record] != usize::MAX {
            return Err(format(format!(
                "line {line_no}: record {record} listed twice"
            )));
        }
        if let Some(col) = label_col {
            let label = field(col, "label")?;
            if label != usize::from(labels[record]) {
                return Err(format(format!(
                    "line {line_no}: label {label} differs from record {record}'s label {}",
                    labels[record]
                )));
            }
        }
        original[record] = index;
    }
    if let Some(missing) = original.iter().position(|&i| i == usize::MAX) {
        return Err(format(format!(
            "no row for record {missing}; expected one row for each of the {} records",
            labels.len()
        )));
    }
    Ok(original)
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) if !home.is_empty() => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

// ---------------------------------------------------------------------------------------------
// Downloads

/// Whether `url` is the official archive (either scheme, with or without `www.`).
fn is_official_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or("");
    let rest = rest.strip_prefix("www.").unwrap_or(rest);
    rest == "cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
}

/// The last path segment of a URL (without query or fragment), made safe as a file name.
fn url_file_name(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = without_query
        .split_once("://")
        .map_or(without_query, |(_, rest)| rest);
    let last = after_scheme
        .split_once('/')
        .and_then(|(_, path)| path.rsplit('/').next())
        .unwrap_or("");
    let safe: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.trim_matches(['.', '_']).is_empty() {
        "download".into()
    } else {
        safe
    }
}

/// The cache file for `url`: a short hash of the full URL, then its file name.
fn cache_file_name(url: &str) -> String {
    let hash = to_hex(&Sha256::digest(url.as_bytes()));
    format!("{}-{}", &hash[..12], url_file_name(url))
}

/// Downloads `url` (http or https) into `cache_dir` and returns the file's path.
///
/// The file is named after a hash of the URL and its last path segment. A cached file is
/// reused when it matches `checksum` (or when no checksum applies); a cached file that does
/// not match is downloaded again. The body is written to a temporary file in `cache_dir`
/// and renamed into place only once complete and verified; a download that fails or does
/// not match `checksum` is deleted. With `checksum` `None`, [`OFFICIAL_ARCHIVE_URL`] is
/// checked against [`OFFICIAL_ARCHIVE_MD5`].
pub fn download(
    url: &str,
    checksum: Option<&Checksum>,
    cache_dir: &Path,
) -> Result<PathBuf, DataError> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(DataError::Download {
            url: url.into(),
            detail: "only http:// and https:// URLs are supported".into(),
        });
    }
    let official = Checksum::Md5(OFFICIAL_ARCHIVE_MD5.into());
    let checksum = checksum.or_else(|| is_official_url(url).then_some(&official));
    let target = cache_dir.join(cache_file_name(url));
    if target.is_file() {
        match checksum.map(|c| c.verify_file(&target)) {
            None | Some(Ok(())) => return Ok(target),
            Some(Err(DataError::Checksum { .. })) => {
                fs::remove_file(&target).map_err(io_error(&target))?;
            }
            Some(Err(e)) => return Err(e),
        }
    }
    fs::create_dir_all(cache_dir).map_err(io_error(cache_dir))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let partial = cache_dir.join(format!(
        ".{}.{}-{nanos}.part",
        cache_file_name(url),
        std::process::id()
    ));
    let finished = fetch_to_file(url, &partial, checksum).and_then(|actual| {
        if let (Some(checksum), Some(actual)) = (checksum, actual) {
            checksum.check(url, &actual)?;
        }
        fs::rename(&partial, &target).map_err(io_error(&target))
    });
    if let Err(e) = finished {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    Ok(target)
}

/// Streams the body of `url` into `path`, returning its digest when `checksum` is given.
fn fetch_to_file(
    url: &str,
    path: &Path,
    checksum: Option<&Checksum>,
) -> Result<Option<String>, DataError> {
    let failed = |detail: String| DataError::Download {
        url: url.into(),
        detail,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(failed(format!(
            "HTTP status {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )));
    }
    let mut body = response.into_body().into_reader();
    let mut file = File::create(path).map_err(io_error(path))?;
    let mut hasher = checksum.map(Hasher::new);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(format!("reading the response body: {e}"))),
        };
        if let Some(h) = hasher.as_mut() {
            h.update(&buf[..n]);
        }
        file.write_all(&buf[..n]).map_err(io_error(path))?;
    }
    file.sync_all().map_err(io_error(path))?;
    Ok(hasher.map(Hasher::finish))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The bundled CIFAR-10 folder.
    const BUNDLED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/cifar10");

    /// The project root, the folder holding `data/`.
    fn bundled_root() -> PathBuf {
        Path::new(BUNDLED_DIR)
            .parent()
            .and_then(Path::parent)
            .expect("BUNDLED_DIR is <root>/data/cifar10")
            .to_path_buf()
    }

    /// The first `n` raw records of a bundled file.
    fn raw_records(which: Bundled, n: usize) -> Vec<u8> {
        let bytes = fs::read(Path::new(BUNDLED_DIR).join(which.file_name())).unwrap();
        bytes[..n * RECORD_BYTES].to_vec()
    }

    /// A record whose pixel bytes are a function of (channel, h, w).
    fn handmade_record(label: u8, f: impl Fn(usize, usize, usize) -> u8) -> Vec<u8> {
        let mut rec = vec![label];
        for c in 0..3 {
            for h in 0..32 {
                for w in 0..32 {
                    rec.push(f(c, h, w));
                }
            }
        }
        rec
    }

    #[test]
    fn bundled_test_set() {
        let ds = Dataset::bundled(&bundled_root(), Bundled::Test).unwrap();
        assert_eq!(ds.len(), 10_000);
        assert_eq!(ds.class_counts(), [1000; 10]);
        assert_eq!(ds.name(), "test");
        assert_eq!(
            ds.description(),
            "CIFAR-10 test, JPEG-q75 copy (10,000 images)"
        );
        assert_eq!(ds.original_index(1234), 1234);
        assert_eq!(ds.image(9999).len(), IMAGE_BYTES);
    }

    #[test]
    fn bundled_lossless249_and_train4000() {
        let root = bundled_root();
        let ll = Dataset::bundled(&root, Bundled::Lossless249).unwrap();
        assert_eq!(ll.len(), 249);
        assert_eq!(ll.description(), "CIFAR-10 test, 249 lossless images");
        let idx = ll.original_indices().unwrap();
        assert_eq!(idx.len(), 249);
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
        assert!(idx.iter().all(|&i| i < TEST_SET_SIZE));
        // Labels agree with the full test set at the original indices.
        let test = Dataset::bundled(&root, Bundled::Test).unwrap();
        for i in 0..ll.len() {
            assert_eq!(ll.label(i), test.label(ll.original_index(i)));
        }

        let train = Dataset::bundled(&root, Bundled::Train4000).unwrap();
        assert_eq!(train.len(), 4000);
        assert_eq!(
            train.description(),
            "CIFAR-10 train, first 4,000 (lossless)"
        );
    }

    #[test]
    fn class_names_match_meta_file() {
        let meta = fs::read_to_string(Path::new(BUNDLED_DIR).join("batches.meta.txt")).unwrap();
        let names: Vec<&str> = meta.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(names, CLASS_NAMES);
    }

    #[test]
    fn nhwc_conversion() {
        let a = handmade_record(3, |c, h, w| (c * 7 + h * 3 + w) as u8);
        let mut b = handmade_record(9, |_, _, _| 0);
        // Pixel (h=1, w=2) of image b: R=11, G=22, B=33.
        let off = 1 + 32 + 2;
        b[off] = 11;
        b[off + PLANE_BYTES] = 22;
        b[off + 2 * PLANE_BYTES] = 33;
        let ds = Dataset::from_bin_bytes("handmade", &[a, b].concat()).unwrap();
        assert_eq!(ds.labels(), &[3, 9]);

        let mut out = vec![0f32; IMAGE_BYTES];
        ds.fill_nhwc(&[1], &mut out);
        let px = (32 + 2) * 3;
        assert_eq!(&out[px..px + 3], &[11.0, 22.0, 33.0]);
        assert_eq!(out.iter().filter(|&&v| v != 0.0).count(), 3);

        let batch = ds.nhwc_batch(&[1, 0]);
        assert_eq!(batch.shape(), &[2, 32, 32, 3]);
        assert_eq!(
            [
                batch[[0, 1, 2, 0]],
                batch[[0, 1, 2, 1]],
                batch[[0, 1, 2, 2]]
            ],
            [11.0, 22.0, 33.0]
        );
        for (c, h, w) in [(0, 0, 0), (1, 5, 31), (2, 31, 7)] {
            assert_eq!(batch[[1, h, w, c]], (c * 7 + h * 3 + w) as f32);
        }
    }

    #[test]
    fn truncated_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.bin");
        let mut bytes = raw_records(Bundled::Test, 3);
        bytes.truncate(2 * RECORD_BYTES + 1000);
        fs::write(&path, &bytes).unwrap();
        let err = Dataset::from_bin_file(&path).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
        let msg = err.to_string();
        for part in ["cut.bin", "3073", "2 whole records", "1000 trailing bytes"] {
            assert!(msg.contains(part), "{msg}");
        }

        fs::write(&path, b"").unwrap();
        let msg = Dataset::from_bin_file(&path).unwrap_err().to_string();
        assert!(
            msg.contains("cut.bin") && msg.contains("no records"),
            "{msg}"
        );

        let err = Dataset::from_bin_file(&dir.path().join("missing.bin")).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("missing.bin"));
    }

    #[test]
    fn bad_label_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("badlabel.bin");
        let mut bytes = raw_records(Bundled::Test, 3);
        bytes[2 * RECORD_BYTES] = 10;
        fs::write(&path, &bytes).unwrap();
        let err = Dataset::from_bin_file(&path).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
        let msg = err.to_string();
        for part in ["badlabel.bin", "record 2", "label 10", "0..=9", "3073"] {
            assert!(msg.contains(part), "{msg}");
        }
        let msg = Dataset::from_bin_bytes("mem", &bytes)
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("mem:"), "{msg}");
    }

    #[test]
    fn bin_files_concatenate() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
        fs::write(&a, raw_records(Bundled::Test, 4)).unwrap();
        fs::write(&b, raw_records(Bundled::Train4000, 2)).unwrap();
        let ds = Dataset::from_bin_files("ab", &[a.clone(), b]).unwrap();
        assert_eq!((ds.name(), ds.len()), ("ab", 6));
        let single = Dataset::from_bin_file(&a).unwrap();
        assert_eq!(single.name(), "a.bin");
        assert_eq!(single.description(), a.display().to_string());
        assert_eq!(ds.image(3), single.image(3));
    }

    /// Writes `dir/file_name`, a `.tar.gz` holding `members` under `cifar-10-batches-bin/`.
    fn make_tar(dir: &Path, file_name: &str, members: &[(&str, Vec<u8>)]) -> PathBuf {
        let path = dir.join(file_name);
        let gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        for (name, bytes) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, format!("{ARCHIVE_FOLDER}/{name}"), &bytes[..])
                .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    /// `cifar-small.tar.gz`: `data_batch_1.bin` (10 training records), `batches.meta.txt`,
    /// `test_batch.bin` (20 test records).
    fn make_archive(dir: &Path) -> PathBuf {
        make_tar(
            dir,
            "cifar-small.tar.gz",
            &[
                ("data_batch_1.bin", raw_records(Bundled::Train4000, 10)),
                ("batches.meta.txt", CLASS_NAMES.join("\n").into_bytes()),
                ("test_batch.bin", raw_records(Bundled::Test, 20)),
            ],
        )
    }

    /// `cifar-full.tgz`: `test_batch.bin` (20) and all five data batches (10, 2, 2, 2, 4).
    fn make_full_archive(dir: &Path) -> PathBuf {
        make_tar(
            dir,
            "cifar-full.tgz",
            &[
                ("test_batch.bin", raw_records(Bundled::Test, 20)),
                ("data_batch_1.bin", raw_records(Bundled::Train4000, 10)),
                ("data_batch_3.bin", raw_records(Bundled::Train4000, 2)),
                ("data_batch_2.bin", raw_records(Bundled::Train4000, 2)),
                ("data_batch_4.bin", raw_records(Bundled::Train4000, 2)),
                ("data_batch_5.bin", raw_records(Bundled::Train4000, 4)),
            ],
        )
    }

    #[test]
    fn archive_loads_both_splits() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_archive(dir.path());
        let bytes = fs::read(&path).unwrap();
        let sha = Checksum::Sha256(to_hex(&Sha256::digest(&bytes)).to_uppercase());
        let md5 = Checksum::Md5(to_hex(&Md5::digest(&bytes)));

        let test = Dataset::from_archive(&path, Split::Test, Some(&sha)).unwrap();
        assert_eq!(test.len(), 20);
        assert_eq!(test.name(), "cifar-small.tar.gz#test");
        let bundled = Dataset::from_bin_bytes("t", &raw_records(Bundled::Test, 20)).unwrap();
        assert_eq!(test.images(), bundled.images());
        assert_eq!(test.labels(), bundled.labels());

        let train = Dataset::from_archive(&path, Split::Train, Some(&md5)).unwrap();
        assert_eq!(train.len(), 10);
        assert_eq!(train.name(), "cifar-small.tar.gz#train");
        assert!(train.description().contains("1 of 5 data batches"));
        let first = raw_records(Bundled::Train4000, 10);
        assert_eq!(
            train.image(9),
            &first[9 * RECORD_BYTES + 1..10 * RECORD_BYTES]
        );
        assert_eq!(train.label(9), first[9 * RECORD_BYTES]);

        // All five batches are concatenated in numeric order, whatever the member order.
        let full = make_full_archive(dir.path());
        let train = Dataset::from_archive(&full, Split::Train, None).unwrap();
        assert_eq!(train.len(), 20);
        assert!(!train.description().contains("of 5"));
        assert_eq!(
            train.image(9),
            &first[9 * RECORD_BYTES + 1..10 * RECORD_BYTES]
        );
        assert_eq!(train.image(10), &first[1..RECORD_BYTES]); // data_batch_2 starts over
    }

    #[test]
    fn archive_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_archive(dir.path());
        assert_eq!(
            Dataset::from_archive(&path, Split::Test, None)
                .unwrap()
                .len(),
            20
        );

        // Wrong checksum: nothing is returned.
        let wrong = Checksum::Sha256("0".repeat(64));
        let err = Dataset::from_archive(&path, Split::Test, Some(&wrong)).unwrap_err();
        let DataError::Checksum {
            what,
            expected,
            actual,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert!(what.contains("cifar-small.tar.gz"));
        assert_eq!(expected, &format!("sha256:{}", "0".repeat(64)));
        assert!(actual.starts_with("sha256:") && actual.len() == 7 + 64);

        // No members of the split.
        let meta_only = make_tar(
            dir.path(),
            "meta.tar.gz",
            &[("batches.meta.txt", b"airplane".to_vec())],
        );
        let err = Dataset::from_archive(&meta_only, Split::Train, None).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::NotFound { .. }), "{msg}");
        assert!(
            msg.contains("meta.tar.gz") && msg.contains("data_batch_1.bin"),
            "{msg}"
        );
        assert!(
            msg.contains("found cifar-10-batches-bin/batches.meta.txt"),
            "{msg}"
        );

        // Truncated archive.
        let bytes = fs::read(&path).unwrap();
        let cut = dir.path().join("cut.tar.gz");
        fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = Dataset::from_archive(&cut, Split::Test, None).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::Format { .. }), "{msg}");
        assert!(
            msg.contains("cut.tar.gz") && msg.contains("corrupt or truncated"),
            "{msg}"
        );

        // Not gzip at all.
        let not_gz = dir.path().join("plain.tar.gz");
        fs::write(&not_gz, b"hello, this is not an archive").unwrap();
        let msg = Dataset::from_archive(&not_gz, Split::Test, None)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("plain.tar.gz") && msg.contains("corrupt"),
            "{msg}"
        );
    }

    #[test]
    fn directory_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let flat = dir.path().join("flat");
        fs::create_dir(&flat).unwrap();
        fs::write(flat.join("test_batch.bin"), raw_records(Bundled::Test, 5)).unwrap();
        let ds = Dataset::from_dir(&flat, Split::Test).unwrap();
        assert_eq!((ds.len(), ds.name()), (5, "flat#test"));

        let err = Dataset::from_dir(&flat, Split::Train).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::NotFound { .. }), "{msg}");
        assert!(
            msg.contains("data_batch_5.bin") && msg.contains("found test_batch.bin"),
            "{msg}"
        );

        let nested = dir.path().join("nested");
        let inner = nested.join(ARCHIVE_FOLDER);
        fs::create_dir_all(&inner).unwrap();
        for (k, f) in Split::Train.files().iter().enumerate() {
            fs::write(inner.join(f), raw_records(Bundled::Train4000, k + 1)).unwrap();
        }
        assert_eq!(Dataset::from_dir(&nested, Split::Train).unwrap().len(), 15);
        let msg = Dataset::from_dir(&nested, Split::Test)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("cifar-10-batches-bin/data_batch_1.bin"),
            "{msg}"
        );
        fs::remove_file(inner.join("data_batch_2.bin")).unwrap();
        let partial = Dataset::from_dir(&nested, Split::Train).unwrap();
        assert_eq!(partial.len(), 13);
        assert!(partial.description().contains("4 of 5 data batches"));

        let msg = Dataset::from_dir(&dir.path().join("nope"), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("nope") && msg.contains("test_batch.bin"),
            "{msg}"
        );
    }

    /// A one-thread HTTP server on 127.0.0.1 answering `max_requests` requests: `routes`
    /// are served with 200, anything else with 404. Returns the base URL and a request counter.
    fn serve(routes: Vec<(String, Vec<u8>)>, max_requests: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming().take(max_requests) {
                let Ok(mut stream) = stream else { continue };
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8_lossy(&head);
                let target = head.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = match routes.iter().find(|(p, _)| p == target) {
                    Some((_, body)) => ("200 OK", body.clone()),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let header = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/gzip\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(header.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        (base, hits)
    }

    fn cache_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn download_over_http() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = fs::read(make_archive(dir.path())).unwrap();
        let sha = Checksum::Sha256(to_hex(&Sha256::digest(&bytes)));
        let routes = vec![
            ("/cifar.tar.gz".to_string(), bytes.clone()),
            ("/other/cifar.tar.gz".to_string(), bytes.clone()),
        ];
        let (base, hits) = serve(routes, 5);
        let url = format!("{base}/cifar.tar.gz");

        // First call downloads, second reuses the cache.
        let cache = dir.path().join("cache");
        let ds = Dataset::from_url(&url, Split::Test, Some(&sha), &cache).unwrap();
        assert_eq!((ds.len(), ds.name()), (20, "cifar.tar.gz#test"));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let ds = Dataset::from_url(&url, Split::Test, Some(&sha), &cache).unwrap();
        assert_eq!(ds.len(), 20);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let cached = cache_entries(&cache);
        assert_eq!(cached.len(), 1);
        assert!(cached[0].ends_with("-cifar.tar.gz"), "{cached:?}");

        // A corrupted cached copy is downloaded again.
        fs::write(cache.join(&cached[0]), b"garbage").unwrap();
        Dataset::from_url(&url, Split::Test, Some(&sha), &cache).unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(fs::read(cache.join(&cached[0])).unwrap(), bytes);

        // Wrong checksum: error naming both digests, nothing left in the cache.
        let cache2 = dir.path().join("cache2");
        let wrong = Checksum::Md5("f".repeat(32));
        let other = format!("{base}/other/cifar.tar.gz");
        let err = Dataset::from_url(&other, Split::Test, Some(&wrong), &cache2).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::Checksum { .. }), "{msg}");
        assert!(msg.contains(&other), "{msg}");
        assert!(msg.contains(&format!("md5:{}", "f".repeat(32))), "{msg}");
        assert!(
            msg.contains(&format!("md5:{}", to_hex(&Md5::digest(&bytes)))),
            "{msg}"
        );
        assert_eq!(cache_entries(&cache2), Vec::<String>::new());
        assert_eq!(hits.load(Ordering::SeqCst), 3);

        // 404: download error naming the URL and the status; nothing cached.
        let missing = format!("{base}/missing.tar.gz");
        let err = Dataset::from_url(&missing, Split::Test, None, &cache2).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::Download { .. }), "{msg}");
        assert!(msg.contains(&missing) && msg.contains("404"), "{msg}");
        assert_eq!(cache_entries(&cache2), Vec::<String>::new());
        assert_eq!(hits.load(Ordering::SeqCst), 4);

        // open() with a URL spec and no checksum reuses the first cache.
        let ds = Dataset::open(&url, &bundled_root(), &cache).unwrap();
        assert_eq!(ds.len(), 20);
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        let ds = Dataset::open(
            &format!("{base}/other/cifar.tar.gz#test"),
            &bundled_root(),
            &cache,
        )
        .unwrap();
        assert_eq!(ds.len(), 20);
        assert_eq!(hits.load(Ordering::SeqCst), 5);

        let err = download("ftp://example.com/x.tar.gz", None, &cache).unwrap_err();
        assert!(err.to_string().contains("http:// and https://"));
    }

    #[test]
    fn open_parses_every_spec_form() {
        let root = bundled_root();
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let open = |spec: &str| Dataset::open(spec, &root, &cache);

        assert_eq!(open("test").unwrap().len(), 10_000);
        assert_eq!(open(" lossless249 ").unwrap().len(), 249);
        assert_eq!(open("train4000").unwrap().len(), 4000);
        assert_eq!(open("train4000#train").unwrap().len(), 4000);

        let bin = dir.path().join("five.bin");
        fs::write(&bin, raw_records(Bundled::Test, 5)).unwrap();
        assert_eq!(open(bin.to_str().unwrap()).unwrap().len(), 5);

        let data = dir.path().join("data");
        let inner = data.join(ARCHIVE_FOLDER);
        fs::create_dir_all(&inner).unwrap();
        fs::write(inner.join("test_batch.bin"), raw_records(Bundled::Test, 3)).unwrap();
        for f in Split::Train.files() {
            fs::write(inner.join(f), raw_records(Bundled::Train4000, 2)).unwrap();
        }
        let d = data.to_str().unwrap();
        assert_eq!(open(d).unwrap().len(), 3);
        assert_eq!(open(&format!("{d}#test")).unwrap().len(), 3);
        assert_eq!(open(&format!("{d}#train")).unwrap().len(), 10);

        let tgz = make_full_archive(dir.path());
        let t = tgz.to_str().unwrap();
        assert_eq!(open(t).unwrap().len(), 20);
        assert_eq!(open(&format!("{t}#train")).unwrap().len(), 20);
        let targz = make_archive(dir.path());
        let t = targz.to_str().unwrap();
        assert_eq!(open(t).unwrap().len(), 20);
        assert_eq!(open(&format!("{t}#train")).unwrap().len(), 10);
        // (URL specs are covered in `download_over_http`.)
    }

    #[test]
    fn bad_specs_list_accepted_forms() {
        let root = bundled_root();
        let dir = tempfile::tempdir().unwrap();
        let open = |spec: &str| Dataset::open(spec, &root, dir.path());
        let err = open("nonsense").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::BadSpec { .. }), "{msg}");
        for form in [
            "`test`",
            "`lossless249`",
            "`train4000`",
            "http",
            ".bin",
            ".tar.gz",
            ".tgz",
            "#train",
        ] {
            assert!(msg.contains(form), "{form}: {msg}");
        }
        for spec in ["", "test#val", "train4000#test", "lossless249#train"] {
            assert!(
                matches!(open(spec), Err(DataError::BadSpec { .. })),
                "{spec}"
            );
        }
        assert!(open("test#val").unwrap_err().to_string().contains("`#val`"));
        let bin = dir.path().join("x.bin");
        fs::write(&bin, raw_records(Bundled::Test, 1)).unwrap();
        assert!(matches!(
            open(&format!("{}#train", bin.display())),
            Err(DataError::BadSpec { .. })
        ));
        let txt = dir.path().join("x.txt");
        fs::write(&txt, b"x").unwrap();
        assert!(matches!(
            open(txt.to_str().unwrap()),
            Err(DataError::BadSpec { .. })
        ));
        for missing in ["/no/such/file.bin", "/no/such/archive.tgz"] {
            let msg = open(missing).unwrap_err().to_string();
            assert!(msg.contains(missing), "{msg}");
        }
        let err = Dataset::bundled(Path::new("/no/such/root"), Bundled::Test).unwrap_err();
        assert!(err.to_string().contains("test_batch_jpeg75.bin"), "{err}");
    }

    #[test]
    fn subset_take_stratified() {
        let root = bundled_root();
        let ll = Dataset::bundled(&root, Bundled::Lossless249).unwrap();
        let sub = ll.subset(&[5, 2, 5]);
        assert_eq!(sub.len(), 3);
        assert!(
            sub.name().starts_with("lossless249[subset 3 #"),
            "{}",
            sub.name()
        );
        assert_ne!(sub.name(), ll.subset(&[5, 2, 6]).name());
        assert_eq!(sub.original_index(0), ll.original_index(5));
        assert_eq!(sub.original_index(1), ll.original_index(2));
        assert_eq!(sub.image(1), ll.image(2));
        assert_eq!(sub.label(2), ll.label(5));
        let subsub = sub.subset(&[1]);
        assert_eq!(subsub.original_index(0), ll.original_index(2));

        let test = Dataset::bundled(&root, Bundled::Test).unwrap();
        let first = test.take(100);
        assert_eq!((first.len(), first.name()), (100, "test[..100]"));
        assert_eq!(first.image(99), test.image(99));
        assert_eq!(test.take(20_000).len(), 10_000);
        let plain = test.subset(&[7, 3]);
        assert_eq!(plain.original_indices(), Some(&[7, 3][..]));
        assert!(test.subset(&[]).is_empty());

        let idx = test.stratified(3).unwrap();
        assert_eq!(idx.len(), 30);
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(test.subset(&idx).class_counts(), [3; 10]);
        for (k, &i) in idx.iter().enumerate() {
            let before = idx[..k]
                .iter()
                .filter(|&&j| test.label(j) == test.label(i))
                .count();
            let all_before = (0..i).filter(|&j| test.label(j) == test.label(i)).count();
            assert_eq!(
                before, all_before,
                "index {i} is not among the first of its class"
            );
        }

        let counts = ll.class_counts();
        let min = *counts.iter().min().unwrap();
        let err = ll.stratified(min + 1).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::TooFew { .. }), "{msg}");
        let label = counts.iter().position(|&c| c == min).unwrap();
        assert!(
            msg.contains(CLASS_NAMES[label]) && msg.contains(&format!("only {min}")),
            "{msg}"
        );
    }

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
        assert!(is_official_url(OFFICIAL_ARCHIVE_URL));
        assert!(is_official_url(
            "http://cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
        ));
        assert!(!is_official_url(
            "https://example.com/cifar-10-binary.tar.gz"
        ));
        assert_eq!(url_file_name("https://h/a/b.tar.gz?x=1#y"), "b.tar.gz");
        assert_eq!(url_file_name("https://h"), "download");
    }
}
