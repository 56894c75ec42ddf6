"""Augmentation from params: building, errors, and who gets which random stream."""

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader

from nnlab.config import LoaderConfig, load_params
from nnlab.data.augment import Augment, AugmentError, build_augment
from nnlab.data.datamodule import ArrayDataset, make_loader
from tests.conftest import REPO

pytestmark = pytest.mark.filterwarnings("error::UserWarning", "error::DeprecationWarning")


def step(name: str, **args) -> dict:
    return {"name": name, "args": args}


def lecture_steps():  # the recipe as params.yaml has it
    return load_params(REPO / "params.yaml").experiment("catdog_cnn_aug").augment


def _image(size=24):
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_lecture_recipe_builds_and_changes_images():
    img = _image()
    aug = Augment(lecture_steps(), seed=1)
    draws = np.stack([aug(img) for _ in range(6)])
    assert draws.shape[1:] == img.shape and draws.dtype == np.uint8
    assert not any(np.array_equal(d, img) for d in draws)  # the affine always applies
    assert len({d.tobytes() for d in draws}) == len(draws)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (step("Affine", mode=1), "'mode' are not valid"),  # 1.x name
        (step("ShiftScaleRotate"), "use Affine"),  # deprecated in 2.x
        (step("Affine", rotate="lots"), "rotate"),
        (step("RandomThing"), "no such albumentations transform"),
        (step("check_version"), "no such"),
        (step("OneOf", p=1), "'transforms' list"),
    ],
)
def test_bad_steps_are_errors_naming_the_step(step, message):
    with pytest.raises(AugmentError, match=message) as err:
        Augment([{"name": "HorizontalFlip"}, step], seed=0)
    assert str(err.value).startswith(f"augment[1] {step['name']}")


@pytest.mark.parametrize("nested", [False, True])
def test_transforms_draw_independently_nested_too(nested):
    """albumentations seeds every transform of a pipeline alike: two p=0.5 flips would always
    fire together. Each transform gets its own stream here, within ``OneOf`` too."""
    flips = [step("HorizontalFlip", p=0.5), step("VerticalFlip", p=0.5)]
    aug = Augment([step("OneOf", p=1.0, transforms=flips)] if nested else flips, seed=11)
    img = _image()
    outcomes = {aug(img).tobytes() for _ in range(64)}
    assert {img[:, ::-1].tobytes(), img[::-1].tobytes()} <= outcomes  # one flip without the other
    with pytest.raises(AugmentError, match=r"augment\[0\]\.transforms\[0\] Nope"):
        Augment([step("OneOf", transforms=[{"name": "Nope"}])], seed=0)


def _loader(seed: int, persistent: bool, n: int = 8) -> DataLoader:
    """Eight copies of one image, two workers: batch 0 from worker 0, batch 1 from worker 1."""
    torch.manual_seed(seed)
    x = np.repeat(_image(size=16)[None], n, axis=0)
    aug = build_augment(lecture_steps(), seed)  # the rank: Lightning's
    workers = LoaderConfig(num_workers=2, persistent_workers=persistent, pin_memory=False)
    return make_loader(ArrayDataset({"x": x, "y": np.zeros(n, np.int64)}, aug), 4, workers)


def _epoch(loader) -> list[np.ndarray]:
    return [b["x"].numpy() for b in loader]


@pytest.mark.parametrize("persistent", [False, True])
def test_workers_epochs_seeds_and_ranks_draw_differently_a_seed_reproduces(persistent, monkeypatch):
    loader = _loader(seed=1, persistent=persistent)
    first, second = _epoch(loader), _epoch(loader)
    w0, w1 = first
    assert not np.array_equal(w0, w1)  # two workers, same source images, different draws
    assert len({img.tobytes() for img in np.concatenate(first)}) == 8
    assert not any(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    again = _loader(seed=1, persistent=persistent)
    for a, b in zip(first + second, _epoch(again) + _epoch(again), strict=True):
        np.testing.assert_array_equal(a, b)
    other = _epoch(_loader(seed=2, persistent=persistent))
    assert not np.array_equal(first[0], other[0])
    monkeypatch.setattr(rank_zero_only, "rank", 1)  # a DDP rank 1 draws differently
    rank1 = _epoch(_loader(seed=1, persistent=persistent))
    assert not any(np.array_equal(a, b) for a, b in zip(first, rank1, strict=True))
