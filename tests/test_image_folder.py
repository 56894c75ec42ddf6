"""Image folders (the lecture's cats vs dogs): download, split, training runs, predict."""

import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnlab import paths
from nnlab.config import Params, load_params
from nnlab.data.augment import Augment
from nnlab.data.image_folder import SYNTHETIC, find_layout
from nnlab.data.prepare import load_arrays, load_meta
from nnlab.files import file_digest, read_json
from nnlab.stages.download import run as run_download
from nnlab.stages.split import run as run_split
from tests.conftest import REPO, SHARED, fast_dev_fit, params_text, tiny_params
from tests.folders import image_folder, prepare, shape_image
from tests.http_server import serve

CATDOG = ["cats", "dogs"]


def add_awkward_files(root: Path) -> list[str]:
    """The odd files a real folder holds; returns the ones split must skip (relative)."""
    cats, dogs = root / "train" / "cats", root / "train" / "dogs"
    odd = [(cats / "gray.jpg", "L"), (cats / "alpha.png", "RGBA"), (dogs / "palette.png", "P")]
    for path, mode in [*odd, (dogs / "cmyk.jpg", "CMYK"), (dogs / "UPPER.JPG", "RGB")]:
        shape_image(path.parent.name, 1, mode).save(path)
    Image.new("RGB", (64, 64), "white").save(buf := io.BytesIO(), format="JPEG")
    (cats / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (dogs / "notes.jpg").write_text("this is not a picture")
    (dogs / "readme.txt").write_text("hello")
    (root / ".DS_Store").write_bytes(b"\0")
    return ["train/cats/truncated.jpg", "train/dogs/notes.jpg", "train/dogs/readme.txt"]


def cvd_params(**data):
    block = {"kind": "image_folder", "source": "remote", "image_size": 16, "split_sizes": [8, 4, 4]}
    return tiny_params(**{"data.cats_vs_dogs": block | data})


def test_path_folder_with_train_validation_and_awkward_files(tmp_path):
    src = tmp_path / "photos"
    image_folder(src, 6, "train", CATDOG)
    image_folder(src, 4, "validation", CATDOG)
    bad = add_awkward_files(src)
    params = cvd_params(path=str(src))
    root = tmp_path / "project"
    manifest = run_download(params, "cats_vs_dogs", root)
    assert manifest["source"] == "remote" and manifest["path"] == str(src.resolve())
    assert manifest["counts"]["train"] == {"cats": 9, "dogs": 10}  # incl. the two bad .jpg

    split = run_split(params, "cats_vs_dogs", root)
    # train kept (17 readable), validation halved, stratified, into val and test
    assert split["counts"] == {"train": 17, "val": 4, "test": 4}
    assert split["class_counts"]["train"] == {"cats": 8, "dogs": 9}
    assert split["class_counts"]["val"] == split["class_counts"]["test"] == {"cats": 2, "dogs": 2}
    assert sorted(s["file"] for s in split["skipped"]) == sorted([*bad, ".DS_Store"])
    reasons = {s["file"]: s["reason"] for s in split["skipped"]}
    assert "truncated" in reasons["train/cats/truncated.jpg"].lower()
    assert "not a readable image" in reasons["train/dogs/notes.jpg"]
    assert reasons["train/dogs/readme.txt"] == "not an image file"
    train = load_arrays("cats_vs_dogs", "train", root)
    assert isinstance(train["x"], np.memmap)
    assert train["x"].shape == (17, 16, 16, 3) and train["x"].dtype == np.uint8
    meta = load_meta("cats_vs_dogs", root)
    assert meta["classes"] == ["cats", "dogs"] and meta["input_shape"] == [3, 16, 16]
    # colour survives every mode: cats red, dogs blue (grayscale ones are grey, not black)
    x, y = np.asarray(train["x"], float), np.asarray(train["y"])
    assert x[y == 0, ..., 0].mean() > x[y == 0, ..., 2].mean()
    assert x[y == 1, ..., 2].mean() > x[y == 1, ..., 0].mean()
    assert x.reshape(len(x), -1).mean(1).min() > 40
    assert {"L", "RGBA", "P", "CMYK"} <= set(split["modes"]) and split["converted_count"] >= 4


def test_zip_over_http_with_a_wrapper_folder_and_three_splits(tmp_path):
    src = tmp_path / "cats_and_dogs_filtered"  # a wrapper folder in the archive
    for split, n in (("train", 4), ("validation", 2), ("test", 2)):
        image_folder(src, n, split, CATDOG)
    archive = Path(shutil.make_archive(str(tmp_path / "srv" / src.name), "zip", tmp_path, src.name))
    root = tmp_path / "project"
    with serve(tmp_path / "srv") as url:
        params = cvd_params(mirrors=[good := f"{url}/{archive.name}"])
        manifest = run_download(params, "cats_vs_dogs", root)
    got = manifest["files"]["archive"]
    assert got == {"url": good, "checksum": f"sha256:{file_digest(archive)}", "pinned": False}
    raw = sorted(p.name for p in (root / "data/raw/cats_vs_dogs").iterdir())
    assert raw == [paths.RAW_IMAGES, paths.MANIFEST]  # the archive is gone once extracted
    split = run_split(params, "cats_vs_dogs", root)
    assert split["counts"] == {"train": 8, "val": 4, "test": 4}  # all three splits kept
    assert split["skipped_count"] == 0


def test_pooled_tar_draws_split_sizes_stratified_seeded_or_scaled_loudly(tmp_path, capsys):
    image_folder(tmp_path / "pool", 12, classes=CATDOG)
    with tarfile.open(tmp_path / "pool.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "pool", arcname="PetImages")
    params = cvd_params(path=str(tmp_path / "pool.tar.gz"))
    run_download(params, "cats_vs_dogs", tmp_path)

    def split_with(seed: int) -> tuple[dict, np.ndarray]:
        split = run_split(params.model_copy(update={"seed": seed}), "cats_vs_dogs", tmp_path)
        return split, np.array(load_arrays("cats_vs_dogs", "train", tmp_path)["x"])

    split, train = split_with(7)
    assert split["counts"] == {"train": 8, "val": 4, "test": 4}  # split_sizes, 8 unused
    assert all(len(set(split["class_counts"][s].values())) == 1 for s in paths.SPLITS)
    assert "pooled 24 files" in split["split"]
    np.testing.assert_array_equal(split_with(7)[1], train)
    assert not np.array_equal(split_with(99)[1], train)
    # more than there are: the same proportions, said (a shortfall: test_adversarial_data)
    params = cvd_params(path=str(tmp_path / "pool.tar.gz"), split_sizes=[2000, 1000, 1000])
    split = run_split(params, "cats_vs_dogs", tmp_path)
    assert split["split_sizes_scaled"] == {"asked": [2000, 1000, 1000], "images": 24}
    assert "split_sizes asks for [2000, 1000, 1000] images" in capsys.readouterr().err
    assert split["counts"] == {"train": 12, "val": 6, "test": 6}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, Params]:
    """Drawn cats and dogs, prepared, and the shipped catdog experiments cut to one epoch."""
    real = load_params(REPO / "params.yaml")
    experiments = {
        name: {**real.experiment(name).model_dump(), "epochs": 1, "batch_size": 8}
        for name in ("catdog_cnn", "catdog_cnn_aug")
    }
    drawn = {"kind": "image_folder", "source": "synthetic", "synthetic_size": 40}
    drawn["synthetic_image_size"] = 32
    params = tiny_params(**{"data.cats_vs_dogs": drawn, "experiments": experiments})
    prepare(params, "cats_vs_dogs", root := tmp_path_factory.mktemp("catdog"))
    return root, params


@pytest.mark.filterwarnings("error::UserWarning:albumentations")
def test_fast_dev_run_both_experiments_augment_train_only(synthetic):
    synthetic_root, params = synthetic
    for name in ("catdog_cnn", "catdog_cnn_aug"):
        _, model, dm = fast_dev_fit(params, name, synthetic_root)
        train, val, test = (dm.datasets[s].transform for s in paths.SPLITS)
        assert model.spec.num_outputs == 1 and val is None and test is None
        assert isinstance(train, Augment) == bool(params.experiment(name).augment)
    meta = load_meta("cats_vs_dogs", synthetic_root)  # drawings at their own size
    assert meta["source"] == SYNTHETIC and meta["input_shape"] == [3, 32, 32]


def test_train_evaluate_predict_aug(synthetic, tmp_path, capsys, monkeypatch):
    from nnlab.cli import main
    from nnlab.stages.evaluate import run as evaluate
    from nnlab.stages.train import run as train

    root = tmp_path / "project"
    shutil.copytree(synthetic[0], root)
    params = synthetic[1]
    assert train(params, "catdog_cnn_aug", root)["data_source"] == SYNTHETIC
    assert 0 <= evaluate(params, "catdog_cnn_aug", root)["test/acc"] <= 1
    reports = root / "reports/experiments/catdog_cnn_aug"
    assert (reports / "figures/augmented_samples.png").stat().st_size > 1000
    assert read_json(reports / "run.json")["data_source"] == SYNTHETIC

    photo = tmp_path / "photo.jpg"  # any size, any mode: resized to the training size
    shape_image("dogs", 1, "L", size=70).resize((90, 70)).save(photo)
    (root / "params.yaml").write_text(params_text(params))
    monkeypatch.chdir(root)
    assert main(["predict", "catdog_cnn_aug", str(photo)]) == 0
    out = capsys.readouterr().out.strip().split("\t")
    assert out[0] == str(photo) and out[1] in ("cats", "dogs") and 0.5 <= float(out[2]) <= 1


@pytest.mark.shared
def test_shared_cats_and_dogs_small_layout():
    if not (folder := SHARED / "datasets/cats_and_dogs_small").is_dir():
        pytest.skip("../shared/datasets/cats_and_dogs_small absent")
    layout, _ = find_layout(folder)
    assert set(layout) == {"train", "val"}
    assert {c: len(f) for c, f in layout["train"].items()} == {"cats": 1000, "dogs": 1000}
