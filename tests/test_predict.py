import json
from pathlib import Path

import numpy as np
from PIL import Image

from nnlab.cli import main
from nnlab.data.prepare import load_arrays
from nnlab.predict import predict
from nnlab.stages.train import run as train
from tests.conftest import params_text, tiny_params


def test_predict_images_and_bad_files(project, tmp_path, monkeypatch, capsys):
    params = tiny_params(**{"experiments.mnist_cnn.epochs": 3})
    train(params, "mnist_cnn", project)
    test = load_arrays("mnist", "test", project)
    files = []
    for i in range(4):
        img = np.asarray(test["x"][i, :, :, 0])
        if i % 2:  # dark digit on white, bigger, RGB: must be converted back
            img = 255 - img
            pil = Image.fromarray(img).resize((112, 112)).convert("RGB")
        else:
            pil = Image.fromarray(img)
        path = tmp_path / f"digit{i}.png"
        pil.save(path)
        files.append(str(path))
    (tmp_path / "notes.png").write_text("not an image")
    files += [str(tmp_path / "missing.png"), str(tmp_path / "notes.png")]

    results = predict(params, "mnist_cnn", files, project)
    assert [r["file"] for r in results] == files
    good, bad = results[:4], results[4:]
    for r in good:
        assert r["label"] in "0123456789" and 0 < r["probability"] <= 1
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-3
    assert "no such file" in bad[0]["error"] and "missing.png" in bad[0]["error"]
    assert "not a readable image" in bad[1]["error"]
    # the model agrees with itself on the original and the inverted, resized copies
    labels = [r["label"] for r in good]
    truth = [str(int(test["y"][i])) for i in range(4)]
    assert sum(a == b for a, b in zip(labels, truth, strict=True)) >= 2

    (project / "params.yaml").write_text(params_text(tiny_params()))
    monkeypatch.chdir(project)
    assert main(["predict", "mnist_cnn", *files[:1], files[4], "--json"]) == 1
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert lines[0]["label"] in "0123456789" and "error" in lines[1]


def test_predict_keeps_the_good_files_beside_hostile_ones(project, tmp_path):
    """A decompression-bomb header, a truncated file, a folder, a symlink loop and junk each
    get their own error; the good files are still predicted; nothing is written anywhere."""
    from tests.test_adversarial_data import BAD_IMAGES

    params = tiny_params(**{"experiments.mnist_cnn.epochs": 1})
    train(params, "mnist_cnn", project)
    test = load_arrays("mnist", "test", project)
    files = []
    for i in range(2):
        good = tmp_path / f"good{i}.png"
        Image.fromarray(np.asarray(test["x"][i, :, :, 0])).save(good)
        files.append(str(good))
    for name, data in BAD_IMAGES.items():
        (tmp_path / f"{name}.png").write_bytes(data)
        files.insert(1, str(tmp_path / f"{name}.png"))
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    files += [str(tmp_path), str(tmp_path / "loop.png")]
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    results = predict(params, "mnist_cnn", files, project)
    assert [r["file"] for r in results] == files
    good = [r for r in results if "label" in r]
    assert [r["file"] for r in good] == [f for f in files if Path(f).name.startswith("good")]
    for r in results:
        if "error" in r:
            assert "\n" not in r["error"] and (r["file"] in r["error"]
                                               or "bytes" in r["error"]), r
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
