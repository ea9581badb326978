"""Runtime benchmark: a model file on a video file, end to end, in a fresh process.

Each model runs in its own child process (``edgevid bench-model``, hidden) so that
its peak RSS is its own. Reported per model: end-to-end fps of the whole loop (decode ->
buffer -> inference) on a file read as fast as it decodes, time per stage, the runtime's
overhead (decode + preprocess + buffer) as a fraction of inference time, peak RSS against
the budget (model file size + 300 MB), and whether it keeps up with a ``target_fps``
camera at one inference every ``every`` frames.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgevid.errors import EdgevidError

RSS_BUDGET_MB = 300.0  # peak RSS may exceed the model file size by this much
OVERHEAD_BUDGET = 0.10  # decode + preprocess + buffer <= 10% of inference time


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    Linux: VmHWM, which starts afresh at exec (ru_maxrss does not: a child started by a
    big parent inherits the parent's peak). Elsewhere: ru_maxrss.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, else KiB


def model_size_mb(path: str | os.PathLike) -> float:
    """The model file plus ONNX external data beside it (``<model>.onnx.data``), in MB."""
    path = Path(path)
    files = [path, path.with_name(path.name + ".data")]
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def bench_model(
    model: str | os.PathLike,
    video: str | os.PathLike,
    *,
    every: int = 8,
    max_frames: int | None = None,
    target_fps: float = 30.0,
    device: str = "auto",
    threads: int | None = None,
) -> dict:
    """Run the streaming loop of ``model`` over ``video`` once; return the measurements."""
    from edgevid.runtime.classifier import Classifier
    from edgevid.runtime.streamer import Streamer

    rss_start = peak_rss_mb()
    t0 = time.perf_counter()
    clf = Classifier(model, device=device, threads=threads)
    meta = clf.meta
    warm = np.zeros((1, meta.num_frames, meta.image_size, meta.image_size, 3), np.uint8)
    clf.run(clf.to_input(warm))  # the first call allocates and plans: not measured
    load_s = time.perf_counter() - t0
    streamer = Streamer(video, clf, every=every, max_frames=max_frames, smooth="none")
    for _ in streamer.steps():
        pass
    s = streamer.stats.summary()
    size = model_size_mb(model)
    infer = s["stages_ms"].get("inference", {})
    totals = s["stage_totals_s"]
    per_window_s = (
        (sum(totals.values()) / s["inferences"]) if s["inferences"] else float("inf")
    )  # all stages per inference: decode of `every` frames, preprocess, buffer, inference
    rss = peak_rss_mb()
    return {
        "model": str(model),
        "video": str(video),
        "backend": clf.backend.name,
        "variant": meta.variant,
        "precision": meta.precision,
        "input_format": meta.input_format,
        "size_mb": round(size, 2),
        "every": every,
        "frames": s["frames_read"],
        "inferences": s["inferences"],
        "load_s": round(load_s, 3),
        "e2e_fps": s["fps"],
        "sustainable_fps": round(every / per_window_s, 2) if s["inferences"] else 0.0,
        "stages_ms": s["stages_ms"],
        "stage_totals_s": totals,
        "inference_ms_p50": infer.get("p50"),
        "overhead_ratio": s["overhead_ratio"],
        "overhead_ok": s["overhead_ratio"] is not None and s["overhead_ratio"] <= OVERHEAD_BUDGET,
        "rss_start_mb": round(rss_start, 1),
        "peak_rss_mb": round(rss, 1),
        "rss_budget_mb": round(size + RSS_BUDGET_MB, 1),
        "rss_ok": rss <= size + RSS_BUDGET_MB,
        "target_fps": target_fps,
        "keeps_up": s["fps"] >= target_fps,
    }


def bench_models(models: list[str | os.PathLike], video: str | os.PathLike, **kw) -> list[dict]:
    """:func:`bench_model` for each model, each in a fresh child process."""
    results = []
    for model in models:
        cmd = [sys.executable, "-m", "edgevid", "bench-model", str(model), str(video)]
        for key, value in kw.items():
            if value is not None:
                cmd += [f"--{key.replace('_', '-')}", str(value)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
            raise EdgevidError(f"bench of {model} failed: {lines[-1].removeprefix('edgevid: ')}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'model':<28}{'prec':>13}{'MB':>8}{'infer ms':>10}{'e2e fps':>9}{'overhead':>10}"
        f"{'RSS MB':>9}{'budget':>8}  keeps up"
    )
    lines = [head]
    for r in rows:
        ok = "yes" if r["keeps_up"] else "no"
        lines.append(
            f"{Path(r['model']).name:<28}{r['precision']:>13}{r['size_mb']:>8.1f}"
            f"{r['inference_ms_p50'] or 0:>10.1f}{r['e2e_fps']:>9.1f}"
            f"{100 * (r['overhead_ratio'] or 0):>9.1f}%{r['peak_rss_mb']:>9.0f}"
            f"{r['rss_budget_mb']:>8.0f}  {ok} ({r['target_fps']:g} fps, 1 inference / "
            f"{r['every']} frames)"
        )
    return "\n".join(lines)
