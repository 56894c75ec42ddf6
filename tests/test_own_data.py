"""A user's own data by params alone: image and text folders and tables of any classes, bad
data said in one line; and (slow) each through `dvc repro`, predict and the registry."""

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from nnlab.config import load_params, parse_params
from nnlab.data import image_folder as image_folder_reader
from nnlab.data.prepare import load_arrays, load_meta
from nnlab.data.sources import data_path
from nnlab.data.text import Vocabulary
from nnlab.files import read_json
from nnlab.spec import DataSpec
from nnlab.summary import summarize
from tests.conftest import BIN, cli_env, copy_repo, run_ok, stages_ran
from tests.folders import CLASSES, image_folder, prepare, sentence, shape_image, table, text_folder

TRAINER = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "log_every_n_steps": 1}


def params(name: str, block: dict, **experiment) -> dict:
    exp = {"dataset": name, "epochs": 1, "batch_size": 8, **experiment}
    return {"seed": 3, "trainer": TRAINER, "data": {name: block}, "experiments": {"exp": exp}}


def prepared(root: Path, kind: str, path, **options):
    p = parse_params(params("mine", {"kind": kind, "path": str(path), **options}, model="mlp"))
    return prepare(p, "mine", root)


@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder_of_any_classes_and_modes(tmp_path, channels):
    src = image_folder(tmp_path / "photos")
    options = {"image_size": 12, "channels": channels, "val_fraction": 0.25, "test_fraction": 0.25}
    split = prepared(tmp_path, "image_folder", "photos", **options)  # relative to the project
    meta = load_meta("mine", tmp_path)
    assert meta["classes"] == CLASSES and meta["input_shape"] == [channels, 12, 12]
    assert meta["reader"] == "image_folder" and sum(split["counts"].values()) == 24
    assert all(n >= 1 for s in split["class_counts"].values() for n in s.values())  # stratified
    assert split["modes"] == {"I;16": 3, "L": 6, "P": 3, "RGB": 9, "RGBA": 3}
    assert split["converted_count"] == (18 if channels == 1 else 15)
    # a 16-bit grey image keeps its tones (PIL's convert("L") would make it white)
    shape_image("circle", 5, "L").save(tmp_path / "eight.png")
    as_trained = DataSpec("image", tuple(meta["input_shape"]), tuple(CLASSES))
    x16, x8 = (
        image_folder_reader.load_input(f, as_trained)["x"].astype(int)
        for f in (src / "circle/5.png", tmp_path / "eight.png")
    )
    assert np.abs(x16 - x8).max() <= 1 and x16.mean() < 200


@pytest.mark.parametrize("case", ["one-class", "classes-typo", "too-few", "split-mismatch"])
def test_bad_image_folders_are_one_line_naming_the_folder_or_key(tmp_path, case):
    src = tmp_path / "photos"
    options = {"image_size": 8}
    if case == "one-class":
        image_folder(src, n=1, classes=["circle"])
        pattern, where = r"1 class \('circle'\); a classifier needs two", f"path: {src}"
    elif case == "classes-typo":
        image_folder(src, n=3)
        options["classes"] = ["circle", "sqare"]
        pattern, where = r"'sqare' is not in the data", "data.mine.classes"
    elif case == "too-few":
        image_folder(src, n=5, classes=["circle", "triangle"])
        image_folder(src, n=2, classes=["square"])
        pattern = r"class 'square' has 2 samples .* fewer than train and val and test"
        where = "data.mine.classes"
    else:
        image_folder(src, n=3, split="train")
        image_folder(src, n=3, split="test", classes=["circle", "triangle"])
        pattern, where = r"no class folder 'square' in the test split", f"path: {src}"
    with pytest.raises(ValueError) as err:
        prepared(tmp_path, "image_folder", src, **options)
    message = str(err.value)
    assert "\n" not in message and where in message, message
    assert re.search(pattern, message), message


def test_extreme_aspect_ratio_is_skipped_and_counted(tmp_path, capsys):
    src = image_folder(tmp_path / "photos", n=4)
    Image.new("RGB", (4000, 2), "red").save(src / "circle" / "line.png")
    split = prepared(tmp_path, "image_folder", src, image_size=8)
    assert [s["file"] for s in split["skipped"]] == ["circle/line.png"]
    assert "over 20 times the other" in split["skipped"][0]["reason"]
    err = capsys.readouterr().err
    assert sum(split["counts"].values()) == 12 and "skipped 1" in err
    assert split["counts"]["val"] == 1 and "no val sample of class" in err  # said, not hidden


