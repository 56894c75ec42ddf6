"""``nnlab predict``: labels for a user's files; each bad file gets its own error line."""

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from nnlab.cli import main
from nnlab.data.prepare import load_arrays
from nnlab.predict import predict
from nnlab.stages.train import run as train
from tests.conftest import params_text, tiny_params


def test_predict_images_beside_bad_and_hostile_files(project, tmp_path, monkeypatch, capsys):
    """Resized, inverted RGB copies are read as MNIST digits; a missing file, junk, a
    decompression-bomb header, a truncated file, a folder and a symlink loop each get their own
    one-line error naming them; the good files are still predicted; nothing is written."""
    from tests.test_adversarial_data import BAD_IMAGES

    params = tiny_params(**{"experiments.mnist_cnn.epochs": 3})
    train(params, "mnist_cnn", project)
    test = load_arrays("mnist", "test", project)
    files = [str(tmp_path / f"good{i}.png") for i in range(4)]
    for i, file in enumerate(files):
        pil = Image.fromarray(np.asarray(test["x"][i, :, :, 0]))
        if i % 2:  # dark digit on white, bigger, RGB: must be converted back
            pil = ImageOps.invert(pil).resize((112, 112)).convert("RGB")
        pil.save(file)
    (tmp_path / "notes.png").write_text("not an image")
    for name, data in BAD_IMAGES.items():
        (tmp_path / f"{name}.png").write_bytes(data)
        files.insert(1, str(tmp_path / f"{name}.png"))
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    files += [str(tmp_path / n) for n in ("missing.png", "notes.png", "", "loop.png")]
    before = sorted(p.name for p in tmp_path.parent.iterdir())

    results = predict(params, "mnist_cnn", files, project)
    assert [r["file"] for r in results] == files
    good = [r for r in results if "label" in r]
    assert [r["file"] for r in good] == [f for f in files if Path(f).name.startswith("good")]
    for r in good:
        assert r["label"] in "0123456789" and 0 < r["probability"] <= 1
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-3
    errors = {Path(r["file"]).name: r["error"] for r in results if "error" in r}
    assert "no such file" in errors["missing.png"] and "missing.png" in errors["missing.png"]
    assert "not a readable image" in errors["notes.png"]
    assert all("\n" not in e and (f in e or "bytes" in e) for f, e in errors.items())
    # the model agrees with itself on the original and the inverted, resized copies
    truth = [str(int(test["y"][i])) for i in range(4)]
    assert sum(r["label"] == t for r, t in zip(good, truth, strict=True)) >= 2
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before

    (project / "params.yaml").write_text(params_text(tiny_params()))
    monkeypatch.chdir(project)
    assert main(["predict", "mnist_cnn", files[0], files[-4], "--json"]) == 1
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert lines[0]["label"] in "0123456789" and "error" in lines[1]
    # names that start with "-" are files, not options: as they are, or after --
    for name in ("-dash.png", "--json.png"):
        Path(name).write_bytes(Path(files[0]).read_bytes())
    assert main(["predict", "mnist_cnn", "-dash.png", "--json"]) == 0
    assert main(["predict", "--json", "mnist_cnn", "--", "--json.png", "-dash.png"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [Path(r["file"]).name for r in lines] == ["-dash.png", "--json.png", "-dash.png"]
    assert len({r["label"] for r in lines}) == 1
