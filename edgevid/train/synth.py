"""A synthetic action dataset where only motion tells the classes apart.

Each class is a motion of one shape over a textured background: moving left / right /
up / down, growing / shrinking, turning clockwise / anticlockwise. Positions, sizes and
angles are drawn so that any single frame has the same distribution in every class:
one frame cannot tell the class, the order of frames can. The pairs are time reversals
of each other, so a model that ignores temporal order is capped well below 100%.

Clips are written as real .mp4 files in the folder-per-class layout with UCF101 names
(``v_<Class>_gGG_cCC.mp4``). With ``clips_per_group > 1`` the clips of one group share a
scene (background, shape and colour), like clips cut from one long video, which exercises
group-aware splitting (and tempts a model to memorise scenes).
numpy + OpenCV only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevid._atomic import atomic_dir
from edgevid.core._cv import cv2
from edgevid.core.video import write_video
from edgevid.errors import DataError

MOTIONS = ("MoveLeft", "MoveRight", "MoveUp", "MoveDown", "Grow", "Shrink", "TurnCW", "TurnCCW")

_SHAPES = {  # unit polygons, deliberately asymmetric so that turning is visible
    "triangle": np.array([[0.0, -1.0], [0.7, 0.8], [-0.5, 0.6]]),
    "bar": np.array([[-1.0, -0.35], [1.0, -0.35], [1.0, 0.35], [-1.0, 0.35]]),
    "ell": np.array([[-0.8, -1.0], [-0.2, -1.0], [-0.2, 0.4], [0.8, 0.4], [0.8, 1.0], [-0.8, 1.0]]),
}


@dataclass(frozen=True)
class SynthConfig:
    width: int = 80  # frame width in pixels (the model center-crops the short side)
    height: int = 64  # frame height in pixels
    fps: float = 15.0  # frame rate written to the file
    min_frames: int = 18  # clip length range, in frames
    max_frames: int = 30
    # Clips sharing one scene (background, shape, colour), like a UCF101 group. 1 by default:
    # with shared scenes a small model memorises scene -> class instead of learning motion.
    clips_per_group: int = 1
    noise: float = 6.0  # std of per-frame pixel noise (camera noise), 0..255 scale
    # Share of clips cut out of a longer action (render_action: back-to-back clips, each
    # redrawing the actor, as an --untrimmed video shows them), so most of them hold a cut.
    # 0 by default; a model trained with 0 has never seen a cut and misreads the windows of
    # an untrimmed video that hold one (benchmarks/results/bench_segments.json:
    # pooled.window_acc_across vs window_acc_inside).
    cut_share: float = 0.0


@dataclass(frozen=True)
class _Scene:
    background: np.ndarray  # (H, W, 3) uint8
    shape: np.ndarray  # (K, 2) unit polygon
    color: tuple[int, int, int]


def _scene(rng: np.random.Generator, cfg: SynthConfig) -> _Scene:
    low = rng.integers(0, 256, size=(cfg.height // 8 + 1, cfg.width // 8 + 1, 3)).astype(np.uint8)
    bg = cv2.resize(low, (cfg.width, cfg.height), interpolation=cv2.INTER_CUBIC)
    bg = (bg.astype(np.float32) * 0.5 + 40).astype(np.uint8)  # muted, so the shape stands out
    name = list(_SHAPES)[int(rng.integers(len(_SHAPES)))]
    color = tuple(int(c) for c in rng.integers(150, 256, size=3))
    return _Scene(bg, _SHAPES[name], color)  # type: ignore[arg-type]


def render_clip(
    motion: str, num_frames: int, rng: np.random.Generator, cfg: SynthConfig, scene: _Scene
) -> np.ndarray:
    """One clip of ``motion`` -> (num_frames, H, W, 3) uint8 RGB."""
    if motion not in MOTIONS:
        raise DataError(f"unknown motion {motion!r}; choose from {', '.join(MOTIONS)}")
    h, w = cfg.height, cfg.width
    t = np.linspace(-0.5, 0.5, num_frames)  # clip time, centred: mid-frame stats are shared
    centre = np.array([w / 2, h / 2]) + rng.uniform(-0.12, 0.12, 2) * h
    size = rng.uniform(0.14, 0.2) * h
    angle = rng.uniform(0, 2 * np.pi)
    travel = rng.uniform(0.45, 0.6) * h  # distance covered over the clip
    pos = np.repeat(centre[None], num_frames, 0)
    scale = np.full(num_frames, size)
    theta = np.full(num_frames, angle)
    direction = {"MoveLeft": (-1, 0), "MoveRight": (1, 0), "MoveUp": (0, -1), "MoveDown": (0, 1)}
    if motion in direction:
        pos = centre + np.outer(t, np.array(direction[motion]) * travel)
    elif motion in ("Grow", "Shrink"):
        sign = 1 if motion == "Grow" else -1
        scale = size * np.exp(sign * 1.6 * t)
    else:
        sign = 1 if motion == "TurnCW" else -1
        theta = angle + sign * np.pi * 1.2 * t
    frames = np.empty((num_frames, h, w, 3), np.uint8)
    for i in range(num_frames):
        c, s = np.cos(theta[i]), np.sin(theta[i])
        poly = scene.shape @ np.array([[c, s], [-s, c]]) * scale[i] + pos[i]
        frame = scene.background.copy()
        cv2.fillPoly(frame, [np.round(poly * 16).astype(np.int32)], scene.color, cv2.LINE_AA, 4)
        noise = rng.normal(0, cfg.noise, frame.shape)
        frames[i] = np.clip(frame + noise, 0, 255).astype(np.uint8)
    return frames


def render_action(
    motion: str,
    num_frames: int,
    rng: np.random.Generator,
    cfg: SynthConfig,
    scene: _Scene,
    start: int = 0,
) -> np.ndarray:
    """``num_frames`` frames of a long action of ``motion``, from its frame ``start`` on ->
    (num_frames, H, W, 3) uint8 RGB. The action is whole training-length clips back to back
    (each redraws the actor: a cut); the last one is cut short, never squeezed, so the motion
    keeps a training clip's speed in every frame."""
    parts: list[np.ndarray] = []  # (n, H, W, 3) whole clips
    total = 0
    while total < start + num_frames:
        n = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
        parts.append(render_clip(motion, n, rng, cfg, scene))
        total += n
    return np.concatenate(parts)[start : start + num_frames]


