//! The data sets shipped in `<root>/data/cifar10/` ([`Bundled`]) and how they load, with the
//! original test indices of `lossless249`.

use std::fmt;
use std::fs;
use std::path::Path;

use super::error::{io_error, DataError};
use super::records::read_records;
use super::{Dataset, Split, TEST_SET_SIZE};

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

impl Dataset {
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
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        read_records(&path, &mut images, &mut labels)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tests::bundled_root;
    use crate::data::IMAGE_BYTES;

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
}
