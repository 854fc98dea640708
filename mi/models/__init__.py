"""Surrogate models: networks, their one-file checkpoints, training, datasets, evaluation and the embedded default.

* `mi.models.surrogate`: `EnsembleNet` (ensembles with normalisers inside), `EnsembleMLP`, `Surrogate`;
* `mi.models.element_net`: element-attention set network on compositions;
* `mi.models.graph_net`: crystal graph network on structures;
* `mi.models.forest`: tree ensembles fitted by scikit-learn, carried as node arrays, walked in numpy;
* `mi.models.inputs`: what each kind reads (descriptors, compositions, graphs) and its batching;
* `mi.models.checkpoint`, `mi.models.train`, `mi.models.datasets`, `mi.models.evaluate`, `mi.models.device`.

Import from the submodules; this package imports nothing at import time so that `import mi` stays light.
"""
