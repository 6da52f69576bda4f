//! The CIFAR-10 binary record format and the places records are read from: bytes, `.bin`
//! files, directories in the official layout and `.tar.gz` archives.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::checksum::Checksum;
use super::error::{io_error, read_file, DataError};
use super::{Dataset, Split, ARCHIVE_FOLDER, IMAGE_BYTES, NUM_CLASSES, RECORD_BYTES};

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

/// Appends the records of the `.bin` file at `path` to `images` / `labels`; errors name the file.
pub(super) fn read_records(
    path: &Path,
    images: &mut Vec<u8>,
    labels: &mut Vec<u8>,
) -> Result<(), DataError> {
    let bytes = read_file(path)?;
    parse_records(&path.display().to_string(), &bytes, images, labels)
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
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        read_records(path, &mut images, &mut labels)?;
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
            read_records(path, &mut images, &mut labels)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tests::{make_archive, make_full_archive, make_tar, raw_records};
    use crate::data::{to_hex, Bundled};
    use md5::Md5;
    use sha2::{Digest, Sha256};

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
}