def render_still(
    num_frames: int, rng: np.random.Generator, cfg: SynthConfig, scene: _Scene
) -> np.ndarray:
    """``num_frames`` frames of the scene with no actor, only camera noise: (n, H, W, 3)."""
    noise = rng.normal(0, cfg.noise, (num_frames, *scene.background.shape))
    return np.clip(scene.background[None] + noise, 0, 255).astype(np.uint8)


def make_synthetic_dataset(
    out: str | os.PathLike,
    *,
    classes: int = 5,
    clips_per_class: int = 20,
    seed: int = 0,
    config: SynthConfig | None = None,
    progress: Callable[[int], None] | None = None,
    motions: tuple[str, ...] | None = None,
) -> list[Path]:
    """Write ``clips_per_class`` clips of each of the first ``classes`` motions (or of
    ``motions``) under ``out/<Motion>/``; return their paths.

    ``out`` must be new or empty; the dataset appears there whole or not at all.
    """
    cfg = config or SynthConfig()
    names = _motion_names(classes, motions)
    if clips_per_class < 1:
        raise DataError(f"--clips-per-class must be at least 1, got {clips_per_class}")
    out = Path(out)
    if out.is_dir() and any(out.iterdir()):
        raise DataError(f"{out}: folder exists and is not empty; choose a new one")
    with atomic_dir(out) as tmp:
        rels = _write_clips(tmp, names, clips_per_class, seed, cfg, progress)
    return [out / r for r in rels]


