//! [`DataError`], the one error type of the data module, and the I/O helpers that make it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::SPEC_FORMS;

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
    ///
    /// [`Dataset::stratified`]: super::Dataset::stratified
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
    ///
    /// [`Dataset::open`]: super::Dataset::open
    #[error("cannot open data set `{spec}`: {reason}; accepted forms: {SPEC_FORMS}")]
    BadSpec {
        /// The spec as given.
        spec: String,
        /// Why it was rejected.
        reason: String,
    },
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    fs::read(path).map_err(io_error(path))
}
