"""Layer pruning: strategies, HF-loadable output with identical logits, KD recovery, sweep."""

from __future__ import annotations

import json

import pytest

from edgevid.errors import ModelError
from tests.conftest import SYNTH_LABELS, needs_torch

pytestmark = needs_torch

torch = pytest.importorskip("torch")
from transformers import TimesformerForVideoClassification  # noqa: E402

from edgevid.core.manifest import split_dataset  # noqa: E402
from edgevid.core.meta import ModelMeta  # noqa: E402
from edgevid.train.checkpoint import meta_for  # noqa: E402
from edgevid.train.config import AugmentConfig, TrainConfig  # noqa: E402
from edgevid.train.models import create_model  # noqa: E402
from edgevid.train.prune import STRATEGIES, importance_layers, prune, prune_sweep  # noqa: E402


@pytest.fixture(scope="module")
def manifest(synth_root):
    return split_dataset(synth_root)


def _teacher(identity: tuple[int, ...] = (), poison: int | None = None):
    """A tiny 12-layer TimeSformer; layers in ``identity`` add exactly nothing; layer
    ``poison`` writes a constant along feature 0 that the head reads as class 0 (so the model
    says class 0 for every clip, until that layer goes)."""
    torch.manual_seed(0)
    model = create_model("tiny-timesformer", labels=SYNTH_LABELS).eval()
    with torch.no_grad():
        for i in identity:
            layer = model.timesformer.encoder.layer[i]
            for lin in (layer.attention.output.dense, layer.temporal_dense, layer.output.dense):
                lin.weight.zero_()
                lin.bias.zero_()
        if poison is not None:
            model.timesformer.encoder.layer[poison].output.dense.bias[0] = 100.0
            model.classifier.weight[0, 0] = 5.0
    return model


def test_strategies_registry():
    assert sorted(STRATEGIES) == ["importance", "last"]
    assert STRATEGIES["last"](_teacher(), 4) == [0, 1, 2, 3]


def test_importance_drops_the_layer_whose_removal_hurts_least(manifest):
    """Greedy backward elimination on validation loss: each round removes the candidate
    with the lowest loss. A harmful layer (whose removal lowers the loss) goes first, not
    last; a layer with zero residual branches leaves the loss exactly unchanged."""
    from edgevid.train.prune import val_tensors

    teacher = _teacher(identity=(3,), poison=7)
    val = val_tensors(manifest, meta_for(teacher))
    trace: list = []
    kept = importance_layers(teacher, 9, val=val, trace=trace, progress=False)
    first, second = trace[0], trace[1]
    assert first["removed"] == 7 and first["candidates"][7] < first["base_loss"] / 2
    others = [v for i, v in second["candidates"].items() if i != 3]
    assert second["candidates"][3] == pytest.approx(second["base_loss"], abs=1e-5)
    assert max(abs(v - second["base_loss"]) for v in others) > 1e-3  # the others do something
    assert [len(t["candidates"]) for t in trace] == [12, 11, 10]
    for t in trace:
        assert t["removed"] == min(t["candidates"], key=t["candidates"].get)
    assert kept == [i for i in range(12) if i not in {t["removed"] for t in trace}]


@pytest.mark.parametrize("strategy, keep", [("last", 4), ("importance", 10)])
def test_pruned_checkpoint_loads_with_from_pretrained(manifest, tmp_path, strategy, keep):
    teacher = _teacher(poison=5)
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
        assert record["importance_trace"][0]["removed"] == 5  # the harmful layer went first
    assert record["pruned_test_acc"] == result.pruned_test_acc  # before recovery (none here)
    assert record["test_acc"] == result.test_acc == result.pruned_test_acc


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
    assert record["pruned_test_acc"] == result.pruned_test_acc is not None  # before recovery


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


@pytest.mark.slow  # a subprocess prune with recovery training: ~15 s
def test_cli_prune_with_recovery(manifest, tmp_path):
    """`edgevid prune` on a run folder: finds the run's manifest, recovers, reports both."""
    from click.testing import CliRunner

    from edgevid.cli import main
    from edgevid.train.checkpoint import save_checkpoint

    teacher = _teacher(poison=5)
    save_checkpoint(teacher, meta_for(teacher), tmp_path / "run" / "best")
    manifest.save(tmp_path / "run" / "manifest.json")
    out = tmp_path / "p10"
    args = ["prune", "--checkpoint", str(tmp_path / "run" / "best"), "--variant", "prune2",
            "--recover-epochs", "1", "--no-augment", "--quiet", "--out", str(out)]  # fmt: skip
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    record = json.loads((out / "prune.json").read_text())
    assert record["keep"] == 10 and record["importance_trace"][0]["removed"] == 5
    assert (
        f"{record['pruned_test_acc']:.3f} pruned -> {record['test_acc']:.3f} recovered" in r.output
    )
    assert (
        TimesformerForVideoClassification.from_pretrained(out / "best").config.num_hidden_layers
        == 10
    )
