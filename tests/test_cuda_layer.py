"""Which CUDA layer the TensorRT backend takes (``tensorrt._cuda``) when cuda-python is
missing, or installed but unable to start (cuda-python 12 on JetPack 5's CUDA 11.4 driver):
pycuda, else one line naming both, never a silent run elsewhere. The layers here are small
packages on ``sys.path`` that fail the way the real ones do at start."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CUDA_BINDINGS_FAILS = {  # cuda-python whose runtime cannot start on this driver
    "cuda/__init__.py": "",
    "cuda/bindings/__init__.py": "",
    "cuda/bindings/runtime.py": (
        "raise RuntimeError('CUDA driver version is insufficient for CUDA runtime version')"
    ),
}
PYCUDA_FAILS = {  # pycuda present, no GPU behind it
    "pycuda/__init__.py": "",
    "pycuda/autoinit.py": "raise OSError('cuInit failed: no CUDA-capable device is detected')",
    "pycuda/driver.py": "",
}
NO_CUDA_PYTHON = {"cuda/__init__.py": ""}  # a namespace with no bindings: an ImportError


def cuda_layer(tmp_path: Path, files: dict[str, str]) -> str:
    """stderr's last line / stdout of ``_cuda()`` in a fresh interpreter with ``files``."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from edgevid.errors import EdgevidError
        from edgevid.runtime.backends.tensorrt import _cuda
        try:
            print(type(_cuda()).__name__)
        except EdgevidError as e:
            print(f"{type(e).__name__}: {e}")
    """)
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "MissingDependencyError: 'cuda-python' is needed for TensorRT engines"),
        (NO_CUDA_PYTHON, "MissingDependencyError: 'cuda-python' is needed"),
        (
            CUDA_BINDINGS_FAILS,
            "ModelError: no CUDA layer starts here (cuda-python: CUDA driver version is "
            "insufficient for CUDA runtime version; pycuda: not installed)",
        ),
        (
            {**CUDA_BINDINGS_FAILS, **PYCUDA_FAILS},
            "ModelError: no CUDA layer starts here (cuda-python: CUDA driver version is "
            "insufficient for CUDA runtime version; pycuda: cuInit failed: no CUDA-capable "
            "device is detected)",
        ),
    ],
    ids=["neither", "no-bindings", "cuda-python-cannot-start", "both-cannot-start"],
)
def test_a_cuda_layer_that_cannot_start_is_one_line(tmp_path, files, expected):
    assert cuda_layer(tmp_path, files).startswith(expected)


def test_pycuda_is_taken_when_cuda_python_cannot_start(tmp_path):
    """The fallback runs for a failing cuda-python, not only for a missing one."""
    working_pycuda = {
        "pycuda/__init__.py": "",
        "pycuda/autoinit.py": "",
        "pycuda/driver.py": "class Stream:\n    pass\n",
    }
    assert cuda_layer(tmp_path, {**CUDA_BINDINGS_FAILS, **working_pycuda}) == "_PyCuda"
