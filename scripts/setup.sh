#!/usr/bin/env bash
# Sets up a checkout: the Python .venv (pinned), then a release build of the workspace.
# Idempotent: each step is skipped when its inputs have not changed since it last succeeded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STAMPS=$ROOT/.stamps
mkdir -p "$STAMPS"

# Runs "$@" unless the stamp named $1 holds the hash of the files listed in $2 (globs allowed).
step() {
    local name=$1 inputs=$2
    shift 2
    local want
    # shellcheck disable=SC2086
    want=$(cat $inputs | sha256sum | cut -d' ' -f1)
    if [[ -f $STAMPS/$name && $(cat "$STAMPS/$name") == "$want" ]]; then
        return 0
    fi
    echo "==> setup: $name"
    "$@"
    echo "$want" >"$STAMPS/$name"
}

python_env() {
    local py=${PYTHON:-python3.11}
    command -v "$py" >/dev/null || py=python3
    [[ -x .venv/bin/python ]] || "$py" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-torch.txt
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
}

step python "requirements.txt requirements-torch.txt constraints.txt" python_env
# qplay's plug-ins for Jupyter tools (papermill's Rust parameters), into the venv.
step plugins "python/pyproject.toml python/qplay_jupyter/*.py" \
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps ./python

# shellcheck source=env.sh
source scripts/env.sh
# Every crate of the lock file, for all targets: the kernel's evcxr build resolves its own lock
# offline and needs them in Cargo's cache (plotters names wasm-only crates that a plain build
# for this machine never downloads).
cargo fetch --quiet
echo "==> setup: cargo build --release"
cargo build --release --workspace --quiet

# The kernelspec "qplay" in the venv, where `make lab` (the venv's Jupyter) finds it.
step kernelspec "target/release/qplay scripts/env.sh" qplay install --sys-prefix

# Checkouts from before build slots had one build directory, .evcxr itself: it becomes slot 0.
if [[ -d .evcxr/target && ! -e .evcxr/slot-0 ]]; then
    mkdir .evcxr/slot-0
    mv .evcxr/Cargo.toml .evcxr/Cargo.lock .evcxr/src .evcxr/target .evcxr/slot-0/
    if [[ -d .evcxr/.cargo ]]; then mv .evcxr/.cargo .evcxr/slot-0/; fi
fi
# Compile the prelude once into a persistent evcxr build slot (.evcxr/slot-N), which every new
# kernel starts from, so that its first cell does not pay for the dependency tree (minutes) but
# only for itself (kernel/src/engine/slots.rs).
step evcxr "Cargo.lock prelude/Cargo.toml prelude/build.rs prelude/csrc/*.cpp prelude/src/*.rs prelude/src/*/*.rs prelude/src/*/*/*.rs kernel/src/engine/slots.rs" qplay prewarm
# Run the playground once, headless: the build root then keeps its cells' compiled libraries and
# inferred types (evcxr patch 7, kernel/src/engine/slots.rs), so a user's first Run All of it loads them
# instead of compiling each cell (seconds instead of half a minute). Nothing but time depends on
# it: a kept result is used only for an equal cell on equal dependencies.
fill_results() {
    local out
    out=$(mktemp -d)
    (cd notebooks && jupyter nbconvert --to notebook --execute playground.ipynb \
        --ExecutePreprocessor.kernel_name=qplay --output-dir "$out" --log-level=WARN)
    rm -rf "$out"
}
step results "target/release/qplay notebooks/playground.ipynb prelude/src/*.rs prelude/src/*/*.rs prelude/src/*/*/*.rs" fill_results
