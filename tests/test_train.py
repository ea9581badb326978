"""Training: staged freezing, augmentation, datasets, head replacement, a full short run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgevid.errors import ModelError
from tests.conftest import SYNTH_LABELS, needs_torch

pytestmark = needs_torch

torch = pytest.importorskip("torch")
from edgevid.core.manifest import split_dataset  # noqa: E402
from edgevid.train.augment import augment_clip  # noqa: E402
from edgevid.train.build import build_model  # noqa: E402
from edgevid.train.checkpoint import load_checkpoint, meta_for, save_checkpoint  # noqa: E402
from edgevid.train.config import AugmentConfig, TrainConfig  # noqa: E402
from edgevid.train.dataset import ClipDataset, EpochSampler, collate  # noqa: E402
from edgevid.train.models import create_model  # noqa: E402
from edgevid.train.staged import StagedModel  # noqa: E402
from edgevid.train.trainer import train, warmup_cosine  # noqa: E402
from edgevid.train.zeroshot import UCF_TO_KINETICS, zero_shot_head  # noqa: E402


def _x(model, b=2):
    cfg = model.config
    return torch.randn(b, cfg.num_frames, 3, cfg.image_size, cfg.image_size)  # (B, T, C, H, W)


@pytest.mark.parametrize("name", ["tiny-timesformer", "tiny-prune8", "tiny-scratch"])
@pytest.mark.parametrize("unfreeze", [-1, 1, 2])
def test_staged_model_is_the_model(name, unfreeze):
    """Prefix + tail compute the model's own logits; only the tail has gradients."""
    torch.manual_seed(0)
    model = create_model(name, labels=SYNTH_LABELS).eval()
    staged = StagedModel(model, unfreeze).eval()
    x = _x(model)
    with torch.no_grad():
        full = model(pixel_values=x).logits
        assert torch.allclose(staged(pixel_values=x), full, atol=1e-5)
        if staged.has_prefix:
            assert torch.allclose(staged(hidden=staged.prefix(x)), full, atol=1e-5)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("classifier" in n for n in trainable)
    total = len(list(model.parameters()))
    if unfreeze == -1:
        assert len(trainable) == total
    else:
        assert 0 < len(trainable) < total
        layers = staged.adapter.layers(model)
        assert all(p.requires_grad for p in layers[-1].parameters())
        assert not any(p.requires_grad for p in layers[0].parameters())


def test_frozen_prefix_stays_in_eval_mode():
    model = create_model("tiny-scratch", labels=SYNTH_LABELS)
    StagedModel(model, unfreeze=1).train()
    assert not model.frames.training  # frozen BatchNorm statistics do not drift
    assert model.layers[-1].training and model.classifier.training


def test_augment_is_one_draw_per_clip():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1, 48, 64, 3), dtype=np.uint8)
    clip = np.repeat(base, 4, axis=0)  # 4 identical frames
    out = augment_clip(clip, 32, AugmentConfig(hflip=1.0), np.random.default_rng(1))
    assert out.shape == (4, 32, 32, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[0], f) for f in out)  # same crop/flip/colour on every frame
    again = augment_clip(clip, 32, AugmentConfig(hflip=1.0), np.random.default_rng(1))
    assert np.array_equal(out, again)


def test_sampler_resumes_and_shards():
    s = EpochSampler(10, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.set_start(4)
    assert list(s) == full[4:]
    assert [i for i, _ in full] != list(range(10))  # shuffled
    shards = [list(EpochSampler(10, 3, True, r, 3)) for r in range(3)]
    assert all(len(sh) == 4 for sh in shards)  # padded to equal length
    assert {i for sh in shards for i, _ in sh} == set(range(10))


def test_warmup_cosine_schedule():
    f = warmup_cosine(total=100, warmup=10, min_ratio=0.01)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) < f(20) and f(99) == pytest.approx(0.01, abs=1e-3)


