"""Clips of one manifest split as a torch Dataset, decoded and preprocessed like the runtime.

    path -> read_frames(sampled indices) -> [augment] -> normalize_clip -> (T, 3, S, S)

Evaluation uses uniform segment-centre sampling and ``preprocess_clip``: exactly what
``edgevid run`` feeds an exported model. Every random draw (frame jitter, crop, colour,
control shuffle) comes from a generator seeded by (run seed, epoch, clip index), so a
resumed run sees the same clips as an uninterrupted one, whatever the worker count.

A clip that cannot be decoded is not fatal: it is reported by name and skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edgevid.core.meta import ModelMeta
from edgevid.core.preprocess import normalize_clip, preprocess_clip
from edgevid.core.sampling import jittered_indices, uniform_indices
from edgevid.core.video import probe_video, read_frames
from edgevid.errors import VideoError
from edgevid.train.augment import augment_clip
from edgevid.train.config import AugmentConfig


@dataclass(frozen=True)
class ClipNote:
    """A clip the decoder had trouble with: left out (skipped) or used only in part."""

    path: str  # the clip
    reason: str  # the decoder's one-line message


Item = tuple[torch.Tensor, int, int, "ClipNote | None"]  # (clip, label, index, partial decode)


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, T, 3, S, S) float32 normalised clips, or cached (B, L, D) features
    labels: torch.Tensor  # (B,) int64
    indices: torch.Tensor  # (B,) int64: clip index in the dataset (feature cache key)
    skipped: list[ClipNote] = field(default_factory=list)  # clips of this batch left out
    partial: list[ClipNote] = field(default_factory=list)  # clips used as far as they decoded


class ClipDataset(Dataset):
    """(video path, label) pairs -> (clip (T, 3, S, S) float32, label, index)."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        labels: Sequence[int],
        meta: ModelMeta,
        *,
        train: bool = False,
        augment: AugmentConfig | None = None,
        shuffle_frames: bool = False,
        seed: int = 0,
        memo_mb: float = 0.0,
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError("paths and labels differ in length")
        self.paths = [Path(p) for p in paths]
        self.labels = [int(v) for v in labels]
        self.num_frames, self.size = meta.num_frames, meta.image_size
        self.mean, self.std = meta.mean, meta.std
        self.augment = augment if train and augment and augment.enabled else None
        self.shuffle_frames = shuffle_frames
        self.seed = seed
        self._lengths: dict[int, int] = {}
        # Deterministic clips decoded once are kept, up to memo_mb: for a tiny model,
        # decoding is a large share of an epoch.
        self._memo: dict[int, torch.Tensor] = {}
        self._memo_left = int(memo_mb * 2**20)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def deterministic(self) -> bool:
        """Every epoch yields identical inputs (so the frozen part's outputs can be cached)."""
        return self.augment is None and not self.shuffle_frames

    def __getitem__(self, key: int | tuple[int, int]):
        i, draw = key if isinstance(key, tuple) else (key, 0)
        if i in self._memo:
            return self._memo[i], self.labels[i], i, None
        item = self._load(i, draw)
        if isinstance(item, tuple):  # decoded (a skipped clip is not kept)
            self._remember(i, item[0])
        return item

    def _remember(self, i: int, clip: torch.Tensor) -> None:
        # Only in the main process: a DataLoader worker's memo would die with the epoch.
        in_worker = torch.utils.data.get_worker_info() is not None
        size = clip.numel() * clip.element_size()
        if self.deterministic and not in_worker and size <= self._memo_left:
            self._memo[i] = clip
            self._memo_left -= size

    def _load(self, i: int, draw: int) -> Item | ClipNote:
        rng = np.random.default_rng([self.seed, draw, i])
        partial: list[str] = []  # a damaged or truncated clip is used as far as it decodes
        try:
            frames = self._decode(i, rng, partial)  # (T, H, W, 3) uint8
        except VideoError as e:
            return ClipNote(str(self.paths[i]), str(e))
        if self.shuffle_frames:
            frames = frames[rng.permutation(len(frames))]
        if self.augment is not None:
            clip = normalize_clip(
                augment_clip(frames, self.size, self.augment, rng), self.mean, self.std
            )
        else:
            clip = preprocess_clip(frames, self.size, self.mean, self.std)
        note = ClipNote(str(self.paths[i]), partial[0]) if partial else None
        return torch.from_numpy(clip), self.labels[i], i, note

    def _decode(self, i: int, rng: np.random.Generator, partial: list[str]) -> np.ndarray:
        if i not in self._lengths:
            self._lengths[i] = probe_video(self.paths[i]).num_frames
        n = self._lengths[i]
        if self.augment is not None and self.augment.temporal_jitter:
            idx = jittered_indices(n, self.num_frames, rng)
        else:
            idx = uniform_indices(n, self.num_frames)
        return read_frames(self.paths[i], idx, partial)


def collate(items: list) -> Batch:
    """Stack the decodable clips of a batch; keep the others' names (and the partly
    decodable ones') for the report."""
    good = [it for it in items if not isinstance(it, ClipNote)]
    skipped = [it for it in items if isinstance(it, ClipNote)]
    if not good:
        empty = torch.empty(0)
        return Batch(empty, empty.long(), empty.long(), skipped)
    clips, labels, idx, notes = zip(*good, strict=True)
    partial = [note for note in notes if note]
    return Batch(torch.stack(clips), torch.tensor(labels), torch.tensor(idx), skipped, partial)


def numpy_batches(
    ds: ClipDataset,
    batch_size: int,
    skipped: list[str] | None = None,
    partial: list[str] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``ds`` in order as ((B, T, 3, S, S) float32, (B,) int64) numpy batches."""
    for batch in DataLoader(ds, batch_size=batch_size, collate_fn=collate):
        if skipped is not None:
            skipped.extend(f"{s.path} ({s.reason})" for s in batch.skipped)
        if partial is not None:
            partial.extend(note.reason for note in batch.partial)
        if len(batch.labels):
            yield batch.inputs.numpy(), batch.labels.numpy()


class EpochSampler(Sampler):
    """A seeded permutation per epoch, yielding (index, epoch) keys; can start mid-epoch.

    ``set_epoch(e)`` picks the permutation, ``set_start(k)`` skips this process's first k
    keys, which is how a resumed run continues at the exact step it was killed after.
    Under data parallelism process ``rank`` of ``world`` takes every world-th key of the
    permutation, padded (like torch's DistributedSampler) so all processes take as many.
    """

    def __init__(
        self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1
    ) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world = rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        self.start = start

    @property
    def shard_size(self) -> int:
        return -(-self.n // self.world)  # ceil

    def __len__(self) -> int:
        return max(0, self.shard_size - self.start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        order = np.resize(order, self.shard_size * self.world)  # pad by repeating the start
        for i in order[self.rank :: self.world][self.start :]:
            yield int(i), self.epoch
