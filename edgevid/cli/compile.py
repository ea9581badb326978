"""``edgevid compile``: a ``.onnx`` -> a TensorRT engine for this device. Torch-free."""

from __future__ import annotations

from pathlib import Path

import click

from edgevid.runtime.backends.trt_plan import DEFAULT_BATCH, DEFAULT_WORKSPACE_MB

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8-static")  # rows TensorRT builds


@click.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="auto: the graph as exported (an FP32 graph builds FP32, strongly typed). fp16 on an "
    "FP32 graph converts it first with edgevid's FP16 rules (LayerNorm, Softmax, logits "
    "stay FP32). INT8 needs an int8-static graph from edgevid export.",
)
@click.option(
    "--dla-core",
    type=click.IntRange(min=0),
    help="Jetson DLA core: FP16 or INT8 only, one batch size (--batch N:N:N), layers the DLA "
    "cannot run fall back to the GPU. An FP32 graph is skipped (use --precision fp16).",
)
@click.option(
    "--batch",
    default=":".join(map(str, DEFAULT_BATCH)),
    show_default=True,
    help="MIN:OPT:MAX batch of the engine's profile. At run time fewer clips than MIN are "
    "padded, more than MAX split.",
)
@click.option("--workspace-mb", type=click.IntRange(min=1), default=DEFAULT_WORKSPACE_MB,
              show_default=True, help="TensorRT builder workspace.")  # fmt: skip
@click.option(
    "--timing-cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Kernel timings kept between builds [default: timing.cache in the cache folder].",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Engine cache folder [default: $EDGEVID_ENGINE_CACHE, else .engine-cache beside the "
    "model if it can be written, else ~/.cache/edgevid/engines].",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the engine (and its .json sidecar) here, e.g. for Triton or trtexec.",
)
def compile_engine(
    model: Path,
    precision: str,
    dla_core: int | None,
    batch: str,
    workspace_mb: int,
    timing_cache: Path | None,
    cache_dir: Path | None,
    out: Path | None,
) -> None:
    """Compile MODEL.onnx into a TensorRT engine for this GPU (or DLA core), on the device.

    \b
    Examples:
      edgevid compile prune4.onnx                       # as exported, batch 1..8
      edgevid compile prune4.onnx --precision fp16      # FP32 graph -> FP16 engine
      edgevid compile prune4-fp16.onnx --dla-core 0 --batch 2:2:2
      edgevid compile prune4.onnx --out /models/prune4/1/model.plan

    \b
    The engine goes into the engine cache that `edgevid run --model MODEL.onnx` looks in,
    under a key of the graph's bytes, the TensorRT version, the GPU (compute capability,
    multiprocessors), the precision, the batch profile and the DLA core: a later run starts
    without building. One process builds a key; others wait for it. Before it is kept, one
    clip is compared with ONNX Runtime CPU; an engine outside the precision's tolerance is
    refused. Needs TensorRT and an NVIDIA GPU; never torch.
    """
    from edgevid._atomic import write_bytes
    from edgevid.core.artifact import sidecar_path
    from edgevid.errors import ModelError
    from edgevid.runtime.backends.onnx_engine import compile_onnx
    from edgevid.runtime.backends.tensorrt_build import load_tensorrt
    from edgevid.runtime.backends.trt_plan import (
        BuildRequest,
        Skipped,
        check_dla_batch,
        parse_batch,
    )

    request = BuildRequest(None if precision == "auto" else precision, parse_batch(batch),
                           dla_core, workspace_mb)  # fmt: skip
    if model.suffix.lower() != ".onnx" or not model.is_file():
        raise ModelError(f"{model}: not an ONNX file (edgevid compile takes a .onnx)")
    if dla_core is not None:
        check_dla_batch(request.batch)
    load_tensorrt()  # no TensorRT: one line, before any work
    log = lambda line: click.echo(line, err=True)  # noqa: E731
    result = compile_onnx(model, request, log=log, folder=cache_dir, timing_cache=timing_cache)
    if isinstance(result, Skipped):
        return
    entry, built = result
    click.echo(f"{'built' if built else 'cached'} {entry.engine}")
    if out is not None:
        write_bytes(out, entry.engine.read_bytes())
        write_bytes(sidecar_path(out), entry.sidecar.read_bytes())
        click.echo(f"wrote {out}")


COMMANDS = [compile_engine]
