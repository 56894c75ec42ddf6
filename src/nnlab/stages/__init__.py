"""The pipeline's stages, one module each, in dvc.yaml's order: download, split, features,
train, evaluate, compare. Each is a ``run(params, name, root)``; compare has no name."""
