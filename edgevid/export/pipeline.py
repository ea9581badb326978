"""``edgevid export`` as a function: the stages in order, each one a pure function call.

    model -> FP32 graph -> [FP16 graph] [INT8 graph] -> verify all -> [engines] -> [Triton]

Everything is written into a staging folder inside ``out`` and moved into place only when
every stage (verification included) has passed, so a failed export leaves no file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgevid._atomic import pid_alive
from edgevid.core.clips import ClipSet, dataset_clips, folder_clips
from edgevid.core.formats import derived_path, graph_name, model_files
from edgevid.core.manifest import run_manifest
from edgevid.core.meta import ModelMeta
from edgevid.core.precision import EXPORTED, PRECISIONS, get_calib_method, get_precision
from edgevid.errors import ExportError, ModelError, require
from edgevid.export.opset import DEFAULT_OPSET, SUPPORTED_OPSETS
from edgevid.runtime.backends.trt_plan import BuildRequest, Skipped, check_dla_batch, plan_build
from edgevid.runtime.backends.trt_plan import parse_batch as parse_batch

STAGING_PREFIX = ".edgevid-export-"  # + "<pid>-<random>": the folder a running export fills


@dataclass
class ExportConfig:
    variant: str | None = None  # registry name (with pretrained or --weights, or random init)
    checkpoint: str | None = None  # a checkpoint folder from edgevid train / prune
    weights: str | None = None  # hub id or local folder of pretrained weights (with variant)
    random_init: bool = False  # variant with random weights: for speed tests only
    out: str = "exports"  # folder the graphs, engines and sidecars go to
    opset: int = DEFAULT_OPSET  # 17; 16 for TensorRT 8.5 (JetPack 5)
    raw_input: bool = False  # graph takes uint8 (B, T, H, W, 3) frames, normalises inside
    exporter: str = "dynamo"  # "dynamo" (clean graph, default) | "torchscript" (fallback)
    precisions: tuple[str, ...] = ()  # graphs beyond FP32: fp16, int8-static, int8-dynamic
    calib_data: str | None = None  # dataset folder or manifest for INT8 calibration
    calib_method: str = "minmax"  # minmax | entropy | percentile
    calib_clips: int = 32  # class-balanced calibration clips (train split)
    verify: bool = True  # compare every graph with PyTorch on clips; fail beyond tolerance
    data: str | None = None  # labelled dataset: verify on its test split, report accuracy
    clips: str | None = None  # a folder of videos to verify on (unlabelled)
    verify_clips: int = 16  # how many clips verification uses
    trt: bool = False  # build a TensorRT engine for each graph (needs a GPU)
    batch: tuple[int, int, int] = (1, 1, 8)  # min:opt:max batch of the engines / Triton
    workspace_mb: int = 2048  # TensorRT builder workspace
    dla_core: int | None = None  # Jetson DLA core for the engines
    triton: str | None = None  # write a Triton model repository here
    openvino: bool = False  # also write OpenVINO IR (.xml/.bin) of each graph, verified too


@dataclass
class ExportResult:
    graphs: list[Path] = field(default_factory=list)  # ONNX graphs, FP32 first
    engines: list[Path] = field(default_factory=list)  # TensorRT engines
    triton: list[Path] = field(default_factory=list)  # Triton model folders
    openvino: list[Path] = field(default_factory=list)  # OpenVINO IR .xml files (+ .bin)
    verification: list = field(default_factory=list)  # edgevid.export.verify.Verification
    table: str = ""  # the verification table as printed


def check_config(cfg: ExportConfig) -> None:
    """Refuse a bad combination of options before any slow work starts."""
    if (cfg.variant is None) == (cfg.checkpoint is None):
        raise ExportError("give exactly one of --variant NAME or --checkpoint DIR")
    if cfg.checkpoint and (cfg.weights or cfg.random_init):
        raise ExportError("--weights and --random-init go with --variant, not --checkpoint")
    if cfg.weights and cfg.random_init:
        raise ExportError("--weights and --random-init exclude each other")
    if cfg.opset not in SUPPORTED_OPSETS:
        raise ExportError(f"--opset must be one of {', '.join(map(str, SUPPORTED_OPSETS))}")
    for name in cfg.precisions:
        if not get_precision(name, ExportError).exported or name == "fp32":
            raise ExportError(f"edgevid export cannot write {name} graphs; it writes fp32 and "
                              f"{', '.join(EXPORTED)}")  # fmt: skip
    cfg.precisions = tuple(p for p in PRECISIONS if p in cfg.precisions)  # table order, once
    if not cfg.calib_data and any(PRECISIONS[p].calibrated for p in cfg.precisions):
        cfg.calib_data = default_calib_data(cfg)
    get_calib_method(cfg.calib_method, ExportError)
    if cfg.calib_clips < 1 or cfg.verify_clips < 1:
        raise ExportError("--calib-clips and --verify-clips must be at least 1")
    if cfg.trt:
        from edgevid.runtime.backends.tensorrt_build import load_tensorrt

        if cfg.dla_core is not None:
            check_dla_batch(cfg.batch)  # a DLA engine takes one batch size
        load_tensorrt()  # a missing TensorRT is reported now, not after the export


def default_calib_data(cfg: ExportConfig) -> str:
    """A calibrated INT8 graph without --calib-data: the checkpoint's own run split, else a
    clear error. Cheap (no model is loaded), so the CLI calls it before anything slow."""
    which = next((p for p in cfg.precisions if PRECISIONS[p].calibrated), "int8-static")
    flag = f"--int8 {which.removeprefix('int8-')}"
    if cfg.checkpoint:
        manifest = run_manifest(cfg.checkpoint)
        if manifest is not None:
            return str(manifest)
        raise ExportError(
            f"{flag} needs calibration clips and {cfg.checkpoint} has no run manifest "
            "beside it: --calib-data DATASET_ROOT"
        )
    raise ExportError(f"{flag} needs calibration clips: --calib-data DATASET_ROOT")


def model_source(cfg: ExportConfig) -> str:
    """What a graph was exported from, recorded in its metadata (``extra["source"]``)."""
    if cfg.checkpoint:
        return f"checkpoint {Path(cfg.checkpoint).resolve()}"
    weights = "random" if cfg.random_init else (cfg.weights or "pretrained")
    return f"variant {cfg.variant} ({weights})"


def check_collision(graph: Path, source: str) -> None:
    """Refuse to replace the FP32 ``graph`` if it was exported from another model.

    Names follow the variant, so two checkpoints of one variant would silently overwrite each
    other in one --out; re-exporting the same model replaces its files.
    """
    from edgevid.core.onnx_file import read_metadata

    if not graph.exists():
        return
    try:
        theirs = read_metadata(graph).extra.get("source")
    except (ModelError, ExportError):
        theirs = None
    if theirs != source:
        raise ExportError(
            f"{graph} exists and was exported from {theirs or 'an unknown model'}, not "
            f"{source}; choose another --out or remove it"
        )


def load_model(cfg: ExportConfig):
    """The PyTorch model and its metadata, from a checkpoint or a registry variant."""
    from edgevid.train.build import default_weights
    from edgevid.train.checkpoint import load_checkpoint, meta_for
    from edgevid.train.models import create_model, model_spec

    if cfg.checkpoint:
        return load_checkpoint(cfg.checkpoint)
    spec = model_spec(cfg.variant)  # unknown names fail here with the list of variants
    if not cfg.random_init and cfg.weights is None and default_weights(cfg.variant) is None:
        raise ModelError(  # nothing to download: never touch the network for it
            f"{cfg.variant} has no published pretrained weights; export a trained model with "
            "--checkpoint RUN/best, or pass --weights DIR (or --random-init, speed tests only)"
        )
    if cfg.random_init:
        model = create_model(cfg.variant).eval()
        meta = meta_for(model)
        return model, meta.replace(extra={**meta.extra, "random_init": True})
    try:
        labels = _pretrained_labels(spec.family, cfg.weights)
        model = create_model(cfg.variant, labels=labels, weights=cfg.weights, pretrained=True)
    except ModelError as e:
        raise ModelError(
            f"{e}; or export a trained model with --checkpoint RUN/best "
            "(or --random-init, for speed tests only)"
        ) from e
    return model.eval(), meta_for(model)


def _pretrained_labels(family: str, weights: str | None) -> list[str]:
    """Keep the classes the weights were trained on (Kinetics-400 for the hub model)."""
    if family != "timesformer":
        raise ModelError(f"the {family} family has no pretrained weights; train it first")
    from transformers import TimesformerConfig

    from edgevid.train.models.timesformer import (
        DEFAULT_WEIGHTS,
        load_pretrained,
        offline_unless_hub_reachable,
    )

    if not (weights and Path(weights).is_dir()):
        offline_unless_hub_reachable()
    try:
        cfg = TimesformerConfig.from_pretrained(weights or DEFAULT_WEIGHTS)
    except (OSError, ValueError):
        load_pretrained(weights or DEFAULT_WEIGHTS)  # raises the ModelError that explains
        raise
    return [cfg.id2label[i] for i in range(len(cfg.id2label))]


def verification_clips(cfg: ExportConfig, meta: ModelMeta) -> ClipSet:
    """Labelled test clips if there is a dataset, else given videos, else synthetic ones."""
    with _bar("verification clips", cfg.verify_clips) as progress:
        if cfg.data or cfg.calib_data:
            data = cfg.data or cfg.calib_data
            return dataset_clips(data, meta, cfg.verify_clips, split="test", progress=progress)
        if cfg.clips:
            return folder_clips(cfg.clips, meta, cfg.verify_clips, progress)
        from edgevid.train.synth import make_synthetic_dataset

        with tempfile.TemporaryDirectory(prefix="edgevid-verify-") as tmp:
            per_class = max(1, -(-cfg.verify_clips // 5))
            make_synthetic_dataset(tmp, classes=5, clips_per_class=per_class, seed=0)
            return folder_clips(tmp, meta, cfg.verify_clips, progress)


@contextlib.contextmanager
def _bar(what: str, total: int) -> Iterator[Callable[[int], None]]:
    """Progress of clip decoding on stderr (a bar on a terminal, plain lines otherwise)."""
    from edgevid.progress import bar

    with bar(total=total, desc=what, unit="clip", leave=False) as shown:
        yield shown.update


def export_model(cfg: ExportConfig, log: Callable[[str], None] = print) -> ExportResult:
    """Run every requested stage; on success the artefacts are in ``cfg.out``."""
    require("onnx", "export", "ONNX export")
    check_config(cfg)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out))
    t0 = time.perf_counter()
    model, meta = load_model(cfg)  # a bad checkpoint or variant: its error line alone
    log(f"loaded {meta.variant} in {time.perf_counter() - t0:.1f} s")
    source = model_source(cfg)
    meta = meta.replace(extra={**meta.extra, "source": source})
    check_collision(out / graph_name(meta.variant, raw_input=cfg.raw_input), source)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    _remove_dead_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
    try:
        result = _run_stages(cfg, model, meta, staging, log)
        triton = Path(cfg.triton) if cfg.triton else None
        return _publish(result, staging, out, triton, max_batch=cfg.batch[2])
    except OSError as e:
        raise _named_in(e, staging, out) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed export leaves no folder it made either


def _named_in(e: OSError, staging: Path, out: Path) -> OSError:
    """An OSError about a staging file, renamed to the file it was to become in ``out``."""
    name = str(e.filename or "")
    if e.errno is None or not name.startswith(str(staging)):
        return e
    target = out / Path(name).relative_to(staging) if name != str(staging) else out
    return OSError(e.errno, e.strerror, str(target))


def _remove_dead_staging(out: Path) -> None:
    """Remove staging folders left by exports that were killed (their process is gone)."""
    for folder in out.glob(f"{STAGING_PREFIX}*"):
        pid = folder.name[len(STAGING_PREFIX) :].split("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _run_stages(cfg: ExportConfig, model, meta: ModelMeta, work: Path, log) -> ExportResult:
    from edgevid.export.torch_to_onnx import torch_to_onnx

    result = ExportResult()
    fp32 = work / graph_name(meta.variant, raw_input=cfg.raw_input)
    graph_options = dict(opset=cfg.opset, raw_input=cfg.raw_input, exporter=cfg.exporter)
    _timed(log, "FP32 ONNX", torch_to_onnx, model, meta, fp32, **graph_options)
    result.graphs.append(fp32)
    for name in cfg.precisions:  # table order: FP16 before INT8
        dst = work / graph_name(meta.variant, name, cfg.raw_input)
        result.graphs.append(_timed(log, f"{name} ONNX", _convert, cfg, name, fp32, dst, log))
    if cfg.openvino:
        from edgevid.export.openvino_ir import onnx_to_ir

        for graph in result.graphs:
            ir = derived_path(graph, "openvino")  # shares the graph's sidecar <stem>.json
            result.openvino.append(_timed(log, "OpenVINO IR", onnx_to_ir, graph, ir))
    if cfg.verify:
        result.verification, result.table = _verify(cfg, model, result, log)
    if cfg.trt:
        result.engines = _engines(cfg, result.graphs, log)
    return result


def _engines(cfg: ExportConfig, graphs: list[Path], log) -> list[Path]:
    """An engine per graph TensorRT builds here, as ``edgevid compile`` plans it: CPU graphs
    and, on a DLA core, the FP32 graph are skipped with a line."""
    from edgevid.core.onnx_file import read_metadata
    from edgevid.runtime.backends.onnx_engine import build_file
    from edgevid.runtime.backends.tensorrt_build import load_tensorrt, probe_device

    facts = probe_device(load_tensorrt())
    request = BuildRequest(batch=cfg.batch, dla_core=cfg.dla_core, workspace_mb=cfg.workspace_mb)
    cache = Path(cfg.out) / "timing.cache"
    engines = []
    for name, graph in zip(("fp32", *cfg.precisions), graphs, strict=True):
        if get_precision(name).fusions:
            log(f"{graph.name}: a CPU graph (rewritten for ONNX Runtime/OpenVINO), no engine")
            continue
        plan = plan_build(name, request, facts)
        if isinstance(plan, Skipped):
            log(f"{graph.name}: {plan.reason}")
            continue
        engine = derived_path(graph, "tensorrt")  # its own .json sidecar
        meta = read_metadata(graph)
        engines.append(
            _timed(log, f"TensorRT {engine.name}", build_file, graph, engine, plan, meta, cache)
        )
    return engines


def _convert(cfg: ExportConfig, precision: str, fp32: Path, dst: Path, log) -> Path:
    """The FP32 graph in another precision: FP16 here, INT8 by the calibration stage."""
    if precision == "fp16":
        from edgevid.export.fp16 import onnx_to_fp16

        return onnx_to_fp16(fp32, dst)
    from edgevid.calib.quantize import quantize

    with _bar("calibration clips", cfg.calib_clips) as progress:
        return quantize(fp32, dst, precision, calib_data=cfg.calib_data, method=cfg.calib_method,
                        num_clips=cfg.calib_clips, progress=progress, log=log)  # fmt: skip


def _verify(cfg: ExportConfig, model, result: ExportResult, log):
    from edgevid.core.onnx_file import read_metadata
    from edgevid.export import verify

    meta = read_metadata(result.graphs[0])
    clips = verification_clips(cfg, meta)
    reference = verify.torch_logits(model, clips, meta)
    results = [verify.verify_graph(g, reference, clips) for g in result.graphs]
    results += [verify.verify_openvino(ir, reference, clips) for ir in result.openvino]
    table = verify.format_table(results)
    log(table)
    verify.require_pass(results)
    return results, table


def _publish(
    result: ExportResult, staging: Path, out: Path, triton: Path | None, *, max_batch: int
) -> ExportResult:
    """Move every artefact (and its sidecar) from staging into ``out``; then Triton."""
    moved: dict[Path, Path] = {}
    for path in [*result.graphs, *result.engines, *result.openvino]:
        for f in model_files(path):  # with its sidecar (an IR: and its weights)
            if f not in moved:
                moved[f] = out / f.name
                os.replace(f, moved[f])
    result.graphs = [moved[g] for g in result.graphs]
    result.engines = [moved[e] for e in result.engines]
    result.openvino = [moved[x] for x in result.openvino]
    if triton is not None:
        from edgevid.export.triton import write_repository

        result.triton = write_repository(
            triton, [*result.graphs, *result.engines], max_batch_size=max_batch
        )
    return result


def _timed(log, what: str, stage: Callable[..., Path], *args, **kwargs) -> Path:
    """Run one stage function and log what it wrote, how big, how long."""
    from edgevid.progress import heartbeat

    t0 = time.perf_counter()
    with heartbeat(what):  # a stage has no count: its elapsed time, as it runs
        path = stage(*args, **kwargs)
    mb = path.stat().st_size / 2**20
    log(f"{what:<20} {path.name}  {mb:.1f} MB  {time.perf_counter() - t0:.1f} s")
    return path
