"""Device check for a lent GPU: train briefly on CUDA with mixed precision, save, reload on the CPU, compare.

1. trains the MLP and the element-attention surrogates for a few epochs on pymatgen's experimental
   formation enthalpies (bundled, nothing downloaded), on CUDA with AMP (``train.amp``; bfloat16 where
   supported, else float16 with a grad scaler), and on the CPU where there is no GPU;
2. saves each checkpoint and loads it back with ``torch.load(..., weights_only=True, map_location="cpu")``
   (`mi.models.checkpoint.load_checkpoint`), then compares its CPU predictions with the trained model's
   predictions on the training device (max |difference| of mean and std, eV/atom);
3. times batched inference on CUDA and on the CPU (compositions per second, after a warm-up).

Prints one table. On a machine without CUDA the CUDA parts are skipped with a message and the rest runs
on the CPU, so the script can be checked anywhere:

    python experiments/device_check.py                # a few epochs, 20,000 compositions for the timing
    python experiments/device_check.py --epochs 2 --n-infer 2000          # quicker
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _compositions(n: int, dataset) -> list:
    """n candidates cycling over the dataset's formulas (ids unique)."""
    from pymatgen.core import Composition

    from mi.candidates.base import Candidate, composition_hash

    formulas = list(dataset.frame["formula"].astype(str))
    out = []
    for i in range(n):
        comp = Composition(formulas[i % len(formulas)])
        out.append(Candidate(f"c{i}", "device_check", "", comp, None, composition_hash(comp)))
    return out


def _throughput(surrogate, features, candidates, device: str, repeats: int) -> float:
    surrogate.to(device)
    surrogate.predict(features.iloc[:256], candidates[:256])  # warm-up: kernels, allocator
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        surrogate.predict(features, candidates)
    if device == "cuda":
        torch.cuda.synchronize()
    return repeats * len(candidates) / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n-infer", type=int, default=20_000, help="compositions for the inference timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", default=["mlp", "element_attention"])
    args = parser.parse_args()

    from mi.config import DatasetConfig, TrainConfig
    from mi.features import featurize
    from mi.models.checkpoint import load_checkpoint, save_checkpoint
    from mi.models.datasets import load_dataset
    from mi.models.train import train

    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}; CUDA: {torch.cuda.get_device_name(0) if cuda else 'not available'}")
    if not cuda:
        print("no CUDA device: the CUDA training, AMP and CUDA timing are skipped; everything runs on the CPU")
    train_device = "cuda" if cuda else "cpu"
    dataset = load_dataset(DatasetConfig())
    candidates = _compositions(args.n_infer, dataset)
    features, _ = featurize(candidates, ["composition"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            model = {"kind": kind}
            if kind == "element_attention":
                model["descriptor_sets"] = []
            cfg = TrainConfig.model_validate(
                {"model": model, "epochs": args.epochs, "patience": args.epochs, "batch_size": 256,
                 "device": train_device, "amp": True, "recalibrate": False}
            )
            t0 = time.perf_counter()
            trained, metrics = train(cfg, dataset, progress=False)
            train_s = time.perf_counter() - t0
            path = save_checkpoint(trained, Path(tmp) / f"{kind}.pt")
            check = features.iloc[:2000]
            trained.to(train_device)
            on_device = trained.predict(check, candidates[:2000])
            reloaded = load_checkpoint(path)  # weights_only=True, map_location="cpu"
            on_cpu = reloaded.predict(check, candidates[:2000])
            diff = np.nanmax(np.abs(on_device.to_numpy() - on_cpu.to_numpy()))
            cpu_rate = _throughput(reloaded, features, candidates, "cpu", args.repeats)
            cuda_rate = _throughput(reloaded, features, candidates, "cuda", args.repeats) if cuda else None
            rows.append(
                (kind, metrics.get("device", train_device), metrics.get("amp", "off"), train_s,
                 metrics["val_mae"].get("formation_enthalpy_eV_atom", float("nan")), diff, cuda_rate, cpu_rate)
            )
    print()
    print(f"{'model':18} {'trained on':10} {'amp':9} {'train s':>8} {'val MAE':>8} {'max|diff| dev-cpu':>18} "
          f"{'CUDA /s':>10} {'CPU /s':>10} {'CUDA/CPU':>9}")
    for kind, dev, amp, secs, mae, diff, cuda_rate, cpu_rate in rows:
        ratio = f"{cuda_rate / cpu_rate:9.1f}" if cuda_rate else f"{'-':>9}"
        cuda_text = f"{cuda_rate:10.0f}" if cuda_rate else f"{'skipped':>10}"
        print(f"{kind:18} {dev:10} {amp:9} {secs:8.1f} {mae:8.4f} {diff:18.2e} {cuda_text} {cpu_rate:10.0f} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
