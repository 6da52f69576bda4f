//! One store for results computed from content: a content key → the most recent values in
//! memory → JSON files on disk, for later sessions. The evaluation cache (`quant::cache`) and the
//! calibration statistics (`quant::calibrate::cache`) are two such stores.
//!
//! The key says everything the value depends on (the caller hashes model bytes, images,
//! options), so a value is never stale, only absent. A file that cannot be read or does not
//! decode is a miss; one that cannot be written is skipped: a store costs time when it loses
//! something, never a wrong result. Files are written under a temporary name and renamed, so a
//! reader never sees half a file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

/// A value a [`ContentStore`] keeps.
pub trait Stored: Sized + Send + Sync + 'static {
    /// The value as the JSON record kept on disk.
    fn to_record(&self) -> Value;
    /// The value back from its record; `None` when the record does not fit (then it is a miss).
    fn from_record(record: &Value) -> Option<Self>;
    /// What the value weighs against the store's memory budget (bytes, roughly); 0 by default.
    fn weight(&self) -> usize {
        0
    }
}

/// The in-memory level of a store: key → value, the least recently used first out.
pub struct Recent<V> {
    entries: HashMap<String, (u64, Arc<V>)>,
    weight: usize,
    clock: u64,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Recent {
            entries: HashMap::new(),
            weight: 0,
            clock: 0,
        }
    }
}

/// A store: its folder under `paths::cache_dir()`, its memory bounds, and where its memory
/// lives (a process-wide slot, so that every copy of this crate in the runtime shares it).
pub struct ContentStore<V: Stored> {
    folder: &'static str,
    max_entries: usize,
    max_weight: usize,
    memory: fn() -> &'static Mutex<Recent<V>>,
}

impl<V: Stored> ContentStore<V> {
    /// A store keeping at most `max_entries` values of at most `max_weight` in all in memory,
    /// and its files in `paths::cache_dir()/<folder>/<key>.json`.
    pub const fn new(
        folder: &'static str,
        max_entries: usize,
        max_weight: usize,
        memory: fn() -> &'static Mutex<Recent<V>>,
    ) -> Self {
        ContentStore {
            folder,
            max_entries,
            max_weight,
            memory,
        }
    }

    fn recent(&self) -> MutexGuard<'static, Recent<V>> {
        (self.memory)().lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The folder of the store's files.
    pub fn dir(&self) -> PathBuf {
        crate::paths::cache_dir().join(self.folder)
    }

    /// The file of `key`.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir().join(format!("{key}.json"))
    }

    /// The value kept in memory under `key`.
    pub fn in_memory(&self, key: &str) -> Option<Arc<V>> {
        let mut recent = self.recent();
        recent.clock += 1;
        let clock = recent.clock;
        recent.entries.get_mut(key).map(|(used, v)| {
            *used = clock;
            Arc::clone(v)
        })
    }

    /// The value under `key`: from memory, else from its file (then kept in memory too).
    pub fn get(&self, key: &str) -> Option<Arc<V>> {
        if let Some(v) = self.in_memory(key) {
            return Some(v);
        }
        let v = Arc::new(self.read(key)?);
        self.keep(key, v.clone());
        Some(v)
    }

    /// The value in `key`'s file, if it reads and decodes.
    pub fn read(&self, key: &str) -> Option<V> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        V::from_record(&serde_json::from_slice(&bytes).ok()?)
    }

    /// Keeps `value` in memory under `key`, dropping the least recently used values beyond the
    /// bounds.
    pub fn keep(&self, key: &str, value: Arc<V>) {
        let mut recent = self.recent();
        recent.clock += 1;
        let clock = recent.clock;
        recent.weight += value.weight();
        if let Some((_, old)) = recent.entries.insert(key.to_string(), (clock, value)) {
            recent.weight -= old.weight();
        }
        while recent.entries.len() > self.max_entries || recent.weight > self.max_weight {
            let Some(oldest) = recent
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, v)) = recent.entries.remove(&oldest) {
                recent.weight -= v.weight();
            }
        }
    }

    /// Writes `value`'s file (skipped when the folder or file cannot be written).
    pub fn write(&self, key: &str, value: &V) {
        let path = self.path(key);
        if std::fs::create_dir_all(self.dir()).is_err() {
            return;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, value.to_record().to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }

    /// Keeps `value` in memory and writes its file.
    pub fn put(&self, key: &str, value: Arc<V>) {
        self.write(key, &value);
        self.keep(key, value);
    }

    /// How many values memory holds now.
    pub fn len_in_memory(&self) -> usize {
        self.recent().entries.len()
    }

    /// Forgets every value, in memory and on disk.
    pub fn forget(&self) {
        let mut recent = self.recent();
        recent.entries.clear();
        recent.weight = 0;
        let _ = std::fs::remove_dir_all(self.dir());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq)]
    struct Bytes(Vec<u8>);

    impl Stored for Bytes {
        fn to_record(&self) -> Value {
            json!({ "bytes": self.0 })
        }
        fn from_record(record: &Value) -> Option<Self> {
            serde_json::from_value(record.get("bytes")?.clone())
                .ok()
                .map(Bytes)
        }
        fn weight(&self) -> usize {
            self.0.len()
        }
    }

    fn memory() -> &'static Mutex<Recent<Bytes>> {
        static MEMORY: std::sync::OnceLock<Mutex<Recent<Bytes>>> = std::sync::OnceLock::new();
        MEMORY.get_or_init(Default::default)
    }

    /// Three values at most, ten bytes at most; its folder is this test's own.
    static STORE: ContentStore<Bytes> = ContentStore::new("store-unit-test", 3, 10, memory);

    #[test]
    fn memory_keeps_the_recent_values_and_disk_keeps_every_value() {
        STORE.forget();
        for key in ["a", "b", "c"] {
            STORE.put(key, Arc::new(Bytes(vec![1, 2])));
        }
        // Reading "a" makes it recent; a fourth value drops "b", the least recently used.
        assert!(STORE.in_memory("a").is_some());
        STORE.put("d", Arc::new(Bytes(vec![3])));
        assert_eq!(STORE.len_in_memory(), 3);
        assert!(STORE.in_memory("b").is_none());
        // A heavy value drops others until the weight fits.
        STORE.keep("heavy", Arc::new(Bytes(vec![0; 9])));
        assert!(STORE.in_memory("heavy").is_some());
        assert_eq!(STORE.len_in_memory(), 2);
        // "b" comes back from its file, and is then in memory again.
        assert_eq!(*STORE.get("b").unwrap(), Bytes(vec![1, 2]));
        assert!(STORE.in_memory("b").is_some());
        // Kept in memory only: no file.
        assert!(STORE.read("heavy").is_none());
        // A file that does not decode is a miss.
        std::fs::write(STORE.path("bad"), "{\"bytes\": \"no\"}").unwrap();
        assert!(STORE.get("bad").is_none());
        STORE.forget();
        assert_eq!(STORE.len_in_memory(), 0);
        assert!(STORE.get("a").is_none());
    }
}
