//! Build slots: one evcxr build directory per running kernel.
//!
//! evcxr writes each cell's source into its build directory and compiles it there, so two
//! kernels sharing one directory compile (and load) each other's cells. The build root
//! (`$QPLAY_BUILD_DIR`, else the project's `.evcxr/`) therefore holds numbered slots,
//! `slot-0`, `slot-1`, …: a process takes the first slot whose lock file (`slot-N.lock`) it can
//! lock and keeps the lock for its lifetime (`flock`, which the OS drops when the process ends,
//! killed or not).
//!
//! `qplay prewarm` records the slot it compiled the prelude into, with a new generation, in
//! `warm`. A slot that is not the warm one and was not copied from the current generation is
//! first replaced by a copy of the warm slot (about 1.3 GB of compiled dependencies: seconds,
//! once per slot and generation), so a second notebook's kernel starts warm too instead of
//! compiling the prelude's dependency tree for minutes.
//!
//! Beside the slots, `results/` keeps the cells' compiled libraries and inferred types by
//! content (evcxr, qplay patch 7): a slot copied from the warm one links the same dependency
//! files, so any slot reuses what another compiled for equal cells.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// How many kernels may run at once on one build root.
const MAX_SLOTS: usize = 32;
/// In the build root: which slot holds the last pre-warmed build, and its generation.
const WARM_FILE: &str = "warm";
/// In a slot: the generation it was copied from.
const GENERATION_FILE: &str = ".qplay-generation";

/// The folder, shared by a build root's slots, where evcxr keeps cells' results by content.
pub fn results_dir(slot: &Path) -> PathBuf {
    slot.parent().unwrap_or(slot).join("results")
}

/// A build directory held by this process until it ends.
pub struct Slot {
    /// The directory evcxr builds in (its `EVCXR_TMPDIR`), in the build root.
    pub dir: PathBuf,
    _lock: File,
}

