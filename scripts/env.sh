# Environment for building and running qplay from this checkout; sourced by the Makefile and
# scripts. Paths point into the project's .venv (libtorch and libonnxruntime come from wheels).
QPLAY_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export QPLAY_HOME
VENV="$QPLAY_HOME/.venv"
SITE_PACKAGES="$(echo "$VENV"/lib/python3*/site-packages)"
export LIBTORCH="$SITE_PACKAGES/torch"
export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ORT_DYLIB_PATH="$SITE_PACKAGES/onnxruntime/capi/libonnxruntime.so.1.31.1"
export PATH="$QPLAY_HOME/target/release:$VENV/bin:$PATH"
