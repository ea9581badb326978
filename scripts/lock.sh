#!/usr/bin/env bash
# Regenerate requirements/lock.txt: the exact versions the README's numbers and CI use.
#
#   scripts/lock.sh [VENV]        freeze VENV (default .venv), which has every extra installed
#
# To move to newer releases: install into a fresh venv WITHOUT the lock, then freeze it, then
# rerun the demo and commit its results with the lock (README, "Reproducible environment"):
#   python3 -m venv /tmp/fresh && /tmp/fresh/bin/pip install -e ".[train,export,openvino,mqtt,triton,dev,docs]"
#   scripts/lock.sh /tmp/fresh && edgevid demo --out /tmp/demo && python benchmarks/demo_table.py --from /tmp/demo
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
out=requirements/lock.txt
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
    echo "# The locked environment (pip constraints). Regenerate: scripts/lock.sh VENV"
    echo "# Use: pip install -c requirements/lock.txt -e \".[extras]\""
    echo "# Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())')," \
        "$(uname -m); local version labels dropped (torch 2.13.0+cpu -> torch==2.13.0)."
    # edgevid itself is not locked; +cpu/+cu126 labels name a build, not a release
    "$venv/bin/python" -m pip freeze --exclude-editable \
        | grep -v -i -E '^(edgevid|-e |#)' | sed -E 's/\+[A-Za-z0-9.]+$//' | LC_ALL=C sort -f
} >"$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "wrote $out ($(grep -c '==' "$out") pins)" >&2
