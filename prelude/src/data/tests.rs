//! Splits, selections and records of the data sets (no download: bundled files and files
//! written here).

use super::*;
use std::fs::{self, File};

// The `pub(super)` fixtures here serve the submodules' tests too.

/// The bundled CIFAR-10 folder.
const BUNDLED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/cifar10");

/// The project root, the folder holding `data/`.
pub(super) fn bundled_root() -> PathBuf {
    Path::new(BUNDLED_DIR)
        .parent()
        .and_then(Path::parent)
        .expect("BUNDLED_DIR is <root>/data/cifar10")
        .to_path_buf()
}

/// The first `n` raw records of a bundled file.
pub(super) fn raw_records(which: Bundled, n: usize) -> Vec<u8> {
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

/// Writes `dir/file_name`, a `.tar.gz` holding `members` under `cifar-10-batches-bin/`.
pub(super) fn make_tar(dir: &Path, file_name: &str, members: &[(&str, Vec<u8>)]) -> PathBuf {
    let path = dir.join(file_name);
    let gz =
        flate2::write::GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::fast());
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
pub(super) fn make_archive(dir: &Path) -> PathBuf {
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
pub(super) fn make_full_archive(dir: &Path) -> PathBuf {
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
