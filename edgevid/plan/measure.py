"""One candidate measured on this device, through the runtime's own backends. No torch.

Each measurement runs in a child process (the hidden ``edgevid plan-measure``), so its peak
RSS is the candidate's own and a crash of one engine costs one row, not the plan:

    load_backend(graph, --device, --precision, --threads)   exactly what `edgevid run` opens
    -> warm-up, then ``rounds`` timed inferences of a batch of ``streams`` clips
       (the batch `edgevid run` makes of N streams): p50 / p95 ms, clips/s
    -> peak RSS (VmHWM), before any clip is decoded
    -> top-1 on the eval split (when a manifest is given)

Every result is cached in ``CACHE/<candidate>.json`` under a key of everything it depends on
(the graph file's size and mtime, CPU, threads, engine versions, backend, batch, rounds, the
eval clips): an interrupted plan resumes where it stopped, and a changed input measures again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from edgevid import __version__
from edgevid._atomic import write_json
from edgevid.plan.search import Candidate, Row
from edgevid.plan.space import BACKENDS
from edgevid.runtime.backends.base import run_edgevid

TIMEOUT_S = 3600  # one candidate's load + timing + accuracy in its child process


def timing_input(meta, streams: int) -> np.ndarray:
    """Zeros shaped like one batch of ``streams`` clips the graph takes."""
    t, s = meta.num_frames, meta.image_size
    if meta.input_format == "uint8":
        return np.zeros((streams, t, s, s, 3), np.uint8)  # (B, T, H, W, C)
    return np.zeros((streams, t, 3, s, s), np.float32)  # (B, T, C, H, W)


def measure(
    model: str | os.PathLike,
    backend: str,
    threads: int | None,
    *,
    streams: int = 1,
    rounds: int = 10,
    manifest: str | os.PathLike | None = None,
    split: str = "test",
) -> dict:
    """Measure ``model`` on ``backend`` in this process (the child's side)."""
    from edgevid.runtime.backends import load_backend
    from edgevid.runtime.bench import model_size_mb, peak_rss_mb

    spec = BACKENDS[backend]
    t0 = time.perf_counter()
    engine = load_backend(model, device=spec.device, threads=threads, precision=spec.hint)
    try:
        x = timing_input(engine.meta, streams)
        engine.batching = "auto"  # N streams run as `edgevid run` runs them (StreamConfig)
        for _ in range(3 if streams > 1 else 1):  # allocation, planning, batch-vs-split trial
            engine.run(x)  # not timed
        load_s = time.perf_counter() - t0
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            engine.run(x)
            times.append((time.perf_counter() - t) * 1e3)
        rss = peak_rss_mb()  # before the eval clips are decoded: the model's own
        engine.batching = "batch"  # accuracy: the same calls whatever the timings
        accuracy = None if manifest is None else _top1(engine, manifest, split)
    finally:
        engine.close()
    p50 = float(np.percentile(times, 50))
    return {
        "p50_ms": round(p50, 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
        "clips_per_s": round(streams * 1e3 / p50, 3),
        "rss_mb": round(rss, 1),
        "size_mb": round(model_size_mb(model), 3),
        "accuracy": accuracy,
        "load_s": round(load_s, 3),
        "rounds": rounds,
        "engine": engine.name,
    }


def _top1(engine, manifest: str | os.PathLike, split: str) -> float:
    from edgevid.core.clips import clip_batches
    from edgevid.train.evaluate import evaluate, labelled_clips

    meta = engine.meta
    paths, targets = labelled_clips(manifest, meta.labels, split)
    return evaluate(engine.run, clip_batches(paths, targets, meta, 8), meta.labels).top1


def measure_in_child(model: Path, cand: Candidate, **kw) -> dict:
    """:func:`measure` in a fresh process (``edgevid plan-measure``); one line on failure."""
    args = ["plan-measure", str(model), cand.backend]
    args += ["--threads", str(cand.threads)] if cand.threads else []
    for key, value in kw.items():
        if value is not None:
            args += [f"--{key}", str(value)]
    what = f"measuring {cand.name}"
    return json.loads(run_edgevid(args, what=what, timeout_s=TIMEOUT_S, prefix=f"{what}: "))


def cache_key(model: Path, cand: Candidate, streams: int, rounds: int,
              manifest: Path | None, split: str) -> dict:  # fmt: skip
    """Everything a measurement depends on; a cached result with another key is stale."""
    from edgevid.runtime.backends.choice import cache_key as engine_key

    clips = None
    if manifest is not None:
        text = json.dumps(json.loads(manifest.read_text(encoding="utf-8")), sort_keys=True)
        clips = hashlib.sha256(f"{split}:{text}".encode()).hexdigest()[:16]
    return {**engine_key(model, cand.threads), "model": model.name, "backend": cand.backend,
            "streams": streams, "rounds": rounds, "eval": clips,
            "edgevid": __version__}  # fmt: skip


def cache_file(cache: Path, cand: Candidate) -> Path:
    return cache / (cand.name.replace(" ", "_") + ".json")


def cached_row(
    model: Path,
    cand: Candidate,
    cache: Path,
    *,
    streams: int,
    rounds: int,
    manifest: Path | None,
    split: str = "test",
) -> tuple[Row, bool]:
    """The measured row of ``cand`` and whether it came from the cache."""
    key = cache_key(model, cand, streams, rounds, manifest, split)
    path = cache_file(cache, cand)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        stored = None
    if isinstance(stored, dict) and stored.get("key") == key:
        return row_from(cand, stored["result"], str(model)), True
    result = measure_in_child(model, cand, streams=streams, rounds=rounds,
                              manifest=manifest, split=split if manifest else None)  # fmt: skip
    write_json(path, {"key": key, "result": result})  # whole, or not at all
    return row_from(cand, result, str(model)), False


def row_from(cand: Candidate, result: dict, model: str) -> Row:
    extra = {k: result[k] for k in ("load_s", "rounds", "engine") if k in result}
    return Row(cand, result["accuracy"], result["p50_ms"], result["p95_ms"],
               result["clips_per_s"], result["rss_mb"], result["size_mb"],
               {**extra, "model": model})  # fmt: skip
