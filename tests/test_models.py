"""The model registry, parametrized over every variant; checkpoints round-trip."""

from __future__ import annotations

import json

import pytest

from edgevid.errors import ModelError
from tests.conftest import FAST_VARIANT, needs_torch, one_fast

pytestmark = needs_torch

torch = pytest.importorskip("torch")
from edgevid.train.checkpoint import load_checkpoint, meta_for, save_checkpoint  # noqa: E402
from edgevid.train.models import create_model, list_models, model_spec  # noqa: E402
from edgevid.train.models.profile import profile_variant  # noqa: E402

LABELS = ["a", "b", "c"]
TINY = list_models("tiny-*")
FULL = [n for n in list_models() if not n.startswith("tiny-")]


def test_registry_names():
    """Every full-size variant has a tiny twin (the tests run those), in the same order."""
    assert "timesformer" in FULL and "scratch" in FULL
    assert [f"tiny-{n}" for n in FULL] == TINY
    assert all(model_spec(f"tiny-{n}").family == model_spec(n).family for n in FULL)


@pytest.mark.parametrize("name", TINY)
def test_tiny_variant_gives_logits(name):
    torch.manual_seed(0)
    model = create_model(name, labels=LABELS).eval()
    cfg = model.config
    x = torch.randn(2, cfg.num_frames, 3, cfg.image_size, cfg.image_size)  # (B, T, C, H, W)
    logits = model(pixel_values=x).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert cfg.num_hidden_layers == model_spec(name).num_layers
    assert cfg.edgevid_variant == name


@pytest.mark.parametrize("name", one_fast(TINY, FAST_VARIANT))  # up to 15 s each
def test_tiny_variant_trains(name):
    """One optimiser step lowers the loss on a fixed batch: gradients reach the weights."""
    torch.manual_seed(0)
    model = create_model(name, labels=LABELS).train()
    cfg = model.config
    x = torch.randn(4, cfg.num_frames, 3, cfg.image_size, cfg.image_size)
    y = torch.tensor([0, 1, 2, 0])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", FULL)
def test_full_size_profiles(name):
    p = profile_variant(name)
    assert p.layers == model_spec(name).num_layers  # the registry's depth is the model's
    if model_spec(name).family == "scratch":
        assert 1.5e6 < p.params < 2.5e6
    else:
        assert p.layers <= 12 == model_spec("timesformer").num_layers
        # 121.3M at 12 layers, each layer ~7.1M (divided space-time attention + MLP)
        assert p.params == pytest.approx(121.26e6 - (12 - p.layers) * 10.04e6, rel=0.01)
        assert p.gflops == pytest.approx(195.8 * (0.03 + 0.97 * p.layers / 12), rel=0.05)
    assert (p.frames, p.image_size) == (8, 224)


def test_pruned_keeps_first_layers_of_parent():
    torch.manual_seed(0)
    parent = create_model("tiny-timesformer", labels=LABELS)
    from edgevid.train.models.timesformer import keep_layers

    keep_layers(parent, [0, 1, 2, 5])
    assert parent.config.num_hidden_layers == 4
    assert parent.config.edgevid_kept_layers == [0, 1, 2, 5]
    keep_layers(parent, [0, 3])  # indices into the current layers, recorded in original ones
    assert parent.config.edgevid_kept_layers == [0, 5]
    with pytest.raises(ModelError):
        keep_layers(parent, [2])


def test_unknown_variant():
    with pytest.raises(ModelError, match="unknown variant 'prune5'.*prune4"):
        create_model("prune5")


def test_offline_weights_give_one_clear_error():
    with pytest.raises(ModelError, match="weights=DIR in Python, --weights DIR") as e:
        create_model("prune4", pretrained=True)
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no chained traceback
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match="weights folder not found"):
        create_model("prune4", weights="./no/such/folder")


def test_head_replacement_on_loaded_weights(tmp_path):
    """A checkpoint with 3 labels loaded for 5 labels gets a fresh 5-way head, same body."""
    torch.manual_seed(0)
    src = create_model("tiny-timesformer", labels=LABELS)
    src.save_pretrained(tmp_path / "w")
    new = create_model("tiny-prune4", labels=list("vwxyz"), weights=str(tmp_path / "w"))
    assert new.classifier.out_features == 5
    assert new.config.id2label == dict(enumerate("vwxyz"))
    assert new.config.num_hidden_layers == 8
    a = src.timesformer.encoder.layer[3].state_dict()
    b = new.timesformer.encoder.layer[3].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["tiny-prune4", "tiny-scratch"])
def test_checkpoint_round_trip(tmp_path, name):
    torch.manual_seed(0)
    model = create_model(name, labels=LABELS).eval()
    meta = meta_for(model)
    save_checkpoint(model, meta, tmp_path / "ck")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp folders left
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert files == ["config.json", "edgevid.json", "model.safetensors"]
    loaded, meta2 = load_checkpoint(tmp_path / "ck")
    assert meta2 == meta and meta2.labels == LABELS and meta2.variant == name
    x = torch.randn(1, 8, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, loaded(pixel_values=x).logits)
    saved = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert saved["num_hidden_layers"] == model_spec(name).num_layers


def test_pruned_checkpoint_loads_with_plain_transformers(tmp_path):
    from transformers import TimesformerForVideoClassification

    model = create_model("tiny-prune8", labels=LABELS).eval()
    save_checkpoint(model, meta_for(model), tmp_path / "ck")
    plain = TimesformerForVideoClassification.from_pretrained(tmp_path / "ck").eval()
    x = torch.randn(1, 8, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, plain(pixel_values=x).logits)


def test_corrupt_checkpoint(tmp_path):
    model = create_model("tiny-scratch", labels=LABELS)
    save_checkpoint(model, meta_for(model), tmp_path / "ck")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="corrupt"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
    (tmp_path / "ck" / "edgevid.json").write_text("{")
    with pytest.raises(ModelError, match="not an edgevid checkpoint"):
        load_checkpoint(tmp_path / "ck")


def test_save_failure_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = create_model("tiny-scratch", labels=LABELS)
    meta = meta_for(model)
    save_checkpoint(model, meta, tmp_path / "ck")
    before = (tmp_path / "ck" / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(type(model), "save_pretrained", boom)
    with pytest.raises(OSError):
        save_checkpoint(model, meta, tmp_path / "ck")
    assert (tmp_path / "ck" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_artefacts_are_readable_by_others(tmp_path):
    """Atomic writes go through mkstemp/mkdtemp (0600/0700); the results must not stay so."""
    import os
    import stat

    model = create_model("tiny-scratch", labels=LABELS)
    ck = save_checkpoint(model, meta_for(model), tmp_path / "ck")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(ck.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((ck / "edgevid.json").stat().st_mode) == 0o666 & ~umask
