//! qplay patch: the results of a build slot's compiles and type inferences, kept by content.
//!
//! A cell's compiled library is a function of its generated source, the crate's manifest and
//! Cargo configuration, the compiler's command and the dependencies it links; its inferred
//! variable types are a function of the analysis source and the same dependencies. Both are kept
//! in a folder the embedder names (build folders that are copies of each other may share one),
//! each entry under a hash of everything it depends on, with that text itself beside it: an entry
//! is used only when the text is equal, never on a hash alone. Keeping is best effort: a result
//! that cannot be written is only not kept.
//!
//! The dependencies are known by the name, size and modification time of every file in the
//! target's `deps` folder, read after each compile that ran Cargo. Until this session has run
//! Cargo once, nothing is looked up, so a change to a dependency's source (which Cargo rebuilds)
//! is always seen before a result is reused.

use super::SoFile;
use crate::rust_analyzer::TypeName;
use crate::rust_analyzer::VariableInfo;
use anyhow::Result;
use std::fmt::Write as _;
use std::fs;
use std::hash::Hash;
use std::hash::Hasher;
use std::path::Path;
use std::path::PathBuf;
use std::time::SystemTime;

/// Bumped whenever what goes into a key or an entry's format changes; evcxr's version pins the
/// rust-analyzer that inferred the kept types.
const FORMAT: &str = concat!("qplay results 1, evcxr ", env!("CARGO_PKG_VERSION"));

#[derive(Clone)]
pub(crate) struct Results {
    dir: PathBuf,
    max_bytes: u64,
    /// The dependencies as of this session's last Cargo run; `None` before the first.
    dependencies: Option<String>,
}

impl Results {
    pub(crate) fn new(dir: PathBuf, max_bytes: u64) -> Results {
        Results {
            dir,
            max_bytes,
            dependencies: None,
        }
    }

    /// Reads the dependencies again; called after each compile that ran Cargo.
    pub(crate) fn dependencies_built(&mut self, deps_dir: &Path) {
        self.dependencies = dependencies(deps_dir).ok();
    }

    /// The key text of a compile: `cargo` is the build command as it will run, `crate_dir` the
    /// folder it runs in (left out of the key, so a copied build folder keeps its results).
    pub(crate) fn library_key(
        &self,
        crate_dir: &Path,
        cargo: &str,
        source: &str,
    ) -> Option<String> {
        let dependencies = self.dependencies.as_ref()?;
        let mut key = format!("{FORMAT}\nlibrary\n{dependencies}\n");
        let shown_dir = crate_dir.display().to_string();
        writeln!(key, "{}", cargo.replace(&shown_dir, "<crate>")).ok()?;
        key.push_str(&fs::read_to_string(crate_dir.join("Cargo.toml")).ok()?);
        for dir in crate_dir.ancestors() {
            if let Ok(config) = fs::read_to_string(dir.join(".cargo").join("config.toml")) {
                let _ = write!(key, "\n{}\n{config}", dir == crate_dir);
            }
        }
        key.push_str("\n--\n");
        key.push_str(source);
        Some(key)
    }

    /// The key text of a type inference of `source`; `analysis` says what the analysis is told
    /// besides the source (which dependencies it leaves out).
    pub(crate) fn types_key(
        &self,
        crate_dir: &Path,
        analysis: &str,
        source: &str,
    ) -> Option<String> {
        let dependencies = self.dependencies.as_ref()?;
        let manifest = fs::read_to_string(crate_dir.join("Cargo.toml")).ok()?;
        Some(format!(
            "{FORMAT}\ntypes\n{dependencies}\n{analysis}\n{manifest}\n--\n{source}"
        ))
    }

    /// The library kept under `key`, copied to `destination`.
    pub(crate) fn library(&self, key: Option<&str>, destination: &Path) -> Option<SoFile> {
        let stem = self.entry(key?)?;
        // A new file renamed into place: a library of that name may still be mapped somewhere.
        let partial = destination.with_extension(format!("{}.partial", std::process::id()));
        fs::copy(stem.with_extension("so"), &partial).ok()?;
        fs::rename(&partial, destination).ok()?;
        Some(SoFile {
            path: destination.to_owned(),
        })
    }

    pub(crate) fn keep_library(&self, key: &str, library: &Path) -> Result<()> {
        self.keep(key, "so", |path| {
            fs::copy(library, path)?;
            Ok(())
        })
    }

