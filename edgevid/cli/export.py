"""``edgevid export``: PyTorch model -> verified ONNX graphs (FP32/FP16/INT8), engines, Triton."""

from __future__ import annotations

import click

from edgevid.cli._options import log
from edgevid.core.precision import CALIB_METHODS, EXPORTED
from edgevid.errors import require
from edgevid.export.opset import DEFAULT_OPSET, SUPPORTED_OPSETS

INT8_MODES = [p.removeprefix("int8-") for p in EXPORTED if p.startswith("int8-")]


@click.command("export")
@click.option(
    "--variant", help="Registry variant (edgevid variants), with --weights or pretrained."
)
@click.option("--checkpoint", type=click.Path(), help="Checkpoint folder from edgevid train.")
@click.option("--weights", help="Hub id or local folder of pretrained weights (with --variant).")
@click.option("--random-init", is_flag=True, help="Random weights: for speed tests, not for use.")
@click.option("--out", default="exports", show_default=True, help="Output folder.")
@click.option(
    "--precision",
    "precisions",
    multiple=True,
    type=click.Choice(EXPORTED),
    help="Also write a graph in this precision (repeatable); FP32 is always written.",
)
@click.option("--fp16", is_flag=True, help="Also write an FP16 graph (LayerNorm/Softmax FP32).")
@click.option(
    "--int8",
    type=click.Choice(INT8_MODES),
    help="Also write an INT8 graph: static Q/DQ (TensorRT and CPUs, calibrated on "
    "--calib-data, default: the checkpoint run's split), cpu (calibrated like static, each "
    "attention's Q, K, V projected apart: the fastest graph on OpenVINO) or dynamic (ONNX "
    "Runtime, no calibration). Same as --precision int8-MODE.",
)
@click.option("--calib-data", type=click.Path(), help="Dataset folder or manifest to calibrate on.")
@click.option("--calib-method", type=click.Choice(list(CALIB_METHODS)),
              default="minmax", show_default=True,
              help="How INT8 activation ranges are chosen: "
              + "; ".join(f"{m.name}: {m.help}" for m in CALIB_METHODS.values())
              + ".")  # fmt: skip
@click.option("--calib-clips", type=click.IntRange(min=1), default=32,
              show_default=True, help="Clips, class-balanced.")  # fmt: skip
@click.option("--opset", type=click.Choice([str(o) for o in SUPPORTED_OPSETS]),
              default=str(DEFAULT_OPSET), show_default=True,
              help="16 for TensorRT 8.5.")  # fmt: skip
@click.option("--raw-input", is_flag=True, help="Graph takes uint8 (B,T,H,W,3) RGB frames.")
@click.option(
    "--exporter",
    type=click.Choice(["dynamo", "torchscript"]),
    default="dynamo",
    show_default=True,
    help="torch.onnx exporter: dynamo gives the clean graph; torchscript is the fallback.",
)
@click.option("--verify/--no-verify", default=True, show_default=True, help="Compare with PyTorch.")
@click.option("--data", type=click.Path(), help="Labelled dataset: verify on its test split.")
@click.option("--clips", type=click.Path(), help="Folder of videos to verify on.")
@click.option("--verify-clips", type=click.IntRange(min=1), default=16,
              show_default=True, help="Clips to verify on.")  # fmt: skip
@click.option("--trt", is_flag=True, help="Build a TensorRT engine per graph (needs a GPU).")
@click.option(
    "--batch",
    default="1:1:8",
    show_default=True,
    help="MIN:OPT:MAX batch of the engines; MAX is also Triton's max_batch_size.",
)
@click.option("--workspace-mb", type=click.IntRange(min=1), default=2048,
              show_default=True, help="TensorRT workspace.")  # fmt: skip
@click.option("--dla-core", type=click.IntRange(min=0), help="Jetson DLA core for the engines.")
@click.option("--triton", type=click.Path(), help="Write a Triton model repository here.")
@click.option("--openvino", is_flag=True,
              help="Also write OpenVINO IR (.xml/.bin) of each graph, verified as OpenVINO "
              "runs it (bf16 where the CPU has it); it loads faster than the .onnx.")  # fmt: skip
def export(fp16: bool, int8: str | None, **opts) -> None:
    """Export a model to ONNX graphs, verify them against PyTorch, optionally build engines.

    \b
    Examples:
      edgevid export --checkpoint runs/prune4/best --fp16
      edgevid export --variant prune4 --weights ~/models/timesformer-k400 --fp16
      edgevid export --checkpoint runs/best --int8 static --calib-data data/ucf5
      edgevid export --checkpoint runs/best --int8 cpu       # CPU: run it with OpenVINO
      edgevid export --checkpoint runs/best --int8 dynamic --raw-input
      edgevid export --checkpoint runs/best --fp16 --opset 16 --trt --batch 1:2:4
      edgevid export --checkpoint runs/best --fp16 --triton model_repository
      edgevid export --variant prune4 --random-init --fp16      # speed tests only

    \b
    Writes OUT/<variant>.onnx (FP32), <variant>-fp16.onnx, <variant>-int8-static.onnx ...,
    each with its metadata embedded and in a .json sidecar. Every graph is run with ONNX
    Runtime and compared with PyTorch (max/mean logit error, cosine, top-1 agreement,
    accuracy with --data); the export fails, leaving no files, beyond tolerance.
    """
    from edgevid.export.pipeline import ExportConfig, check_config, parse_batch

    opts["batch"] = parse_batch(opts["batch"])
    opts["opset"] = int(opts["opset"])
    opts["precisions"] += ("fp16",) * fp16 + ((f"int8-{int8}",) if int8 else ())
    cfg = ExportConfig(**opts)
    check_config(cfg)  # a bad combination fails before the slow imports and loading
    require("torch", "train", "edgevid export")
    from edgevid.export.pipeline import export_model

    result = export_model(cfg, log=log.info)
    for path in [*result.graphs, *result.openvino, *result.engines, *result.triton]:
        click.echo(f"wrote {path}")


COMMANDS = [export]
