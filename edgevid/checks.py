"""``edgevid checks``: the environment report a bug report starts with.

Python, edgevid, the packages edgevid uses (versions from their metadata: nothing heavy is
imported for a version), OpenCV's video I/O (FFmpeg, GStreamer, V4L from
``cv2.getBuildInformation()``), ONNX Runtime's execution providers, OpenVINO's devices,
TensorRT, CUDA (torch's view and ``nvidia-smi``), and the CPU: model, the instruction-set
flags the INT8/bf16 paths depend on, cores and memory. Linux facts come from ``/proc``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgevid import __version__

# Distributions reported by version (None: not installed), in the order shown.
PACKAGES = (
    "numpy", "opencv-python-headless", "opencv-python", "pillow", "onnxruntime",
    "onnxruntime-gpu", "openvino", "tensorrt", "torch", "transformers", "onnx", "accelerate",
    "paho-mqtt", "tritonclient",
)  # fmt: skip
# CPU flags that decide the fast CPU paths (VNNI/AMX for INT8, bf16/fp16 for OpenVINO).
CPU_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd",
)  # fmt: skip
VIDEO_IO = ("FFMPEG", "GStreamer", "V4L/V4L2", "DirectShow", "AVFoundation")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def opencv_video_io() -> dict[str, str]:
    """The "Video I/O" section of OpenCV's build information: backend -> YES/NO (version)."""
    from edgevid.core._cv import cv2

    info = cv2.getBuildInformation()
    section = info.split("Video I/O:", 1)[1].split("\n\n", 1)[0] if "Video I/O:" in info else ""
    found = {}
    for line in section.splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() in VIDEO_IO:
            found[key.strip()] = " ".join(value.split())
    return {"version": cv2.__version__, **found}


def onnxruntime_facts() -> dict[str, Any]:
    if importlib.util.find_spec("onnxruntime") is None:
        return {"installed": False}
    import onnxruntime as ort

    return {"installed": True, "version": ort.__version__, "device": ort.get_device(),
            "providers": ort.get_available_providers()}  # fmt: skip


def openvino_facts() -> dict[str, Any]:
    if importlib.util.find_spec("openvino") is None:
        return {"installed": False}
    import openvino as ov

    core = ov.Core()
    devices = {}
    for d in core.available_devices:
        try:
            devices[d] = str(core.get_property(d, "FULL_DEVICE_NAME"))
        except RuntimeError as e:  # a device that lists but cannot be queried
            devices[d] = f"unavailable ({' '.join(str(e).split())[:120]})"
    return {"installed": True, "version": ov.get_version(), "devices": devices}


def tensorrt_facts() -> dict[str, Any]:
    if importlib.util.find_spec("tensorrt") is None:
        return {"installed": False}
    import tensorrt as trt

    return {"installed": True, "version": trt.__version__}


def cuda_facts() -> dict[str, Any]:
    """torch's CUDA (when torch is installed) and the GPUs nvidia-smi lists (when it exists)."""
    facts: dict[str, Any] = {"nvidia_smi": None, "torch_cuda": None}
    smi = shutil.which("nvidia-smi")
    if smi:
        q = [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        try:
            r = subprocess.run(q, capture_output=True, text=True, timeout=10)
            facts["nvidia_smi"] = r.stdout.strip().splitlines() or [r.stderr.strip()]
        except (OSError, subprocess.TimeoutExpired) as e:
            facts["nvidia_smi"] = [f"failed: {e}"]
    if importlib.util.find_spec("torch") is not None:
        import torch

        ok = torch.cuda.is_available()
        facts["torch_cuda"] = {
            "available": ok, "version": torch.version.cuda,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if ok else [],
            "threads": torch.get_num_threads(),
        }  # fmt: skip
    return facts


def cpu_facts(proc: Path = Path("/proc")) -> dict[str, Any]:
    """CPU model, the flags in :data:`CPU_FLAGS` it has, cores and memory (Linux: /proc)."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = proc / "cpuinfo"
    if cpuinfo.is_file():
        text = cpuinfo.read_text(errors="replace")
        m = re.search(r"^(?:model name|Hardware|Model)\s*:\s*(.+)$", text, re.M)
        model = m.group(1).strip() if m else model
        f = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
        flags = set(f.group(1).split()) if f else set()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = {}
    meminfo = proc / "meminfo"
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                mem[key] = round(int(value.split()[0]) / 2**20, 1)  # kB -> GiB
    return {
        "model": model, "arch": platform.machine(), "logical_cpus": os.cpu_count(),
        "usable_cpus": usable, "flags": [f for f in CPU_FLAGS if f in flags],
        "memory_total_gib": mem.get("MemTotal"), "memory_available_gib": mem.get("MemAvailable"),
    }  # fmt: skip


def environment_report() -> dict[str, Any]:
    """Everything ``edgevid checks`` prints, as one JSON-able dict."""
    return {
        "python": {
            "version": platform.python_version(),
            "executable": sys.executable,
            "platform": platform.platform(),
        },  # fmt: skip
        "edgevid": {"version": __version__, "location": str(Path(__file__).parent)},
        "packages": package_versions(),
        "opencv": opencv_video_io(),
        "onnxruntime": onnxruntime_facts(),
        "openvino": openvino_facts(),
        "tensorrt": tensorrt_facts(),
        "cuda": cuda_facts(),
        "cpu": cpu_facts(),
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned ``key: value`` lines, one section per heading."""
    lines = []
    for section, facts in report.items():
        lines.append(section)
        for key, value in facts.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
            elif isinstance(value, list):
                value = ", ".join(map(str, value)) or "-"
            elif value is None:
                value = "not installed" if section == "packages" else "-"
            lines.append(f"  {key:<24} {value}")
    return "\n".join(lines)
