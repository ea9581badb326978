"""A model seen as frozen prefix -> trainable tail, for partial fine-tuning and caching.

    pixel_values (B, T, 3, H, W)
      -> embed -> layers[:k]           frozen prefix   (no grad, eval mode)
      -> layers[k:] -> norm -> head    trainable tail  -> logits (B, C)

``unfreeze=N`` trains the last N encoder layers, the final norm and the classifier;
``unfreeze=-1`` trains everything (k = 0 and the embedding trains too). Because the prefix
is frozen and deterministic, its output for a clip never changes while augmentation is off:
the trainer computes it once per clip and trains the tail on the cached tensors.

Both families (HF TimeSformer, the scratch baseline) are described by one small adapter,
so the trainer never branches on the family. Wrapping is an ``nn.Module`` with a normal
``forward``, so DDP / ``accelerate`` wrap it like any model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from edgevid.train.models.scratch import ScratchForVideoClassification


@dataclass(frozen=True)
class Adapter:
    embed: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (B,T,3,H,W) -> (B, L, D)
    layers: Callable[[nn.Module], nn.ModuleList]  # the encoder layers
    run_layer: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (B, L, D) -> (B, L, D)
    head: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (B, L, D) -> (B, C)
    embed_modules: Callable[[nn.Module], list[nn.Module | nn.Parameter]]  # the frozen stem


def _tsf_head(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if m.timesformer.layernorm is not None:
        x = m.timesformer.layernorm(x)
    return m.classifier(x[:, 0])  # [CLS] token


TIMESFORMER = Adapter(
    embed=lambda m, x: m.timesformer.embeddings(x),
    layers=lambda m: m.timesformer.encoder.layer,
    run_layer=lambda layer, x: layer(x)[0],
    head=_tsf_head,
    embed_modules=lambda m: [m.timesformer.embeddings],
)
SCRATCH = Adapter(
    embed=lambda m, x: m.embed(x),
    layers=lambda m: m.layers,
    run_layer=lambda layer, x: layer(x),
    head=lambda m, x: m.head(x),
    embed_modules=lambda m: [m.frames, m.cls_token, m.time_embed],
)


def adapter_for(model: nn.Module) -> Adapter:
    return SCRATCH if isinstance(model, ScratchForVideoClassification) else TIMESFORMER


class StagedModel(nn.Module):
    """``model`` split after its first ``frozen_layers`` encoder layers (None: nothing frozen)."""

    def __init__(self, model: nn.Module, unfreeze: int = -1) -> None:
        super().__init__()
        self.model = model
        self.adapter = adapter_for(model)
        n = len(self.adapter.layers(model))
        self.split = None if unfreeze < 0 else max(0, n - unfreeze)
        self._freeze()

    def _freeze(self) -> None:
        for p in self.model.parameters():
            p.requires_grad_(self.split is None)
        if self.split is None:
            return
        for layer in list(self.adapter.layers(self.model))[self.split :]:
            layer.requires_grad_(True)
        frozen = {id(p) for p in self._prefix_params()}
        for p in self.model.parameters():
            if id(p) not in frozen:
                p.requires_grad_(True)  # final norm, classifier, anything after the split

    def _prefix_params(self) -> list[nn.Parameter]:
        out: list[nn.Parameter] = []
        for m in self.adapter.embed_modules(self.model):
            out += [m] if isinstance(m, nn.Parameter) else list(m.parameters())
        for layer in list(self.adapter.layers(self.model))[: self.split or 0]:
            out += list(layer.parameters())
        return out

    @property
    def has_prefix(self) -> bool:
        return self.split is not None

    def train(self, mode: bool = True) -> StagedModel:
        super().train(mode)
        if self.split is not None:  # frozen BatchNorm / dropout stay in inference mode
            for m in self.adapter.embed_modules(self.model):
                if isinstance(m, nn.Module):
                    m.eval()
            for layer in list(self.adapter.layers(self.model))[: self.split]:
                layer.eval()
        return self

    @torch.no_grad()
    def prefix(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Frozen part: (B, T, 3, H, W) -> hidden (B, L, D)."""
        x = self.adapter.embed(self.model, pixel_values)
        for layer in list(self.adapter.layers(self.model))[: self.split or 0]:
            x = self.adapter.run_layer(layer, x)
        return x

    def tail(self, hidden: torch.Tensor) -> torch.Tensor:
        """Trainable part: hidden (B, L, D) -> logits (B, C)."""
        for layer in list(self.adapter.layers(self.model))[self.split or 0 :]:
            hidden = self.adapter.run_layer(layer, hidden)
        return self.adapter.head(self.model, hidden)

    def forward(
        self, pixel_values: torch.Tensor | None = None, hidden: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, C) from pixels, or from the prefix's cached output ``hidden``."""
        if hidden is None:
            if self.split is None:
                return self.model(pixel_values=pixel_values).logits
            hidden = self.prefix(pixel_values)
        return self.tail(hidden)