def test_dataset_reports_corrupt_clip(synth_root, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    good = sorted((synth_root / "Grow").glob("*.mp4"))[:2]
    model = create_model("tiny-prune8", labels=SYNTH_LABELS)
    ds = ClipDataset([good[0], bad, good[1]], [0, 0, 0], meta_for(model))
    batch = collate([ds[i] for i in range(3)])
    assert batch.inputs.shape == (2, 8, 3, 32, 32)
    assert [s.path for s in batch.skipped] == [str(bad)]


def test_dataset_memo_keeps_deterministic_clips_within_budget(synth_root):
    paths = sorted((synth_root / "Grow").glob("*.mp4"))[:3]
    meta = meta_for(create_model("tiny-prune8", labels=SYNTH_LABELS))
    clip_mb = 8 * 3 * 32 * 32 * 4 / 2**20  # one (T, 3, S, S) float32 clip
    plain = ClipDataset(paths, [0, 1, 2], meta)
    memo = ClipDataset(paths, [0, 1, 2], meta, memo_mb=2.5 * clip_mb)  # room for two
    first = [memo[i] for i in range(3)]
    assert sorted(memo._memo) == [0, 1]  # the third did not fit
    for i in range(3):
        again, label, index, _ = memo[(i, 5)]  # another epoch's draw: same clip, no decode
        assert torch.equal(again, plain[i][0]) and torch.equal(again, first[i][0])
        assert (label, index) == (i, i)
    augmented = ClipDataset(paths, [0, 1, 2], meta, train=True, augment=AugmentConfig(),
                            memo_mb=100)  # fmt: skip
    assert not torch.equal(augmented[(0, 0)][0], augmented[(0, 1)][0])  # fresh draw per epoch
    assert not augmented._memo


def test_random_init_time_embeddings_break_frame_symmetry():
    """HF leaves time embeddings at zero, which makes a fresh TimeSformer blind to frame
    order; ours are drawn, so reversing the frames changes the logits from the start."""
    torch.manual_seed(0)
    model = create_model("tiny-prune8", labels=SYNTH_LABELS).eval()
    time = model.timesformer.embeddings.time_embeddings
    assert time.std() > 0.01
    x = _x(model)
    with torch.no_grad():
        forward, backward = model(pixel_values=x).logits, model(pixel_values=x.flip(1)).logits
        assert not torch.allclose(forward, backward, atol=1e-4)
        time.zero_()  # the Hugging Face init: exactly order-invariant
        forward, backward = model(pixel_values=x).logits, model(pixel_values=x.flip(1)).logits
        assert torch.allclose(forward, backward, atol=1e-5)


def test_head_replacement_keeps_backbone(tmp_path):
    """Starting weights with other classes: same backbone, a fresh head over the new labels."""
    torch.manual_seed(0)
    source = create_model("tiny-timesformer", labels=["a", "b", "c", "d", "e", "f", "g"])
    save_checkpoint(source, meta_for(source), tmp_path / "src")
    model = build_model("tiny-prune4", SYNTH_LABELS, weights=str(tmp_path / "src"))
    assert model.config.id2label == dict(enumerate(SYNTH_LABELS))
    assert model.classifier.out_features == 5 and model.config.num_hidden_layers == 8
    src = dict(source.named_parameters())
    for n, p in model.named_parameters():
        if not n.startswith("classifier"):
            assert torch.equal(p, src[n]), n
    assert model(pixel_values=_x(model)).logits.shape == (2, 5)


def test_zero_shot_head_copies_kinetics_rows():
    k400 = ["abseiling", "javelin throw", "long jump", "pole vault", "zumba"]
    torch.manual_seed(0)
    model = create_model("tiny-prune8", labels=k400)
    old = model.classifier.weight.detach().clone()
    labels = ["LongJump", "JavelinThrow", "Skiing"]
    mapped = zero_shot_head(model, labels, UCF_TO_KINETICS)
    assert mapped == ["LongJump", "JavelinThrow"]
    assert torch.equal(model.classifier.weight[0], old[2])
    assert torch.equal(model.classifier.weight[1], old[1])
    assert model.config.id2label == {0: "LongJump", 1: "JavelinThrow", 2: "Skiing"}
    with pytest.raises(ModelError, match="no counterpart|none of"):
        zero_shot_head(model, ["Cooking"], {})


@pytest.fixture(scope="module")
def short_run(synth_root, tmp_path_factory):
    manifest = split_dataset(synth_root)
    cfg = TrainConfig(
        variant="tiny-prune8",
        epochs=2,
        lr=1e-3,
        batch_size=8,
        unfreeze=-1,
        augment=AugmentConfig(scale=(0.7, 1.0)),
    )
    run_dir = tmp_path_factory.mktemp("run") / "run"
    return manifest, train(cfg, manifest, run_dir, progress=False)


def test_run_folder_has_every_artefact(short_run):
    manifest, result = short_run
    run = result.run_dir
    for name in (
        "history.json",
        "curves.png",
        "confusion_matrix.png",
        "confusion_matrix.json",
        "config.json",
        "manifest.json",
        "best/config.json",
        "best/model.safetensors",
        "best/edgevid.json",
        "last/training_state.json",
        "last/training_state.safetensors",
    ):
        assert (run / name).is_file(), name
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["train_loss"]) and "val_acc" in h for h in history)
    report = json.loads((run / "confusion_matrix.json").read_text())
    assert np.sum(report["confusion"]) == len(manifest.splits["test"])
    assert result.test.top1 == report["top1"]