def test_text_folder_of_labels_without_splits(tmp_path):
    src = text_folder(tmp_path / "texts")
    split = prepared(tmp_path, "text_folder", src, max_len=8, vocab_size=50)
    meta = load_meta("mine", tmp_path)
    assert meta["classes"] == CLASSES and meta["kind"] == "text" and meta["input_shape"] == [8]
    assert split["counts"] == {"train": 21, "val": 3, "test": 6}  # fractions of the pool
    assert split["split"].startswith("pooled 30 texts; drew train/val/test = [21, 3, 6]")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_text_table_with_awkward_rows(tmp_path, fmt, capsys):
    rows = [(sentence(cls, i), cls) for i in range(10) for cls in CLASSES]
    rows += [("", "circle"), ("no label at all", ""), ('=HYPERLINK("http://x") cmd', "=1+1")]
    rows += [("=SUM(A1:A9) really", "=1+1"), ("=2+2 again", "=1+1")]
    path = table(tmp_path, fmt, rows, text="review", label="stars")
    columns = {"text_column": "review", "label_column": "stars"}
    split = prepared(tmp_path, "text_table", path, max_len=10, vocab_size=60, **columns)
    manifest = split["download"]
    assert manifest["skipped_count"] == 2 and "skipped 2 texts" in capsys.readouterr().err
    assert {s["reason"] for s in manifest["skipped"]} == {"no text", "no label"}
    meta = load_meta("mine", tmp_path)
    assert meta["classes"] == ["=1+1", *CLASSES]  # a cell is only ever data, kept as written
    vocab = read_json(tmp_path / "data/split/mine/vocab.json")["tokens"]
    assert "hyperlink" in vocab or "sum" in vocab or "again" in vocab


def test_text_table_one_file_per_split_and_a_subset_of_classes(tmp_path):
    folder = tmp_path / "tables"
    folder.mkdir()
    for split, n in (("train", 10), ("validation", 3), ("test", 4)):
        rows = [(sentence(c, i), c) for i in range(n) for c in CLASSES]
        table(tmp_path, "jsonl", rows).rename(folder / f"{split}.jsonl")
    classes = {"triangle": "tri", "circle": "circ"}  # selected, in this order, renamed
    split = prepared(tmp_path, "text_table", folder, classes=classes, max_len=8, vocab_size=40)
    assert split["counts"] == {"train": 20, "val": 6, "test": 8}
    assert split["left_out"] == {"square": 17}
    assert load_meta("mine", tmp_path)["classes"] == ["tri", "circ"]
    vocab = Vocabulary.from_json(read_json(tmp_path / "data/split/mine/vocab.json"))
    train = load_arrays("mine", "train", tmp_path)
    triangles = {sentence("triangle", i) for i in range(10)}  # label 0: the first class
    texts = [vocab.decode(x, n) for x, n in zip(train["x"], train["len"], strict=True)]
    assert all((t in triangles) == (y == 0) for t, y in zip(texts, train["y"], strict=True))


@pytest.mark.parametrize("case", ["missing-column", "not-utf8", "not-json", "several-tables"])
def test_bad_tables_are_one_line_naming_the_file_and_key(tmp_path, case):
    path = table(tmp_path)
    options = {}
    if case == "missing-column":
        options["text_column"] = "body"
        expected = [f"{path}: no column 'body'", "data.mine.text_column", "'label', 'text'"]
    elif case == "not-utf8":
        path.write_bytes(b"label,text\ncircle,caf\xe9 au lait\n")
        expected = [f"{path}: not UTF-8 text", "at byte 21"]
    elif case == "not-json":
        path = tmp_path / "t.jsonl"
        path.write_text('{"text": "a", "label": "b"}\n[1, 2]\n')
        expected = [f"{path}: line 2 is not a JSON object"]
    else:
        path = tmp_path
        table(tmp_path, "tsv")
        expected = [f"path: {tmp_path}: several tables (reviews.csv, reviews.tsv)"]
    with pytest.raises(ValueError) as err:
        prepared(tmp_path / "project", "text_table", path, **options)
    message = str(err.value)
    assert "\n" not in message and all(e in message for e in expected), message
    assert not (tmp_path / "project/data/raw/mine").exists()