/// The directory that holds the slots: `$QPLAY_BUILD_DIR`, else `<project>/.evcxr`.
pub fn build_root() -> PathBuf {
    std::env::var_os("QPLAY_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| qplay::paths::root().join(".evcxr"))
}

/// Takes the first free slot of the build root, brings it up to the pre-warmed build if it is
/// behind, and points evcxr at it (`EVCXR_TMPDIR`). Call before any other thread starts.
pub fn acquire() -> Result<Slot> {
    let root = build_root();
    std::fs::create_dir_all(&root)
        .with_context(|| format!("cannot create the build directory {}", root.display()))?;
    write_build_profile(&root)?;
    let slot = take_free(&root)?;
    refresh(&root, &slot.dir)?;
    // SAFETY: called from `main`'s thread before the kernel or the engine starts any thread.
    unsafe { std::env::set_var("EVCXR_TMPDIR", &slot.dir) };
    Ok(slot)
}

/// Records `slot` as the pre-warmed build that other slots copy (after `qplay prewarm`).
pub fn mark_warm(slot: &Slot) -> Result<()> {
    let root = slot
        .dir
        .parent()
        .with_context(|| format!("bad slot directory {}", slot.dir.display()))?;
    let generation = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    let name = slot_name(&slot.dir)?;
    let tmp = root.join(format!("{WARM_FILE}.tmp"));
    std::fs::write(&tmp, format!("{name} {generation}\n"))?;
    std::fs::rename(&tmp, root.join(WARM_FILE))?;
    Ok(())
}

/// Cargo's settings for every slot of the build root (cargo reads `.cargo/config.toml` in the
/// folders above a crate, and a profile there overrides the one in evcxr's `Cargo.toml`):
/// cells compile without optimization — they are glue around the prelude, and compile about a
/// third faster — while every dependency, the prelude among them, keeps evcxr's `opt-level = 2`.
/// Arithmetic checks and results are those of an optimized build (Rust does not relax float
/// semantics with the level). torch-sys's C++ wrappers and the zstd and bzip2 codecs compile
/// unoptimized, as in the kernel's release profile (the root `Cargo.toml` says why). Written
/// only when it differs, so cargo sees no change.
const BUILD_PROFILE: &str = "# Written by qplay (kernel/src/engine/slots.rs).\n\
    [profile.dev]\nopt-level = 0\n\n[profile.dev.package.\"*\"]\nopt-level = 2\n\n\
    [profile.dev.package.torch-sys]\nopt-level = 0\n\n\
    [profile.dev.package.zstd-sys]\nopt-level = 0\n\n\
    [profile.dev.package.bzip2-sys]\nopt-level = 0\n";

fn write_build_profile(root: &Path) -> Result<()> {
    let dir = root.join(".cargo");
    let path = dir.join("config.toml");
    if std::fs::read_to_string(&path).is_ok_and(|text| text == BUILD_PROFILE) {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&path, BUILD_PROFILE).with_context(|| format!("cannot write {}", path.display()))
}

fn take_free(root: &Path) -> Result<Slot> {
    for n in 0..MAX_SLOTS {
        let lock_path = root.join(format!("slot-{n}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        // SAFETY: a plain flock on a descriptor this function owns.
        let taken = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if taken {
            return Ok(Slot {
                dir: root.join(format!("slot-{n}")),
                _lock: lock,
            });
        }
    }
    bail!(
        "all {MAX_SLOTS} build slots in {} are in use by running kernels; shut one down",
        root.display()
    )
}

/// The pre-warmed slot's name and generation, if `qplay prewarm` has run.
fn warm(root: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(root.join(WARM_FILE)).ok()?;
    let (name, generation) = text.trim().split_once(' ')?;
    Some((name.to_string(), generation.to_string()))
}

fn slot_name(dir: &Path) -> Result<String> {
    dir.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("bad slot directory {}", dir.display()))
}

/// Replaces `dir` by a copy of the warm slot unless it is the warm slot or already a copy of
/// its generation. The copy goes to `<dir>.partial` first, so an interrupted copy is never
/// mistaken for a build.
fn refresh(root: &Path, dir: &Path) -> Result<()> {
    let Some((warm_name, generation)) = warm(root) else {
        return Ok(());
    };
    let source = root.join(&warm_name);
    let current = std::fs::read_to_string(dir.join(GENERATION_FILE)).unwrap_or_default();
    if slot_name(dir)? == warm_name || current.trim() == generation || !source.is_dir() {
        return Ok(());
    }
    let start = std::time::Instant::now();
    let partial = dir.with_extension("partial");
    for stale in [partial.as_path(), dir] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("cannot remove {}", stale.display()))?;
        }
    }
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(&source)
        .arg(&partial)
        .status()
        .context("cannot run cp")?;
    if !status.success() {
        bail!(
            "copying the pre-warmed build {} to {} failed ({status})",
            source.display(),
            partial.display()
        );
    }
    std::fs::write(partial.join(GENERATION_FILE), &generation)?;
    std::fs::rename(&partial, dir)?;
    eprintln!(
        "qplay: build slot {} copied from the pre-warmed {} in {:.1} s",
        dir.display(),
        warm_name,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_slots_are_not_shared_and_freed_slots_are_reused() {
        let root = tempfile::tempdir().unwrap();
        {
            let a = take_free(root.path()).unwrap();
            let b = take_free(root.path()).unwrap();
            assert_eq!(a.dir, root.path().join("slot-0"));
            assert_eq!(b.dir, root.path().join("slot-1"));
            drop(a);
            let c = take_free(root.path()).unwrap();
            assert_eq!(c.dir, root.path().join("slot-0"));
        }
    }

    #[test]
    fn cells_compile_unoptimized_and_dependencies_optimized() {
        let root = tempfile::tempdir().unwrap();
        write_build_profile(root.path()).unwrap();
        let path = root.path().join(".cargo/config.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[profile.dev]\nopt-level = 0"), "{text}");
        assert!(
            text.contains("[profile.dev.package.\"*\"]\nopt-level = 2"),
            "{text}"
        );
        // Unchanged: not written again (cargo would see a newer file).
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_build_profile(root.path()).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
    }

    #[test]
    fn a_slot_behind_the_warm_build_is_replaced_by_a_copy() {
        let root = tempfile::tempdir().unwrap();
        {
            let warm_slot = take_free(root.path()).unwrap();
            std::fs::create_dir_all(warm_slot.dir.join("target")).unwrap();
            std::fs::write(warm_slot.dir.join("target/dep.rlib"), "compiled").unwrap();
            mark_warm(&warm_slot).unwrap();

            let other = take_free(root.path()).unwrap();
            std::fs::create_dir_all(&other.dir).unwrap();
            std::fs::write(other.dir.join("stale"), "old build").unwrap();
            refresh(root.path(), &other.dir).unwrap();
            assert_eq!(
                std::fs::read_to_string(other.dir.join("target/dep.rlib")).unwrap(),
                "compiled"
            );
            assert!(!other.dir.join("stale").exists());

            // Up to date now: a second refresh keeps what the slot built since.
            std::fs::write(other.dir.join("own"), "cell").unwrap();
            refresh(root.path(), &other.dir).unwrap();
            assert!(other.dir.join("own").exists());
            // The warm slot itself is never replaced.
            refresh(root.path(), &warm_slot.dir).unwrap();
            assert!(warm_slot.dir.join("target/dep.rlib").exists());
        }
    }
}