def test_checkpoint_records_training_sampling(short_run):
    manifest, result = short_run
    _, meta = load_checkpoint(result.run_dir / "best")
    s = meta.sampling
    assert s.fps == pytest.approx(15.0) and s.num_frames == 8
    assert s.clip_seconds == pytest.approx(manifest.extra["mean_duration_s"])
    assert s.frame_stride == round(s.clip_seconds * s.fps / 8)
    assert s.stream_stride(30.0) == round(s.clip_seconds * 30 / 8)


def test_best_checkpoint_loads_without_edgevid(short_run):
    from transformers import TimesformerForVideoClassification

    _, result = short_run
    hf = TimesformerForVideoClassification.from_pretrained(result.run_dir / "best").eval()
    ours, _ = load_checkpoint(result.run_dir / "best")
    x = _x(hf)
    with torch.no_grad():
        assert torch.equal(hf(pixel_values=x).logits, ours(pixel_values=x).logits)


@pytest.mark.slow  # two training runs: ~20 s
def test_cached_features_train_exactly_like_recomputed(synth_root, tmp_path):
    """Frozen backbone + no augmentation: caching changes the speed, not one number."""
    manifest = split_dataset(synth_root)
    histories = []
    for cache in (True, False):
        cfg = TrainConfig(
            variant="tiny-prune8",
            epochs=2,
            lr=1e-3,
            batch_size=8,
            unfreeze=1,
            augment=AugmentConfig(enabled=False),
            cache_features=cache,
        )
        r = train(cfg, manifest, tmp_path / f"cache{cache}", progress=False)
        histories.append([(h["train_loss"], h["val_loss"]) for h in r.history])
        assert (r.cache_seconds > 0) == cache
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)


def test_refuses_to_overwrite_a_run(short_run, tmp_path):
    from edgevid.errors import DataError

    manifest, result = short_run
    with pytest.raises(DataError, match="--resume"):
        train(TrainConfig(variant="tiny-prune8", epochs=1), manifest, result.run_dir)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_zero_shot_start_from_a_weights_folder(tmp_path):
    """--zero-shot: the new head's rows are the source head's rows for the mapped classes."""
    torch.manual_seed(0)
    source = create_model("tiny-timesformer", labels=["abseiling", "long jump", "pole vault"])
    save_checkpoint(source, meta_for(source), tmp_path / "k400")
    model = build_model(
        "tiny-prune8",
        ["PoleVault", "LongJump", "Cooking"],
        weights=str(tmp_path / "k400"),
        zero_shot=True,
    )
    w = model.classifier.weight
    assert torch.equal(w[0], source.classifier.weight[2])
    assert torch.equal(w[1], source.classifier.weight[1])
    assert model.config.num_hidden_layers == 4 and model.config.edgevid_variant == "tiny-prune8"
    with pytest.raises(ModelError, match="needs a TimeSformer"):
        build_model("tiny-scratch", ["a"], zero_shot=True)