    /// The inferred variables kept under `key`.
    pub(crate) fn types(&self, key: Option<&str>) -> Option<Vec<(String, VariableInfo)>> {
        let text = fs::read_to_string(self.entry(key?)?.with_extension("types")).ok()?;
        let mut variables = Vec::new();
        for line in text.lines() {
            let mut fields = line.splitn(3, '\t');
            let (name, mutable, type_name) = (fields.next()?, fields.next()?, fields.next()?);
            let type_name = match type_name {
                "?" => TypeName::Unknown,
                "|" => TypeName::Closure,
                named => TypeName::Named(named.strip_prefix('=')?.to_owned()),
            };
            let is_mutable = mutable == "mut";
            variables.push((
                name.to_owned(),
                VariableInfo {
                    type_name,
                    is_mutable,
                },
            ));
        }
        Some(variables)
    }

    /// Keeps `variables` under `key`, one per line: name, `mut` or `let`, and `=` and the type,
    /// `|` for a closure or `?` for a type not found.
    pub(crate) fn keep_types(&self, key: &str, variables: &[(String, VariableInfo)]) -> Result<()> {
        let mut text = String::new();
        for (name, info) in variables {
            let mutable = if info.is_mutable { "mut" } else { "let" };
            let type_name = match &info.type_name {
                TypeName::Named(named) => format!("={named}"),
                TypeName::Closure => "|".to_owned(),
                TypeName::Unknown => "?".to_owned(),
            };
            writeln!(text, "{name}\t{mutable}\t{type_name}")?;
        }
        self.keep(key, "types", |path| Ok(fs::write(path, text)?))
    }

    /// The path (without extension) of the entry whose key text equals `key`.
    fn entry(&self, key: &str) -> Option<PathBuf> {
        let stem = self.dir.join(hash(key));
        let kept = fs::read_to_string(stem.with_extension("key")).ok()?;
        if kept != key {
            return None;
        }
        // Recently used entries are the last to go.
        if let Ok(file) = fs::File::options()
            .append(true)
            .open(stem.with_extension("key"))
        {
            let _ = file.set_modified(SystemTime::now());
        }
        Some(stem)
    }

    /// Writes an entry: its value first, then its key (a reader finds an entry only by its key),
    /// each through a temporary file; then removes the least recently used entries beyond the
    /// size limit.
    fn keep(
        &self,
        key: &str,
        extension: &str,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        fs::create_dir_all(&self.dir)?;
        let stem = self.dir.join(hash(key));
        // Another process may write the same entry meanwhile: each writes its own files.
        let partial = stem.with_extension(format!("{}.partial", std::process::id()));
        write(&partial)?;
        fs::rename(&partial, stem.with_extension(extension))?;
        fs::write(&partial, key)?;
        fs::rename(&partial, stem.with_extension("key"))?;
        self.trim()
    }

    fn trim(&self) -> Result<()> {
        let mut entries = Vec::new();
        let mut total = 0;
        for file in fs::read_dir(&self.dir)? {
            let file = file?;
            let metadata = file.metadata()?;
            total += metadata.len();
            let path = file.path();
            if path.extension().is_some_and(|e| e == "key") {
                entries.push((metadata.modified()?, path));
            }
        }
        entries.sort();
        for (_, key) in entries {
            if total <= self.max_bytes {
                break;
            }
            for extension in ["so", "types", "key"] {
                let path = key.with_extension(extension);
                if let Ok(metadata) = fs::metadata(&path) {
                    total = total.saturating_sub(metadata.len());
                    fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }
}

/// Every file of the dependencies folder but the cells' own, by name, size and modification
/// time, in name order (hashed).
pub(crate) fn dependencies(deps_dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    for file in fs::read_dir(deps_dir)? {
        let file = file?;
        let name = file.file_name().to_string_lossy().into_owned();
        if ["ctx", "libctx", "libcode_"]
            .iter()
            .any(|own| name.starts_with(own))
        {
            continue;
        }
        let metadata = file.metadata()?;
        let modified = metadata
            .modified()?
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_nanos();
        files.push(format!("{name} {} {modified}", metadata.len()));
    }
    files.sort();
    Ok(hash(&files.join("\n")))
}

fn hash(text: &str) -> String {
    // Two differently seeded hashes: a file name that two texts share is unlikely, and harmless
    // (the kept key text is compared in full).
    let mut first = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut first);
    let mut second = std::collections::hash_map::DefaultHasher::new();
    (text, FORMAT).hash(&mut second);
    format!("{:016x}{:016x}", first.finish(), second.finish())
}