def _motion_names(classes: int, motions: tuple[str, ...] | None) -> tuple[str, ...]:
    """The motions asked for: ``motions``, else the first ``classes``."""
    if motions is None:
        if not 2 <= classes <= len(MOTIONS):
            raise DataError(f"--classes must be between 2 and {len(MOTIONS)}, got {classes}")
        return MOTIONS[:classes]
    names = tuple(motions)
    if not 2 <= len(set(names)) == len(names) or not set(names) <= set(MOTIONS):
        raise DataError(f"need 2 to {len(MOTIONS)} motions of {', '.join(MOTIONS)}, got {names}")
    return names


def _write_clips(
    out: Path,
    names: tuple[str, ...],
    clips_per_class: int,
    seed: int,
    cfg: SynthConfig,
    progress: Callable[[int], None] | None,
) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths: list[Path] = []
    for motion in names:
        scene = None
        for k in range(clips_per_class):
            group, clip = divmod(k, cfg.clips_per_group)
            if clip == 0:
                scene = _scene(rng, cfg)
            n = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
            if cfg.cut_share > 0 and rng.random() < cfg.cut_share:  # a window of a long action
                start = int(rng.integers(1, cfg.min_frames))
                frames = render_action(motion, n, rng, cfg, scene, start)  # type: ignore[arg-type]
            else:
                frames = render_clip(motion, n, rng, cfg, scene)  # type: ignore[arg-type]
            path = out / motion / f"v_{motion}_g{group + 1:02d}_c{clip + 1:02d}.mp4"
            paths.append(write_video(path, frames, cfg.fps).relative_to(out))
            if progress:
                progress(1)
    return paths


@dataclass(frozen=True)
class TrueSegment:
    label: str  # the motion shown
    start: float  # seconds, first frame / fps
    end: float  # seconds, one past the last frame / fps
    start_frame: int  # first frame
    end_frame: int  # one past the last frame


def make_untrimmed_video(
    out: str | os.PathLike,
    *,
    classes: int = 3,
    segments: int = 8,
    segment_s: tuple[float, float] = (3.0, 5.0),
    seed: int = 0,
    config: SynthConfig | None = None,
    motions: tuple[str, ...] | None = None,
    gap_s: tuple[float, float] = (0.0, 0.0),
) -> list[TrueSegment]:
    """An untrimmed video with known action boundaries: ``segments`` actions of the first
    ``classes`` motions (or of ``motions``) back to back (consecutive ones differ), each
    ``segment_s`` seconds long and made of training-length clips of its motion
    (:func:`render_action`), over one scene (one camera). ``gap_s``: a still scene (the
    background alone, with its camera noise) of that many seconds between two actions, as
    a camera sees most of the time. Writes ``out`` (.mp4) and the ground truth beside it
    (``out`` with .json: fps, frames, segments); returns the segments."""
    from edgevid._atomic import write_json

    cfg = config or SynthConfig()
    names = _motion_names(classes, motions)
    if segments < 1:
        raise DataError(f"--segments must be at least 1, got {segments}")
    rng = np.random.default_rng(seed)
    scene = _scene(rng, cfg)
    parts: list[np.ndarray] = []  # (n, H, W, 3) clips in order
    truth: list[TrueSegment] = []
    frame, previous = 0, -1
    for i in range(segments):
        gap = round(rng.uniform(*gap_s) * cfg.fps) if i and max(gap_s) > 0 else 0
        if gap:
            parts.append(render_still(gap, rng, cfg, scene))
            frame += gap
        choices = [c for c in range(len(names)) if c != previous]
        k = int(choices[int(rng.integers(len(choices)))])
        previous, motion = k, names[k]
        want = round(rng.uniform(*segment_s) * cfg.fps)  # frames of this action
        parts.append(render_action(motion, want, rng, cfg, scene))
        truth.append(
            TrueSegment(motion, frame / cfg.fps, (frame + want) / cfg.fps, frame, frame + want)
        )
        frame += want
    out = Path(out)
    write_video(out, (f for part in parts for f in part), cfg.fps)
    write_json(
        out.with_suffix(".json"),
        {"fps": cfg.fps, "frames": frame, "segments": [s.__dict__ for s in truth]},
    )
    return truth