def test_summary_from_params_alone_counts_a_three_class_head(tmp_path):
    """Before any download: the classes come from the local folder, the shape from params."""
    image_folder(tmp_path / "photos", n=2)
    block = {"kind": "image_folder", "path": "photos", "image_size": 28, "channels": 1}
    raw = params("mine", block, model="mlp", model_options={"hidden": 16})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    text = summarize(load_params(tmp_path / "params.yaml"), "exp", tmp_path)
    assert f"Total params: {784 * 16 + 16 + 16 * 3 + 3:,}" in text  # Dense 784->16, Dense 16->3
    assert not (tmp_path / "data").exists()  # nothing written


def test_path_relative_to_home(tmp_path, monkeypatch):  # or to the project: the tests above
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_path("~/photos", tmp_path) == tmp_path / "home" / "photos"


E2E = {
    "image_folder": (
        {"kind": "image_folder", "path": "photos", "image_size": 28, "channels": 1},
        {"model": "mlp", "epochs": 2, "model_options": {"hidden": 16}},
    ),
    "text_folder": (
        {"kind": "text_folder", "path": "texts", "max_len": 12, "vocab_size": 60},
        {"model": "gru", "epochs": 2, "model_options": {"embed_dim": 8, "hidden": 8}}
        | {"bucket_by_length": True},
    ),
    "text_table": (
        {"kind": "text_table", "path": "reviews.csv", "max_len": 12, "vocab_size": 60},
        {"model": "lstm", "epochs": 2, "model_options": {"embed_dim": 8, "hidden": 8}},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(E2E))
def test_own_data_through_dvc_repro_and_predict(tmp_path, kind):
    """Two YAML blocks and no code: dvc repro runs download, split, train, evaluate, compare;
    predict names the real classes (the registry: test_serving)."""
    work = copy_repo(tmp_path / "repo")
    block, experiment = E2E[kind]
    if kind == "text_table":
        table(work)
    else:
        {"image_folder": image_folder, "text_folder": text_folder}[kind](work / block["path"], 12)
    name = f"my_{kind}"
    # the project's params.yaml with only the new dataset and experiment (dvc.yaml reads every
    # other top-level block, features: too, even empty)
    raw = yaml.safe_load((work / "params.yaml").read_text())
    ours = params("shapes", block, **experiment)
    raw["trainer"].update(TRAINER)
    raw.update(data=ours["data"], features={}, experiments={name: ours["experiments"]["exp"]})
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    env = cli_env()
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "mine"]):
        run_ok(cmd, work, env)

    stages = ["download@shapes", "split@shapes", f"train@{name}", f"evaluate@{name}", "compare"]
    assert stages_ran(run_ok([str(BIN / "dvc"), "repro"], work, env)) == set(stages)
    assert 0 <= read_json(work / f"reports/experiments/{name}/metrics.json")["test/acc"] <= 1
    assert f"| {name} |" in (work / "reports/comparison.md").read_text()
    assert read_json(work / "data/split/shapes/meta.json")["classes"] == CLASSES
    if kind == "image_folder":
        shape_image("square", 101, "RGB", size=30).save(sample := work / "sample.png")
    else:
        (sample := work / "sample.txt").write_text(sentence("square", 3))
    out = run_ok([str(BIN / "nnlab"), "predict", name, str(sample)], work, env)
    line = next(x for x in out.splitlines() if x.startswith(str(sample)))
    assert line.split("\t")[1] in CLASSES


@pytest.mark.slow
def test_grey_images_through_an_imagenet_base(tmp_path):
    """A features cache of a grey dataset: the channel is repeated for the base, in the cache,
    the summary and the composed net that predict runs on an image file."""
    from nnlab.serving import predict
    from nnlab.stages.features import run as run_features
    from nnlab.stages.train import run as train

    image_folder(tmp_path / "photos", n=6)
    block = {"kind": "image_folder", "path": "photos", "image_size": 32, "channels": 1}
    raw = params("grey", block, model="mlp", model_options={"hidden": 8})
    base = {"from": "grey", "backbone": "efficientnet_lite0", "source": "bundled"}
    raw["features"] = {"grey_base": base}
    raw["experiments"]["exp"]["dataset"] = "grey_base"
    p = parse_params(raw)
    prepare(p, "grey", tmp_path)
    run_features(p, "grey_base", tmp_path)
    assert load_meta("grey_base", tmp_path)["derived"]["image_shape"] == [1, 32, 32]
    assert "Non-trainable params:" in summarize(p, "exp", tmp_path)
    train(p, "exp", tmp_path)
    shape_image("square", 7, "RGB").save(tmp_path / "photo.png")
    (out,) = predict(p, "exp", [str(tmp_path / "photo.png")], tmp_path)
    assert out["label"] in CLASSES, out
