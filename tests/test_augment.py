"""Augmentation from params: building, errors, and who gets which random stream."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from nnlab.config import load_params
from nnlab.data.augment import Augment, AugmentError, build_augment, worker_init
from nnlab.data.datamodule import ArrayDataset, _whole_batch
from tests.conftest import REPO

pytestmark = [
    pytest.mark.filterwarnings("error::UserWarning"),
    pytest.mark.filterwarnings("error::DeprecationWarning"),
]


def lecture_steps():
    """The recipe exactly as params.yaml has it."""
    return load_params(REPO / "params.yaml").experiment("catdog_cnn_aug").augment


def _image(seed=0, size=24):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _draws(aug, image, n=6):
    return np.stack([aug(image) for _ in range(n)])


def test_lecture_recipe_builds_and_changes_images():
    aug = Augment(lecture_steps(), seed=1)
    names = [type(t).__name__ for t in aug.compose.transforms]
    assert names == ["Affine", "HorizontalFlip"]
    img = _image()
    out = aug(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    draws = _draws(aug, img)
    assert not any(np.array_equal(d, img) for d in draws)  # the affine always applies
    assert len({d.tobytes() for d in draws}) == len(draws)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"name": "Affine", "args": {"mode": 1}}, "'mode' are not valid"),  # 1.x name
        ({"name": "Affine", "args": {"cval": 0}}, "'cval' are not valid"),  # 1.x name
        ({"name": "Rotate", "args": {"limit": 40, "value": 0}}, "'value' are not valid"),
        ({"name": "ShiftScaleRotate", "args": {}}, "use Affine"),  # deprecated in 2.x
        ({"name": "Affine", "args": {"rotate": "lots"}}, "rotate"),
        ({"name": "RandomThing", "args": {}}, "no such albumentations transform"),
        ({"name": "check_version", "args": {}}, "no such"),
        ({"name": "OneOf", "args": {"p": 1}}, "'transforms' list"),
    ],
)
def test_bad_steps_are_errors_naming_the_step(step, message):
    with pytest.raises(AugmentError, match=message) as err:
        Augment([{"name": "HorizontalFlip"}, step], seed=0)
    assert str(err.value).startswith(f"augment[1] {step['name']}")


def test_nested_steps():
    aug = Augment(
        [
            {
                "name": "OneOf",
                "args": {
                    "p": 1.0,
                    "transforms": [
                        {"name": "HorizontalFlip", "args": {"p": 1.0}},
                        {"name": "VerticalFlip", "args": {"p": 1.0}},
                    ],
                },
            }
        ],
        seed=3,
    )
    img = _image()
    seen = {aug(img).tobytes() for _ in range(40)}
    assert seen == {img[:, ::-1].tobytes(), img[::-1].tobytes()}
    with pytest.raises(AugmentError, match=r"augment\[0\]\.transforms\[0\] Nope"):
        Augment([{"name": "OneOf", "args": {"transforms": [{"name": "Nope"}]}}], seed=0)


def test_transforms_draw_independently():
    """albumentations seeds every transform of a pipeline alike: two p=0.5 flips would
    always fire together. Each transform gets its own stream here."""
    aug = Augment(
        [
            {"name": "HorizontalFlip", "args": {"p": 0.5}},
            {"name": "VerticalFlip", "args": {"p": 0.5}},
        ],
        seed=11,
    )
    img = _image()
    outcomes = {aug(img).tobytes() for _ in range(64)}
    assert {img[:, ::-1].tobytes(), img[::-1].tobytes()} <= outcomes  # one flip without the other


def test_same_seed_reproduces_other_seed_and_rank_differ():
    img = _image()
    a = _draws(Augment(lecture_steps(), seed=5), img)
    b = _draws(Augment(lecture_steps(), seed=5), img)
    c = _draws(Augment(lecture_steps(), seed=6), img)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rank0 = _draws(build_augment(lecture_steps(), 5, rank=0), img)
    rank0_again = _draws(build_augment(lecture_steps(), 5, rank=0), img)
    rank1 = _draws(build_augment(lecture_steps(), 5, rank=1), img)
    np.testing.assert_array_equal(rank0, rank0_again)
    assert not np.array_equal(rank0, rank1)


def _loader(seed: int, persistent: bool, n: int = 8, batch: int = 4) -> DataLoader:
    """Eight copies of one image, two workers: batch 0 from worker 0, batch 1 from worker 1."""
    torch.manual_seed(seed)
    x = np.repeat(_image(size=16)[None], n, axis=0)
    ds = ArrayDataset(
        {"x": x, "y": np.zeros(n, np.int64)}, build_augment(lecture_steps(), seed, rank=0)
    )
    return DataLoader(
        ds,
        batch_size=batch,
        shuffle=False,
        num_workers=2,
        collate_fn=_whole_batch,
        worker_init_fn=worker_init,
        persistent_workers=persistent,
    )


def _epoch(loader) -> list[np.ndarray]:
    return [b["x"].numpy() for b in loader]


@pytest.mark.parametrize("persistent", [False, True])
def test_workers_differ_epochs_differ_seed_reproduces(persistent):
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


def test_worker_streams_differ_between_ranks(monkeypatch):
    """Same seed, same worker id: a DDP rank 1 worker draws differently from rank 0's."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    rank0 = _epoch(_loader(seed=1, persistent=False))
    monkeypatch.setattr(rank_zero_only, "rank", 1, raising=False)
    rank1 = _epoch(_loader(seed=1, persistent=False))
    assert not any(np.array_equal(a, b) for a, b in zip(rank0, rank1, strict=True))
