//! qplay patch: a compile whose Cargo inputs are unchanged since the last Cargo run runs the
//! compiler itself, with the command and environment Cargo gave it then.
//!
//! Before it runs rustc once, for the cell's crate, Cargo checks every dependency and reads its
//! configuration: about 0.2 s of CPU per cell, for an answer that cannot change while nothing it
//! reads changes. Each Cargo build runs with `-vv`, which shows that rustc command with the
//! environment Cargo set for it; it is kept beside the text of everything Cargo's answer depends
//! on: Cargo's own command, the manifest, the Cargo configuration of the folder and its parents,
//! the name, size and modification time of every file in the dependencies folder and of every
//! file under the folders of path dependencies (a dependency being edited). The next compile whose
//! inputs have equal text runs the kept command; any difference, or a failure the compiler does
//! not explain with an error in the cell, goes back to Cargo.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::time::SystemTime;

use super::CRATE_NAME;

#[derive(Default)]
pub(crate) struct Direct {
    /// The inputs of the last Cargo build and the rustc command it ran for the cell's crate.
    last: Option<(String, Invocation)>,
}

#[derive(Debug, PartialEq)]
struct Invocation {
    env: Vec<(String, String)>,
    program: String,
    args: Vec<String>,
}

impl Direct {
    /// The rustc command to run instead of Cargo, when `inputs` equal the last Cargo build's;
    /// with the incremental state of `cell`'s own compiles, when the cell is named.
    pub(crate) fn command(
        &self,
        inputs: Option<&str>,
        crate_dir: &Path,
        cell: Option<&str>,
    ) -> Option<Command> {
        let (kept, invocation) = self.last.as_ref()?;
        if inputs? != kept {
            return None;
        }
        let mut command = Command::new(&invocation.program);
        command
            .args(invocation.args.iter().map(|arg| match cell {
                Some(cell) => cell_incremental(arg, cell),
                None => arg.clone(),
            }))
            .envs(invocation.env.iter().map(|(k, v)| (k, v)))
            .current_dir(crate_dir);
        Some(command)
    }

    /// Keeps the rustc command of a Cargo build (its `-vv` stderr) under the build's `inputs`,
    /// read after it ran; forgets it when either is missing.
    pub(crate) fn cargo_ran(&mut self, inputs: Option<String>, cargo_stderr: &[u8]) {
        self.last = inputs.zip(cell_invocation(&String::from_utf8_lossy(cargo_stderr)));
    }

    /// Forgets the kept command (a direct run failed without an error in the cell).
    pub(crate) fn forget(&mut self) {
        self.last = None;
    }
}

/// Cells whose incremental states are kept apart; more cells share them (a shared state costs
/// time, never correctness: rustc checks what it reuses).
const INCREMENTAL_CELLS: u64 = 32;

/// `arg` with an `incremental=DIR` value moved to a folder of `cell`'s own beside `DIR`. rustc
/// reuses from its incremental state what the new source left unchanged; consecutive compiles
/// are mostly of different cells, whose states have nothing to give each other, while an edited
/// cell's last compile has nearly everything (measured: 0.21–0.28 s against 0.35–0.48 s for a
/// late playground cell).
fn cell_incremental(arg: &str, cell: &str) -> String {
    use std::hash::{Hash, Hasher};
    let Some(dir) = arg.strip_prefix("incremental=") else {
        return arg.to_owned();
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    cell.hash(&mut hasher);
    let bucket = hasher.finish() % INCREMENTAL_CELLS;
    format!(
        "incremental={}-cells/{bucket:02}",
        dir.trim_end_matches('/')
    )
}

/// Where rustc writes the cell's library: its `--out-dir`.
pub(crate) fn library_path(command: &Command) -> Option<PathBuf> {
    let mut args = command.get_args();
    while let Some(arg) = args.next() {
        if arg == "--out-dir" {
            return Some(
                Path::new(args.next()?).join(super::shared_object_name_from_crate_name(CRATE_NAME)),
            );
        }
    }
    None
}

/// The text of everything a Cargo build of `crate_dir` depends on besides the cell's source.
pub(crate) fn inputs(crate_dir: &Path, deps_dir: &Path, cargo: &str) -> Option<String> {
    let manifest = fs::read_to_string(crate_dir.join("Cargo.toml")).ok()?;
    let mut text = format!("{cargo}\n{manifest}\n");
    for dir in crate_dir.ancestors() {
        if let Ok(config) = fs::read_to_string(dir.join(".cargo").join("config.toml")) {
            let _ = write!(text, "{}\n{config}\n", dir.display());
        }
    }
    writeln!(text, "{}", super::results::dependencies(deps_dir).ok()?).ok()?;
    for dir in path_dependencies(&manifest) {
        files(&crate_dir.join(dir), &mut text).ok()?;
    }
    Some(text)
}

/// Appends path, size and modification time of the files under `dir`, leaving out `target` and
/// hidden folders.
fn files(dir: &Path, text: &mut String) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let metadata = entry.metadata()?;
        if metadata.is_dir() {
            if name != "target" && !name.starts_with('.') {
                files(&entry.path(), text)?;
            }
            continue;
        }
        let modified = metadata
            .modified()?
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let _ = writeln!(
            text,
            "{} {} {modified}",
            entry.path().display(),
            metadata.len()
        );
    }
    Ok(())
}

/// The `path = "…"` values of the manifest's dependencies.
fn path_dependencies(manifest: &str) -> Vec<PathBuf> {
    let Ok(table) = manifest.parse::<toml::Table>() else {
        return Vec::new();
    };
    let Some(dependencies) = table.get("dependencies").and_then(|d| d.as_table()) else {
        return Vec::new();
    };
    dependencies
        .values()
        .filter_map(|d| d.get("path")?.as_str().map(PathBuf::from))
        .collect()
}

/// The rustc command Cargo ran for the cell's crate, from the `Running` line `-vv` shows.
fn cell_invocation(stderr: &str) -> Option<Invocation> {
    stderr.lines().rev().find_map(|line| {
        let shown = line
            .trim_start()
            .strip_prefix("Running `")?
            .strip_suffix('`')?;
        let words = shell_words(shown)?;
        let program = words.iter().position(|w| !is_assignment(w))?;
        let args = words[program + 1..].to_vec();
        let crate_name = args.iter().position(|a| a == "--crate-name")?;
        if args.get(crate_name + 1)? != CRATE_NAME {
            return None;
        }
        let env = words[..program]
            .iter()
            .filter_map(|w| w.split_once('='))
            // Cargo's jobserver lives only as long as Cargo.
            .filter(|(k, _)| !k.ends_with("MAKEFLAGS") && *k != "MFLAGS")
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(Invocation {
            env,
            program: words[program].clone(),
            args,
        })
    })
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Splits a command as Cargo shows it: words apart at spaces, a word quoted whole in `'…'` when
/// it has other characters than letters, digits and `-_=/,.+`, a quote inside written `'\''`.
fn shell_words(shown: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = shown.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).push(chars.next()?),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Some(words)
}
