"""Two evaluated experiments on the same test samples: which samples each gets right, and
McNemar's exact test on the ones where they disagree.

    python tools/paired_test.py catdog_vgg16_finetune catdog_vgg16_features

Run in a project whose two experiments are trained (models/<exp>/best.ckpt) and share a test
split: the same dataset, or a features cache derived from it (its test split keeps the
order). With 250 test photos one accuracy has a standard error of about 1.5 points, but two
models scored on the same photos mostly err on the same ones; only the photos where exactly
one is right tell them apart.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from nnlab import paths
from nnlab.classifier import load_classifier, scale_inputs
from nnlab.config import load_params
from nnlab.data.datamodule import ArrayDataset
from nnlab.data.prepare import load_arrays


def test_predictions(params, name: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, label) of every test sample, in the split's order."""
    model = load_classifier(paths.model_dir(name, root) / paths.BEST).eval()
    arrays = load_arrays(params.experiment(name).dataset, "test", root)
    data, out = ArrayDataset(arrays), []
    with torch.no_grad():
        for start in range(0, len(data), 50):
            batch = data.__getitems__(list(range(start, min(start + 50, len(data)))))
            logits = model(*scale_inputs(batch, model.hparams.channels_last))
            out.append(model.predicted_class(logits).numpy())
    return np.concatenate(out), np.asarray(arrays["y"])


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact p-value of b against c discordant pairs (binomial, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    params, root = load_params(args.params), Path(".")
    torch.set_num_threads(1)
    pred_a, y = test_predictions(params, args.first, root)
    pred_b, y_b = test_predictions(params, args.second, root)
    if len(y) != len(y_b) or (y != y_b).any():
        raise SystemExit(f"{args.first} and {args.second} do not share a test split")
    a, b = pred_a == y, pred_b == y
    print(
        json.dumps(
            {
                "test_samples": len(y),
                f"{args.first}/acc": round(float(a.mean()), 4),
                f"{args.second}/acc": round(float(b.mean()), 4),
                "both_right": int((a & b).sum()),
                "both_wrong": int((~a & ~b).sum()),
                f"only_{args.first}_right": int((a & ~b).sum()),
                f"only_{args.second}_right": int((~a & b).sum()),
                "mcnemar_exact_p": round(
                    mcnemar_exact(int((a & ~b).sum()), int((~a & b).sum())), 4
                ),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
