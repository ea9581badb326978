"""The artefacts a plan's candidates need: one pruned checkpoint per level (importance pruning +
distillation, ``edgevid.train.prune``) and its exported graphs (``edgevid.export``).

Everything goes into ``WORK/prune<D>/`` and is reused when complete, so an interrupted plan
resumes: a pruned run is complete once its ``prune.json`` exists (prune() writes it last), a
level's graphs once every requested one is there (the export publishes them together, after
verification). A pruning run cut short is removed and done again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from edgevid.core.precision import get_precision
from edgevid.errors import DataError, ModelError

Log = Callable[[str], None]


WORK_MARK = ".edgevid-plan"  # in a work folder a plan made: its contents are the plan's


def claim_work(work: Path) -> Path:
    """``work``, new or made by an earlier plan (it holds WORK_MARK): a plan replaces what is
    in it (a cut-short pruning run, the manifest). A folder of that name that no plan made
    is refused, never written into."""
    if work.exists() and not (work / WORK_MARK).is_file():
        raise DataError(f"{work}: a folder edgevid plan did not make; choose another --out")
    work.mkdir(parents=True, exist_ok=True)
    (work / WORK_MARK).touch()
    return work


def prune_levels(variant: str, only: Sequence[int] | None = None) -> list[tuple[int, str]]:
    """(layers dropped, registry variant) of every pruned TimeSformer variant below
    ``variant``'s depth, in registry order (tiny-timesformer: tiny-prune2 ... tiny-prune8)."""
    from edgevid.train.models import list_models, model_spec

    teacher = model_spec(variant)
    if teacher.family != "timesformer":
        raise ModelError(f"{variant}: a plan prunes TimeSformer variants; this is {teacher.family}")
    prefix = "tiny-" if variant.startswith("tiny-") else ""
    out = []
    for name in list_models(f"{prefix}prune*"):
        if prefix == "" and name.startswith("tiny-"):
            continue
        spec = model_spec(name)
        drop = 12 - spec.num_layers  # registry names count the layers dropped from 12
        if spec.num_layers < teacher.num_layers and (only is None or drop in only):
            out.append((drop, name))
    if only is not None and len(out) < len(set(only) - {0}):
        known = ", ".join(str(d) for d, _ in prune_levels(variant))
        asked = ",".join(map(str, only))
        raise ModelError(f"--levels {asked}: the registry prunes {variant} by {known or 'no'} "
                         "layers, no other count")  # fmt: skip
    return out


def pruned_checkpoint(teacher_dir: Path, manifest, work: Path, drop: int, recover_epochs: int,
                      lr: float, progress: bool, log: Log) -> Path:  # fmt: skip
    """WORK/prune<D>/run/best: the teacher pruned by ``drop`` layers and recovered (reused)."""
    if drop == 0:
        return teacher_dir
    run = work / f"prune{drop}" / "run"
    if (run / "prune.json").is_file():
        return run / "best"
    if run.exists():
        shutil.rmtree(run)  # a pruning run that was cut short: ours, incomplete
    from edgevid.train.checkpoint import load_checkpoint
    from edgevid.train.prune import prune, recovery_config

    teacher, meta = load_checkpoint(teacher_dir)
    keep = teacher.config.num_hidden_layers - drop
    recover = recovery_config(meta.variant, recover_epochs, augment=False, lr=lr)
    r = prune(teacher, meta, manifest, run, keep=keep, strategy="importance", recover=recover,
              progress=progress)  # fmt: skip
    log(f"prune{drop}: kept layers {r.kept_layers}, val top-1 {r.val_acc}")
    return run / "best"


def exported_graphs(checkpoint: Path, work: Path, drop: int, precisions: Sequence[str],
                    data: Path, calib_clips: int, log: Log) -> dict[str, Path]:  # fmt: skip
    """{precision: graph} of ``checkpoint`` in WORK/prune<D>/export (reused when complete)."""
    from edgevid.core.meta import META_FILENAME, ModelMeta

    out = work / f"prune{drop}" / "export"
    variant = ModelMeta.load(checkpoint / META_FILENAME).variant
    graphs = {p: out / f"{variant}{get_precision(p).suffix}.onnx" for p in precisions}
    if all(g.is_file() for g in graphs.values()):
        return graphs
    from edgevid.export.pipeline import ExportConfig, export_model

    extra = tuple(p for p in precisions if p != "fp32")
    # No verification gate: the plan measures every graph's accuracy on the eval split and
    # ranks it by its drop; a graph export would refuse (a barely trained model's INT8
    # flipping a close call) is a candidate to measure, not an error that ends the plan
    cfg = ExportConfig(checkpoint=str(checkpoint), out=str(out), precisions=extra,
                       calib_data=str(data), calib_clips=calib_clips, verify=False)  # fmt: skip
    export_model(cfg, log=log)
    return graphs
