"""The scratch baseline: a small CNN per frame, then a Transformer over time (~2M params).

    (B, T, 3, H, W) -> 4 x [conv3x3 s2, BN, ReLU] per frame -> global pool -> (B, T, D)
    -> [CLS] + temporal position embedding -> 4 pre-norm Transformer encoder layers
    -> LayerNorm([CLS]) -> Linear -> (B, num_classes)

It is a Hugging Face ``PreTrainedModel`` so it saves, loads and exports exactly like the
TimeSformer variants. Attention is written out with ``scaled_dot_product_attention``
rather than ``nn.TransformerEncoderLayer``, whose fused inference path does not export.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

from edgevid.errors import ModelError
from edgevid.train.models.registry import register_model


class ScratchConfig(PretrainedConfig):
    model_type = "edgevid-scratch"

    def __init__(
        self,
        image_size: int = 224,  # H = W of each input frame
        num_frames: int = 8,  # T
        channels: tuple[int, ...] = (32, 64, 128, 192),  # the 4 conv layers' widths
        hidden_size: int = 192,  # D: temporal Transformer width
        num_hidden_layers: int = 4,  # temporal Transformer layers
        num_attention_heads: int = 4,
        intermediate_size: int = 768,  # MLP width inside each Transformer layer
        dropout: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image_size = image_size
        self.num_frames = num_frames
        self.channels = list(channels)
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.dropout = dropout


class FrameEncoder(nn.Module):
    """4 strided conv layers + global average pool: one frame -> one D-vector."""

    def __init__(self, channels: list[int], out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c)]
            layers.append(nn.ReLU(inplace=True))
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W)
        x = self.convs(x)  # (N, C, H/16, W/16)
        return self.proj(x.mean(dim=(2, 3)))  # (N, D)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ModelError(f"hidden_size {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D)
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(  # (B, heads, L, D/heads)
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class EncoderLayer(nn.Module):
    """Pre-norm Transformer layer: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D)
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class ScratchForVideoClassification(PreTrainedModel):
    config_class = ScratchConfig
    base_model_prefix = "scratch"
    main_input_name = "pixel_values"

    def __init__(self, config: ScratchConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.frames = FrameEncoder(config.channels, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.time_embed = nn.Parameter(torch.zeros(1, config.num_frames + 1, d))
        self.layers = nn.ModuleList(
            EncoderLayer(d, config.num_attention_heads, config.intermediate_size, config.dropout)
            for _ in range(config.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.classifier = nn.Linear(d, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, ScratchForVideoClassification):
            nn.init.trunc_normal_(module.time_embed, std=0.02)
            nn.init.trunc_normal_(module.cls_token, std=0.02)

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) frames -> (B, T+1, D) tokens: [CLS], then one per frame."""
        b, t = pixel_values.shape[:2]
        x = self.frames(pixel_values.flatten(0, 1)).view(b, t, -1)  # (B, T, D)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)  # (B, T+1, D)
        return x + self.time_embed[:, : t + 1]

    def head(self, x: torch.Tensor) -> torch.Tensor:  # (B, T+1, D) -> (B, num_classes)
        return self.classifier(self.norm(x[:, 0]))

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **_: Any
    ) -> ImageClassifierOutput:
        x = self.embed(pixel_values)
        for layer in self.layers:
            x = layer(x)
        logits = self.head(x)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


SIZES = {
    "base": dict(
        image_size=224,
        channels=(32, 64, 128, 192),
        hidden_size=192,
        num_attention_heads=4,
        intermediate_size=768,
    ),
    "tiny": dict(
        image_size=32,
        channels=(8, 16, 16, 32),
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
    ),
}


def build_scratch(
    *,
    labels: list[str],
    pretrained: bool,
    weights: str | None,
    num_layers: int,
    size: str = "base",
    **overrides: Any,
) -> ScratchForVideoClassification:
    if pretrained:
        if not weights:
            raise ModelError("the scratch baseline has no pretrained weights; train it first")
        return ScratchForVideoClassification.from_pretrained(weights)
    cfg = ScratchConfig(
        **{**SIZES[size], "num_hidden_layers": num_layers, **overrides},
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    return ScratchForVideoClassification(cfg)


register_model(
    "scratch",
    family="scratch",
    num_layers=4,
    size="base",
    description="scratch baseline: 4 conv layers per frame + 4 temporal Transformer layers",
)(build_scratch)
register_model(
    "tiny-scratch",
    family="scratch",
    num_layers=4,
    size="tiny",
    description="tiny scratch baseline (tests)",
)(build_scratch)
