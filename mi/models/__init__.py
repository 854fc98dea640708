"""Surrogate models: descriptor ensembles, their one-file checkpoints, training and the embedded default.

Import from the submodules (`mi.models.checkpoint`, `mi.models.train`, ...); this package imports nothing
at import time so that `import mi` stays light.
"""
