//! Archives fetched over http(s): [`download`] into a cache folder, checked against a
//! [`Checksum`], and [`Dataset::from_url`].

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::checksum::{to_hex, Checksum, Hasher};
use super::error::{io_error, DataError};
use super::{Dataset, Split, OFFICIAL_ARCHIVE_MD5};

impl Dataset {
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
}

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
///
/// [`OFFICIAL_ARCHIVE_URL`]: super::OFFICIAL_ARCHIVE_URL
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
    use crate::data::tests::{bundled_root, make_archive};
    use crate::data::OFFICIAL_ARCHIVE_URL;
    use md5::Md5;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

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
    fn official_url_and_file_names() {
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
