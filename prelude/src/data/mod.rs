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
//!
//! Layout: this file holds [`Dataset`] itself (the accessors, subsets, NHWC conversion and the
//! [`Dataset::open`] spec), [`Split`] and the format's constants; `records` reads the binary
//! format from bytes, `.bin` files, directories and archives; `bundled` the shipped sets;
//! `download` URLs and their cache; `checksum` file digests; `error` [`DataError`].

mod bundled;
mod checksum;
mod download;
mod error;
mod records;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use ndarray::Array4;

pub use bundled::{Bundled, LOSSLESS249_INDEX_FILE};
pub(crate) use checksum::to_hex;
pub use checksum::Checksum;
pub use download::download;
pub use error::DataError;

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

// ---------------------------------------------------------------------------------------------
// Splits

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

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) if !home.is_empty() => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests;
