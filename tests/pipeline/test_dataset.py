"""build_dataset: outputs per task, masks, determinism, evaluation, distribution, oversampling."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data.discover import discover
from data.imageio import read_image
from pipeline.config import PipelineConfig
from pipeline.dataset import build_dataset, global_batch_size
from pipeline.decode import preprocess
from tests.conftest import N_LOGICAL_CPUS

SIZE = 32


@pytest.fixture
def records(make_busi):
    """12 cases; two images stored as RGB, the rest gray."""
    root = make_busi(per_class=4)
    for name in ("benign (1)", "normal (2)"):
        label = name.split()[0]
        p = root / label / f"{name}.png"
        g = np.asarray(Image.open(p))
        Image.fromarray(np.dstack([g, g // 2, 255 - g])).save(p)
    return list(discover(root).values())


def _epoch(ds) -> list[tuple[np.ndarray, object]]:
    out = []
    for x, y in ds:
        y = {k: v.numpy() for k, v in y.items()} if isinstance(y, dict) else y.numpy()
        out.append((x.numpy(), y))
    return out


@pytest.mark.parametrize("training", [True, False])
def test_shapes_and_dtypes_for_each_task(records, training) -> None:
    cfg = PipelineConfig(img_size=SIZE, batch_size=4, augment="light")
    x, y = next(iter(build_dataset(records, "seg", cfg, training)))
    assert x.shape == (4, SIZE, SIZE, 3) and x.dtype == tf.float32
    assert y.shape == (4, SIZE, SIZE, 1) and y.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255.0
    x, y = next(iter(build_dataset(records, "cls", cfg, training)))
    assert y.shape == (4, 3) and y.dtype == tf.float32
    np.testing.assert_array_equal(y.numpy().sum(axis=1), 1.0)
    x, y = next(iter(build_dataset(records, "joint", cfg, training)))
    assert set(y) == {"mask", "label"}
    assert y["mask"].shape == (4, SIZE, SIZE, 1) and y["label"].shape == (4, 3)


@pytest.mark.parametrize("augment", ["none", "light", "strong"])
def test_masks_stay_binary_after_resize_and_augmentation(records, augment) -> None:
    cfg = PipelineConfig(img_size=SIZE, batch_size=4, augment=augment)
    for _, y in build_dataset(records, "seg", cfg, training=True):
        assert set(np.unique(y.numpy())) <= {0.0, 1.0}


@pytest.mark.parametrize("channels", [1, 3])
def test_gray_and_rgb_inputs_give_the_same_shape(records, channels) -> None:
    cfg = PipelineConfig(img_size=SIZE, batch_size=12, channels=channels, augment="none")
    ((x, _),) = _epoch(build_dataset(records, "cls", cfg, training=False))
    assert x.shape == (12, SIZE, SIZE, channels)


def test_same_seed_gives_the_same_augmented_epochs(records) -> None:
    cfg = PipelineConfig(img_size=SIZE, batch_size=4, augment="strong", seed=7)
    a = build_dataset(records, "seg", cfg, training=True)
    b = build_dataset(records, "seg", cfg, training=True)
    a1, a2 = _epoch(a), _epoch(a)
    b1, b2 = _epoch(b), _epoch(b)
    for (xa, ya), (xb, yb) in zip(a1 + a2, b1 + b2, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # Epochs differ from each other, and another seed gives other epochs.
    assert not all(np.array_equal(p[0], q[0]) for p, q in zip(a1, a2, strict=True))
    other = _epoch(build_dataset(records, "seg", PipelineConfig(**{**cfg.__dict__, "seed": 8}), True))
    assert not np.array_equal(other[0][0], a1[0][0])


def test_no_augmentation_at_evaluation(records) -> None:
    strong = PipelineConfig(img_size=SIZE, batch_size=5, augment="strong")
    evals = [_epoch(build_dataset(records, "cls", strong, training=False)) for _ in range(2)]
    xs = np.concatenate([x for x, _ in evals[0]])
    np.testing.assert_array_equal(xs, np.concatenate([x for x, _ in evals[1]]))
    # Record order is kept and the pixels are exactly decode + resize of each file.
    for k, r in enumerate(records):
        direct = preprocess(tf.constant(read_image(r.image)), SIZE, 3, "bilinear").numpy()
        np.testing.assert_allclose(xs[k], direct, atol=1e-4)


def test_global_batch_is_per_replica_times_replicas_under_mirrored_strategy(records) -> None:
    devices = [f"/cpu:{i}" for i in range(N_LOGICAL_CPUS)]
    strategy = tf.distribute.MirroredStrategy(devices)
    assert strategy.num_replicas_in_sync == 2
    cfg = PipelineConfig(img_size=SIZE, batch_size=3, augment="none")
    with strategy.scope():
        assert global_batch_size(cfg) == 6
        x, _ = next(iter(build_dataset(records, "seg", cfg, training=True)))
    assert x.shape[0] == 6
    dist = strategy.experimental_distribute_dataset(build_dataset(records, "seg", cfg, True, strategy))
    per_replica = next(iter(dist))[0]
    assert [t.shape[0] for t in strategy.experimental_local_results(per_replica)] == [3, 3]


def test_oversampling_draws_classes_about_equally(make_busi) -> None:
    root = make_busi(per_class=12)
    cases = discover(root)
    keep = [c for c in cases.values() if c.label == "benign" or c.case_id.endswith(("(1)", "(2)", "(3)"))]
    assert Counter(c.label for c in keep) == {"benign": 12, "normal": 3, "malignant": 3}
    cfg = PipelineConfig(img_size=16, batch_size=6, augment="none", oversample=True)
    ds = build_dataset(keep, "cls", cfg, training=True)
    counts = Counter()
    for _ in range(10):
        for _, y in ds:
            counts.update(y.numpy().argmax(axis=1).tolist())
    total = sum(counts.values())
    assert total == 10 * 18  # an epoch keeps the dataset's length
    for c in range(3):
        assert abs(counts[c] / total - 1 / 3) < 0.1, counts


def test_segmentation_oversampling_draws_normal_images_a_third_of_the_time(make_busi) -> None:
    root = make_busi(per_class=12)
    keep = [c for c in discover(root).values() if c.label == "benign" or c.case_id.endswith(("(1)", "(2)", "(3)"))]
    cfg = PipelineConfig(img_size=16, batch_size=6, augment="none", oversample=True)
    empty = total = 0
    for _ in range(10):
        for _, y in build_dataset(keep, "seg", cfg, training=True):
            empty += int((y.numpy().reshape(len(y), -1).max(axis=1) == 0).sum())
            total += len(y)
    assert total == 10 * 18
    assert abs(empty / total - 1 / 3) < 0.1  # 3 of the 18 cases (17%) without oversampling
    plain = PipelineConfig(img_size=16, batch_size=6, augment="none")
    masks = np.concatenate([y.numpy() for _, y in build_dataset(keep, "seg", plain, training=True)])
    assert int((masks.reshape(len(masks), -1).max(axis=1) == 0).sum()) == 3


def test_each_pass_of_a_repeated_training_dataset_is_a_new_balanced_epoch(make_busi) -> None:
    # The trainer feeds `fit` one iterator of `build_dataset(...).repeat()`, `steps` batches per epoch.
    root = make_busi(per_class=12)
    keep = [c for c in discover(root).values() if c.label == "benign" or c.case_id.endswith(("(1)", "(2)", "(3)"))]
    cfg = PipelineConfig(img_size=16, batch_size=6, augment="none", oversample=True)
    batches = list(build_dataset(keep, "cls", cfg, training=True).repeat().take(4 * 3))  # 18 cases: 3 batches a pass
    passes = [batches[3 * k : 3 * k + 3] for k in range(4)]
    drawn = []
    for p in passes:
        x = np.concatenate([b[0].numpy() for b in p])
        y = np.concatenate([b[1].numpy() for b in p]).argmax(axis=1)
        assert np.bincount(y, minlength=3).tolist() == [6, 6, 6]  # every pass is one whole class-balanced epoch
        drawn.append([hash(img.tobytes()) for img in x])
    assert len({tuple(d) for d in drawn}) == 4  # reshuffled every pass
    assert len({tuple(sorted(d)) for d in drawn}) > 1  # and the oversampled cases redrawn


def test_file_cache_is_keyed_by_data_and_size(records, tmp_path: Path) -> None:
    prefix = tmp_path / "cache" / "busi"
    cfg = PipelineConfig(img_size=SIZE, batch_size=4, augment="none", cache=str(prefix))
    first = _epoch(build_dataset(records, "seg", cfg, training=False))
    files = {p.name for p in prefix.parent.iterdir()}
    assert any(f.endswith(".index") for f in files)
    again = _epoch(build_dataset(records, "seg", cfg, training=False))
    for (xa, _), (xb, _) in zip(first, again, strict=True):
        np.testing.assert_array_equal(xa, xb)
    bigger = PipelineConfig(**{**cfg.__dict__, "img_size": SIZE * 2})
    (x, _), *_ = _epoch(build_dataset(records, "seg", bigger, training=False))
    assert x.shape[1] == SIZE * 2
    assert len({p.name for p in prefix.parent.iterdir()}) > len(files)


def test_bad_arguments_raise(records) -> None:
    cfg = PipelineConfig(img_size=SIZE)
    with pytest.raises(ValueError, match="task"):
        build_dataset(records, "detect", cfg, True)
    with pytest.raises(ValueError, match="records"):
        build_dataset([], "seg", cfg, True)
    with pytest.raises(ValueError, match="augment"):
        PipelineConfig(augment="heavy")
    with pytest.raises(ValueError, match="channels"):
        PipelineConfig(channels=2)


@pytest.mark.parametrize(
    "task,oversample,training", [("seg", False, True), ("joint", True, True), ("seg", False, False)]
)
def test_files_are_read_only_in_the_first_epoch(records, task, oversample, training) -> None:
    cfg = PipelineConfig(img_size=SIZE, batch_size=4, augment="light", oversample=oversample)
    ds = build_dataset(records, task, cfg, training=training)
    first = _epoch(ds)
    for r in records:  # later epochs must come from the cache alone
        for p in (r.image, *r.masks):
            p.unlink()
    for _ in range(2):
        again = _epoch(ds)
        assert sum(len(x) for x, _ in again) == sum(len(x) for x, _ in first)
    if not training:
        for (xa, ya), (xb, yb) in zip(first, again, strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


def test_bmp_masks_and_extra_masks_are_merged(make_busi) -> None:
    root = make_busi(per_class=2)
    from tests.conftest import disc_mask, save_mask

    save_mask(root / "benign" / "benign (1)_mask_1.png", disc_mask(cx=10, r=4))
    (root / "malignant" / "malignant (1)_mask.png").unlink()
    save_mask(root / "malignant" / "malignant (1)_mask.bmp", disc_mask(cx=50, r=5))
    cases = discover(root)
    cfg = PipelineConfig(img_size=64, batch_size=6, augment="none", resize="bilinear")
    _, masks = next(iter(build_dataset(list(cases.values()), "seg", cfg, training=False)))
    ids = list(cases)
    from data.scan import merge_masks

    for k, cid in enumerate(ids):
        expected, _, _ = merge_masks(cases[cid], (48, 64))
        got = tf.image.resize(tf.constant(expected[:, :, None].astype(np.uint8)), [64, 64], method="nearest")
        np.testing.assert_array_equal(masks[k].numpy(), got.numpy().astype(np.float32), err_msg=cid)
