"""The one interface every backend implements."""

from __future__ import annotations

import abc
import functools
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevid.core.artifact import check_logits
from edgevid.core.meta import ModelMeta
from edgevid.errors import ModelError

BATCHING = ("auto", "batch", "split")  # Backend.batching, StreamConfig.batching


@dataclass(frozen=True)
class BatchChoice:
    """One call for B clips, or B calls of one: measured, not assumed. A batch shares each
    weight load among its clips, but whether that wins depends on the engine, the model and
    the CPU (benchmarks/results/bench_capacity*.json, ``serving_two_due_streams``)."""

    batch: int  # B, the clips of one call
    batched_ms: float  # one call of all B (the second such call: the first warms the shape)
    split_ms: float  # B calls of one clip each
    split: bool  # run B clips as B calls from now on

    MARGIN = 0.05  # split only when it measured 5% faster: timing noise keeps the batch

    @classmethod
    def decide(cls, batch: int, batched_s: float, split_s: float) -> BatchChoice:
        split = split_s < batched_s * (1 - cls.MARGIN)
        return cls(batch, round(batched_s * 1e3, 3), round(split_s * 1e3, 3), split)


@dataclass
class BatchTrial:
    """How "auto" finds a BatchChoice for B clips on the calls it has to make anyway (no
    extra inference): the first call of B runs batched (it warms that shape), the second as
    B calls of one, the third batched again; the second and third are compared."""

    batch: int
    calls: int = 0
    split_s: float = 0.0

    def next_is_split(self) -> bool:
        return self.calls == 1

    def record(self, split: bool, seconds: float) -> BatchChoice | None:
        """Count a call that took ``seconds``; the choice once the trial is complete."""
        self.calls += 1
        if split:
            self.split_s = seconds
        return BatchChoice.decide(self.batch, seconds, self.split_s) if self.calls == 3 else None


class Backend(abc.ABC):
    """A loaded model: metadata + ``run(x) -> logits``. Construction validates the file."""

    name: str = "backend"  # e.g. "onnxruntime[CPUExecutionProvider]"
    meta: ModelMeta  # labels, T, size, mean/std, input_format, ...
    max_batch: int | None = None  # None: any batch; else run() splits bigger batches
    selection: str | None = None  # why --device auto chose this backend (printed once)
    # Several clips at once: "batch" makes one call of them all (deterministic: evaluation);
    # "split" one call per clip; "auto" measures both once per batch size and keeps the
    # faster (BatchChoice), as the runtime loop does for several due streams.
    batching: str = "batch"

    def __init__(
        self, path: str | os.PathLike, *, device: str = "auto", threads: int | None = None
    ):
        self.path = Path(path)

    @abc.abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """One call of the engine on a batch it accepts: (B, ...) -> (B, C) float32 logits."""

    def run(self, x: np.ndarray) -> np.ndarray:
        """x (B, T, 3, S, S) float32 or (B, T, S, S, 3) uint8 -> logits (B, C) float32."""
        step = max(1, min(self.max_batch or len(x), len(x)))
        calls = [self._call(x[i : i + step]) for i in range(0, len(x), step)]
        return self._checked(np.concatenate(calls))

    def _call(self, x: np.ndarray) -> np.ndarray:
        """Clips the engine accepts at once: one call, or one call per clip (batching)."""
        b = len(x)
        if b == 1 or self.batching == "batch":
            return self._run(x)
        if self.batching == "split":
            return self._split(x)
        if b in self.batch_choices:
            return self._split(x) if self.batch_choices[b].split else self._run(x)
        trial = self._trials.setdefault(b, BatchTrial(b))
        split = trial.next_is_split()
        t0 = time.perf_counter()
        logits = self._split(x) if split else self._run(x)
        choice = trial.record(split, time.perf_counter() - t0)
        if choice is not None:
            self.batch_choices[b] = choice
        return logits

    def _split(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._run(x[i : i + 1]) for i in range(len(x))])

    @functools.cached_property
    def batch_choices(self) -> dict[int, BatchChoice]:
        """Batch size -> how "auto" runs it, as measured on this backend's calls."""
        return {}

    @functools.cached_property
    def _trials(self) -> dict[int, BatchTrial]:
        return {}

    def _checked(self, logits: np.ndarray) -> np.ndarray:
        if logits.ndim != 2 or logits.shape[1] != self.meta.num_classes:
            check_logits(self.path, self.meta, logits.shape)  # raises MetadataError
        return logits.astype(np.float32, copy=False)

    def timings(self) -> dict[str, Iterable[float]]:
        """Extra stages for the run's summary (seconds per call), e.g. a remote backend's
        network time; read once at the end of a run."""
        return {}

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Free engine resources (device buffers...)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def precision_hint(precision: str | None) -> dict:
    """The keyword an OpenVINO backend takes for ``precision`` (none when not given)."""
    return {} if precision is None else {"precision": precision}


def open_backend(module: str, path: Path, device: str, threads: int | None, **options) -> Backend:
    """The BACKEND class of ``module`` (imported now, on demand) opened on ``path``."""
    return importlib.import_module(module).BACKEND(path, device=device, threads=threads, **options)


def open_candidate(path: Path, module: str, precision: str | None, threads: int | None) -> Backend:
    """One CPU candidate of ``--device auto`` (a ``choice.CANDIDATES`` entry), opened as the
    choice opens it."""
    return open_backend(module, path, "auto", threads, **precision_hint(precision))


def run_edgevid(args: list[str], *, what: str, timeout_s: float, prefix: str = "") -> str:
    """``python -m edgevid ARGS`` in a fresh process, so that what it loads never adds to this
    process's memory: its last stdout line. Past ``timeout_s`` it raises ModelError "``what``
    took over N s"; on a failure, the child's last error line after ``prefix`` ("``what``
    failed (exit code N)" when it printed none)."""
    cmd = [sys.executable, "-m", "edgevid", *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ModelError(f"{what} took over {timeout_s} s") from None
    out = r.stdout.strip().splitlines()
    if r.returncode != 0 or not out:
        lines = r.stderr.strip().splitlines()
        line = lines[-1].removeprefix("edgevid: error: ") if lines else None
        raise ModelError(prefix + line if line else f"{what} failed (exit code {r.returncode})")
    return out[-1]
