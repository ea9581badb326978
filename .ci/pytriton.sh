#!/usr/bin/env bash
# A real Triton Inference Server for the tests (tests/test_triton_server.py), without
# Docker: the nvidia-pytriton wheel ships the `tritonserver` binary (2.5x) and its Python
# backend. It is unpacked into an ignored cache folder, never installed into the venv
# (the wheel pins numpy<2). Idempotent; prints the folder. Usage: .ci/pytriton.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
VERSION=0.7.0
DEST=.cache/pytriton
if [ -x "$DEST/pytriton/tritonserver/bin/tritonserver" ] && [ -f "$DEST/VERSION" ] \
    && [ "$(cat "$DEST/VERSION")" = "$VERSION" ]; then
    echo "$DEST"; exit 0
fi
case "$(uname -m)" in x86_64|aarch64) ;; *) echo "no nvidia-pytriton wheel for $(uname -m)" >&2; exit 1;; esac
rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp/wheel"
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$DEST.tmp/wheel" "nvidia-pytriton==$VERSION" >&2
"$PY" -m zipfile -e "$DEST.tmp"/wheel/nvidia_pytriton-*.whl "$DEST.tmp" >&2
rm -rf "$DEST.tmp/wheel"
chmod +x "$DEST.tmp"/pytriton/tritonserver/bin/tritonserver \
    "$DEST.tmp"/pytriton/tritonserver/python_backend_stubs/*/triton_python_backend_stub
echo "$VERSION" > "$DEST.tmp/VERSION"
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
echo "$DEST"
