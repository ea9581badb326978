"""The two-line API: a video (file, image folder, any source URI) and a model in, the
action out.

    import edgevid
    result = edgevid.predict("bikes.mp4", "exports/prune4.onnx")
    print(result.label, result.score, result.segments)

A model is any of: an ``.onnx`` graph, a TensorRT ``.engine``/``.plan``, an export folder
(``edgevid export --out DIR``), or a training checkpoint folder (``RUN/best``, or the run
folder itself), which is exported to ONNX on the fly when torch is installed (the graph is
cached; without torch: one clear error saying how to export it).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevid.core.meta import META_FILENAME, ModelMeta
from edgevid.errors import ModelError

MODEL_EXTENSIONS = (".onnx", ".engine", ".plan")  # what a model folder is searched for


# --- model forms ---------------------------------------------------------------------------------
def resolve_model(model: str | os.PathLike) -> Path | str:
    """A model file for any accepted form (URIs such as triton://... pass through)."""
    text = str(model)
    if "://" in text:
        return text
    path = Path(model)
    if not path.is_dir():
        return path  # a file (or a missing one: the backend reports it)
    if (path / "best" / META_FILENAME).is_file():  # a training run folder
        path = path / "best"
    if (path / META_FILENAME).is_file() and not _model_files(path):
        return export_checkpoint(path)
    return pick_export(path)


def _model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in MODEL_EXTENSIONS)


def pick_export(folder: Path) -> Path:
    """The graph of an export folder: the only one, else the FP32 ONNX graph (the reference
    every other precision was verified against); pass a file to choose another."""
    files = _model_files(folder)
    if not files:
        raise ModelError(
            f"{folder}: no model in this folder (no {', '.join(MODEL_EXTENSIONS)} file, "
            f"no {META_FILENAME} checkpoint)"
        )
    if len(files) == 1:
        return files[0]
    for f in files:
        side = f.with_suffix(".json")
        if f.suffix == ".onnx" and side.is_file() and ModelMeta.load(side).precision == "fp32":
            return f
    names = ", ".join(f.name for f in files)
    raise ModelError(f"{folder}: several models and no FP32 graph among them ({names}); pass one")


def export_checkpoint(checkpoint: Path) -> Path:
    """Export a training checkpoint to an FP32 ONNX graph once; later calls reuse it."""
    from edgevid.errors import MissingDependencyError, require

    try:
        require("torch", "train", "running a training checkpoint")
        require("onnx", "export", "running a training checkpoint")
    except MissingDependencyError as e:
        raise ModelError(
            f"{checkpoint}: a training checkpoint; the runtime needs an exported graph: "
            f"run `edgevid export --checkpoint {checkpoint}` where torch is installed "
            f"and pass the .onnx ({e.package} is not installed here)"
        ) from None
    from edgevid.export.torch_to_onnx import torch_to_onnx
    from edgevid.train.checkpoint import load_checkpoint

    meta = ModelMeta.load(checkpoint)
    graph = _cache_dir(checkpoint) / f"{meta.variant}.onnx"
    if not graph.is_file():
        model, meta = load_checkpoint(checkpoint)
        torch_to_onnx(model, meta, graph)
    return graph


def _cache_dir(checkpoint: Path) -> Path:
    """One folder per checkpoint content (path + file sizes and times): edits re-export."""
    stamp = [str(checkpoint.resolve())]
    for p in sorted(checkpoint.iterdir()):
        st = p.stat()
        stamp.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "edgevid" / "checkpoint-onnx" / key


# --- frames from a path -------------------------------------------------------------------------
def read_clip(source: str | os.PathLike, num_frames: int) -> np.ndarray:
    """``num_frames`` frames spread uniformly over a video file, image folder or any source
    (decoded to its end) -> (T, H, W, 3) uint8 RGB: how a trimmed clip is evaluated."""
    from edgevid.core.sampling import uniform_indices
    from edgevid.core.video import is_video_file, probe_video, read_frames
    from edgevid.errors import SourceError
    from edgevid.runtime.sources import open_reader

    if is_video_file(source) and Path(source).is_file():
        n = probe_video(source).num_frames
        return read_frames(source, uniform_indices(n, num_frames))
    reader = open_reader(source)
    try:
        frames = []
        while (frame := reader.read()) is not None:
            frames.append(frame)
    finally:
        reader.release()
    if not frames:
        raise SourceError(f"{source}: no frames")
    return np.stack([frames[i] for i in uniform_indices(len(frames), num_frames)])


# --- predict ------------------------------------------------------------------------------------
@dataclass
class VideoPrediction:
    label: str  # the clip-level action: top class of the mean window probabilities
    score: float  # its mean probability
    top_k: list[tuple[str, float]]  # best classes, best first
    results: list = field(repr=False)  # every window's Result (edgevid.runtime.streamer)
    segments: list = field(default_factory=list)  # action segments (edgevid.runtime.segments)
    probs: np.ndarray = field(default=None, repr=False)  # (C,) mean window probabilities

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "score": round(self.score, 5),
            "top_k": [{"label": lab, "score": round(p, 5)} for lab, p in self.top_k],
            "windows": len(self.results),
            "segments": [s.to_json() for s in self.segments],
        }


def predict(
    source: str | os.PathLike | int,
    model: str | os.PathLike,
    *,
    every: int = 8,
    smooth: str = "ema:0.6",
    top_k: int = 3,
    device: str = "auto",
    threads: int | None = None,
    segments: object | None = None,
    **overrides: object,
) -> VideoPrediction:
    """Classify ``source`` (video file, image folder or any source URI) with ``model``
    (.onnx, .engine, export folder or checkpoint folder): the clip-level label, every
    window's result (one every ``every`` frames, smoothed like ``edgevid run``) and the
    action segments. ``segments``: a :class:`~edgevid.runtime.segments.SegmentConfig`
    (default: scaled to the window)."""
    from edgevid.runtime.classifier import Classifier
    from edgevid.runtime.segments import SegmentConfig, Segmenter
    from edgevid.runtime.smoothing import decide
    from edgevid.runtime.streamer import Streamer

    clf = Classifier(model, device=device, threads=threads)
    try:
        streamer = Streamer(source, clf, every=every, smooth=smooth, top_k=top_k, **overrides)
        cfg = segments if segments is not None else SegmentConfig.for_clip(
            streamer.window_seconds(0)
        )  # fmt: skip
        seg = Segmenter(cfg, 0, streamer.lanes[0].source.uri)  # type: ignore[arg-type]
        results = []
        for step in streamer.steps():
            if step.stilled:  # gate="motion": the stream went still, its action ended
                seg.finish()
            for r in step.results:
                results.append(r)
                seg.update(r.window_centre, r.probs, clf.labels)
        seg.finish()
    finally:
        clf.close()
    if not results:
        raise ModelError(f"{source}: no frames to classify")
    mean = np.mean([r.probs for r in results], axis=0)  # (C,)
    d = decide(mean, clf.labels, 0.0, top_k)
    return VideoPrediction(d.label, d.score, d.top_k, results, seg.segments, mean)
