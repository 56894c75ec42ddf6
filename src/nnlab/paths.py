"""Every path a stage reads or writes (no I/O); names must be identifiers, so none leaves."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

COMPARISON = Path("reports")  # compare: comparison.{md,csv,png}
MLRUNS = Path("mlruns")  # the local MLflow store (not a DVC output)

MANIFEST = "manifest.json"  # where a data output came from
META = "meta.json"  # what a model needs to know about a split (nnlab.spec.DataSpec)
RECEIPT = "run.json"  # which MLflow run made the checkpoint beside it
BEST = "best.ckpt"
LAST = "last.ckpt"
HISTORY = "history.csv"
SUMMARY = "summary.txt"
METRICS = "metrics.json"  # the DVC metrics of an experiment: headline numbers only
PER_CLASS = "per_class.json"  # precision/recall/F1/support per class (not a DVC metric)
CONFUSION = "confusion.csv"  # DVC plot data
FIGURES = "figures"
LOCK = ".lock"  # models/.<experiment>.lock: held while the experiment trains
EXAMPLES = "examples.md"  # test texts with their predictions (figures/, text models)
SPLITS = ("train", "val", "test")  # the splits of data/split/<dataset>, in this order
VOCAB = "vocab.json"  # a text split's vocabulary, beside its arrays and in the checkpoint
STORE_DB = "mlflow.db"  # in MLRUNS: the local MLflow store's runs
STORE_ARTIFACTS = "artifacts"  # in MLRUNS: the local store's artifacts, one folder per experiment
STORE_LOCK = ".lock"  # in MLRUNS: held while the local store is created
SERVER_DB = "server.db"  # in MLRUNS: `nnlab server`'s runs
SERVER_ARTIFACTS = "server-artifacts"  # in MLRUNS: `nnlab server`'s artifacts
# figures evaluate writes into FIGURES
LEARNING_CURVES_PNG = "learning_curves.png"
CONFUSION_PNG = "confusion_matrix.png"
MISCLASSIFIED_PNG = "misclassified.png"
AUGMENTED_PNG = "augmented_samples.png"
FEATURE_MAPS_PNG = "feature_maps.png"
CONV_WEIGHTS_PNG = "first_conv_weights.png"
FILTER_PATTERNS_PNG = "filter_patterns_{}.png"  # one per layer, by its Keras-like label
GRADCAM_PNG = "gradcam.png"
# in raw_dir(<dataset>): what download@ stores for split@ to read
RAW_IMAGES = "images"  # an image folder, copied or extracted
RAW_TEXTS = "texts.jsonl.gz"  # labelled texts, one JSON record a line
RAW_BUNDLED = "bundled.npz"  # the bundled MNIST sample
RAW_ARCHIVE = "archive"  # a mirror's archive while it is extracted


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise ValueError(f"{what} {name!r} is not an identifier ({NAME.pattern})")
    return name


def _folder(base: str, what: str, name: str, root: Path = Path(".")) -> Path:
    return Path(root) / base / check_name(name, what)


raw_dir = partial(_folder, "data/raw", "dataset")  # download@<dataset>
split_dir = partial(_folder, "data/split", "dataset")  # split@<dataset>, features@<cache>
model_dir = partial(_folder, "models", "experiment")  # train@<experiment>
report_dir = partial(_folder, "reports/experiments", "experiment")  # evaluate@<experiment>
