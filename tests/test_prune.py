"""Layer pruning: strategies, HF-loadable output with identical logits, KD recovery, sweep."""

from __future__ import annotations

import json

import pytest

from edgevid.errors import ModelError
from tests.conftest import SYNTH_LABELS, needs_torch

pytestmark = needs_torch

torch = pytest.importorskip("torch")
from transformers import TimesformerForVideoClassification  # noqa: E402

from edgevid.meta import ModelMeta  # noqa: E402
from edgevid.train.checkpoint import meta_for  # noqa: E402
from edgevid.train.config import AugmentConfig, TrainConfig  # noqa: E402
from edgevid.train.folders import split_dataset  # noqa: E402
from edgevid.train.models import create_model  # noqa: E402
from edgevid.train.prune import STRATEGIES, importance_layers, prune, prune_sweep  # noqa: E402


@pytest.fixture(scope="module")
def manifest(synth_root):
    return split_dataset(synth_root)


def _teacher(identity: tuple[int, ...] = ()):
    """A tiny 12-layer TimeSformer; layers in ``identity`` add exactly nothing."""
    torch.manual_seed(0)
    model = create_model("tiny-timesformer", labels=SYNTH_LABELS).eval()
    with torch.no_grad():
        for i in identity:
            layer = model.timesformer.encoder.layer[i]
            for lin in (layer.attention.output.dense, layer.temporal_dense, layer.output.dense):
                lin.weight.zero_()
                lin.bias.zero_()
    return model


def test_strategies_registry():
    assert sorted(STRATEGIES) == ["importance", "last"]
    assert STRATEGIES["last"](_teacher(), 4) == [0, 1, 2, 3]


def test_importance_removes_layers_that_do_nothing(manifest):
    """Layers whose residual branches are zero change no loss: greedy removes them first."""
    teacher = _teacher(identity=(3, 7))
    from edgevid.train.prune import val_tensors

    val = val_tensors(manifest, meta_for(teacher))
    trace: list = []
    kept = importance_layers(teacher, 10, val=val, trace=trace, progress=False)
    assert kept == [i for i in range(12) if i not in (3, 7)]
    assert {t["removed"] for t in trace} == {3, 7}
    assert len(trace[0]["candidates"]) == 12 and len(trace[1]["candidates"]) == 11


@pytest.mark.parametrize("strategy, keep", [("last", 4), ("importance", 10)])
def test_pruned_checkpoint_loads_with_from_pretrained(manifest, tmp_path, strategy, keep):
    teacher = _teacher(identity=(5,))
    meta = meta_for(teacher)
    result = prune(
        teacher, meta, manifest, tmp_path / "p", keep=keep, strategy=strategy, progress=False
    )
    best = tmp_path / "p" / "best"
    hf = TimesformerForVideoClassification.from_pretrained(best).eval()
    assert hf.config.num_hidden_layers == keep and len(hf.timesformer.encoder.layer) == keep
    x = torch.randn(2, 8, 3, 32, 32)  # (B, T, C, H, W)
    with torch.no_grad():
        assert torch.equal(hf(pixel_values=x).logits, result.model(pixel_values=x).logits)
    saved = ModelMeta.load(best)
    assert saved.num_layers == keep and saved.kept_layers == result.kept_layers
    assert saved.variant == f"tiny-prune{12 - keep}"
    record = json.loads((tmp_path / "p" / "prune.json").read_text())
    assert record["kept_layers"] == result.kept_layers and record["strategy"] == strategy
    if strategy == "last":
        assert result.kept_layers == [0, 1, 2, 3]
    else:
        assert 5 not in result.kept_layers  # the do-nothing layer went first


def test_kd_recovery_writes_a_run(manifest, tmp_path):
    teacher = _teacher()
    recover = TrainConfig(
        variant="tiny-timesformer",
        epochs=1,
        lr=1e-3,
        batch_size=8,
        unfreeze=-1,
        augment=AugmentConfig(enabled=False),
    )
    out = tmp_path / "rec"
    result = prune(
        teacher,
        meta_for(teacher),
        manifest,
        out,
        keep=6,
        strategy="last",
        recover=recover,
        progress=False,
    )
    for name in ("best/config.json", "history.json", "prune.json", "confusion_matrix.png"):
        assert (out / name).is_file(), name
    assert result.model.config.num_hidden_layers == 6
    assert 0.0 <= result.test_acc <= 1.0
    record = json.loads((out / "prune.json").read_text())
    assert record["recovery"]["kd_alpha"] == 0.5


def test_sweep_table_and_plot(manifest, tmp_path):
    teacher = _teacher()
    rows = prune_sweep(
        teacher,
        meta_for(teacher),
        manifest,
        tmp_path / "s",
        drops=(4, 8),
        strategy="last",
        progress=False,
    )
    assert [r["layers"] for r in rows] == [12, 8, 4]
    assert rows[0]["params"] > rows[1]["params"] > rows[2]["params"]
    assert rows[0]["gflops"] > rows[2]["gflops"]
    for name in ("sweep.md", "sweep.json", "tradeoff.png", "prune4/best/config.json"):
        assert (tmp_path / "s" / name).is_file(), name
    table = (tmp_path / "s" / "sweep.md").read_text()
    assert "| prune8 | 4 |" in table and "GFLOPs/clip" in table


def test_bad_keep_is_one_clear_error(manifest, tmp_path):
    teacher = _teacher()
    with pytest.raises(ModelError, match="--keep must be between 1 and 11"):
        prune(teacher, meta_for(teacher), manifest, tmp_path / "x", keep=12, strategy="last")
    assert not (tmp_path / "x").exists()  # nothing written
