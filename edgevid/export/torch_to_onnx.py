"""PyTorch model -> FP32 ONNX graph with dynamic batch and edgevid metadata embedded.

The graph contract (input/output names, dtypes, metadata) is in ``onnx_io.py``.

Which exporter. TimeSformer reshapes its activations with the batch size read at run time
(``hidden_states.reshape(batch_size * num_frames, ...)``). The TorchScript exporter turns
every such reshape into a Shape -> Gather -> Unsqueeze -> Concat chain: 2338 nodes for
tiny-prune4 at opset 17 (1172 after onnxscript constant folding), most of them shape
arithmetic. The dynamo exporter (``torch.export``) traces with a symbolic batch, so the same
model is 585 nodes, nearly all of them compute (MatMul, Add, LayerNormalization, Softmax),
and the onnxscript optimizer has already folded its constants. Fewer, cleaner nodes make
TensorRT's parser and fusions, the FP16 converter and the INT8 quantizer all behave more
predictably, so the dynamo exporter is the default. It emits opset 18; ``opset.py`` brings
the graph down to 17 (the default) or 16 (TensorRT 8.5: LayerNormalization written out).
The TorchScript exporter stays available (``exporter="torchscript"``, ``--exporter``) as a
fallback for a model ``torch.export`` cannot trace. On a CPU, once ONNX Runtime's own
optimizer has folded the shape arithmetic, the TorchScript graph can run a little faster and
peak at less memory (benchmarks/results/bench_export.json: rows ort-fp32 vs
ort-fp32-torchscript), so a CPU-only deployment short of memory may prefer it; the dynamo
graph is the one for TensorRT, FP16 and INT8.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from edgevid.core.artifact import OUTPUT_NAME, input_name
from edgevid.core.meta import ModelMeta
from edgevid.core.onnx_file import save_onnx
from edgevid.errors import ExportError, require
from edgevid.export.opset import DEFAULT_OPSET, convert_opset

EXPORTERS = ("dynamo", "torchscript")


class ExportWrapper(torch.nn.Module):
    """What the graph computes: a plain logits tensor, optionally from raw uint8 frames."""

    def __init__(self, model: torch.nn.Module, meta: ModelMeta, raw_input: bool) -> None:
        super().__init__()
        self.model = model
        self.raw_input = raw_input
        std = torch.tensor(meta.std, dtype=torch.float32)
        # (x / 255 - mean) / std == x * scale - shift, exactly what normalize_clip computes
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", torch.tensor(meta.mean) / std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.raw_input:  # (B, T, H, W, 3) uint8 RGB
            x = (x.float() * self.scale - self.shift).permute(0, 1, 4, 2, 3)
        return self.model(pixel_values=x).logits  # (B, T, 3, H, W) -> (B, C)


def example_input(meta: ModelMeta, raw_input: bool, batch: int = 2) -> torch.Tensor:
    # batch 2, not 1: torch.export specialises a dimension whose example size is 0 or 1
    t, s = meta.num_frames, meta.image_size
    if raw_input:
        return torch.zeros(batch, t, s, s, 3, dtype=torch.uint8)  # (B, T, H, W, 3)
    return torch.zeros(batch, t, 3, s, s)  # (B, T, C, H, W)


def torch_to_onnx(
    model: torch.nn.Module,
    meta: ModelMeta,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    raw_input: bool = False,
    exporter: str = "dynamo",
) -> Path:
    """Export ``model`` (pixel_values (B, T, 3, H, W) -> logits) to an FP32 graph at ``path``.

    ``raw_input`` makes the graph take ``frames`` uint8 (B, T, H, W, 3) RGB (already resized
    and cropped) and normalise inside. Returns ``path``; metadata is embedded and written to
    the ``.json`` sidecar. Nothing is left at ``path`` if any step fails.
    """
    require("onnx", "export", "ONNX export")
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    meta = meta.replace(precision="fp32", input_format="uint8" if raw_input else "float")
    wrapper = ExportWrapper(model.eval(), meta, raw_input).eval()
    x = example_input(meta, raw_input)
    export = _export_dynamo if exporter == "dynamo" else _export_torchscript
    with torch.no_grad(), _quiet():
        onnx_model = export(wrapper, x, input_name(meta), opset)
    onnx_model.doc_string = f"edgevid {meta.variant} ({exporter} exporter)"
    return save_onnx(onnx_model, meta, path)


def _export_dynamo(wrapper: torch.nn.Module, x: torch.Tensor, name: str, opset: int):
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        program = torch.onnx.export(
            wrapper,
            (x,),
            input_names=[name],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=18,  # its native opset; convert_opset does the rest
            dynamo=True,
            optimize=True,  # onnxscript optimizer: constant folding, dead code
            verbose=False,
        )
    except Exception as e:  # torch.export raises many types; report one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"torch.export could not trace the model ({first}); try exporter='torchscript'"
        ) from e
    return convert_opset(program.model_proto, opset)


def _export_torchscript(wrapper: torch.nn.Module, x: torch.Tensor, name: str, opset: int):
    onnx = require("onnx", "export", "ONNX export")
    with tempfile.TemporaryDirectory(prefix="edgevid-export-") as tmp_dir:
        tmp = Path(tmp_dir) / "model.onnx"
        torch.onnx.export(
            wrapper,
            (x,),
            str(tmp),
            input_names=[name],
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            # at least 17, so LayerNormalization stays one op; convert_opset writes it out
            # for opset 16 with the node names the FP16 pass keeps in FP32
            opset_version=max(opset, 17),
            dynamo=False,
        )
        return convert_opset(onnx.load(str(tmp)), opset)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters warn and log at length about things that do not concern the user."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
