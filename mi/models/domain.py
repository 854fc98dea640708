"""Domain of applicability: is a candidate like the rows a surrogate was trained on?

A prediction is flagged out of domain (``<target>_in_domain`` false) when

* the candidate holds an element that fewer than ``min_element_rows`` training rows contained (the model has
  barely seen what that element does), or
* it lies farther from the training set than ``percentile`` % of training rows do: the Euclidean distance to
  the nearest of a sample of training rows (the *reference*), in the model's own descriptor space
  standardised and projected on its leading principal components (so the check costs a small matrix product
  per chunk), above the same distance measured for held-out training rows at that percentile (half the
  sample is the reference and half is held out for that; the check then takes the whole sample as its
  reference, so a row the model trained on is never out of domain by distance, however isolated); or
* its predicted std exceeds the ``percentile`` % quantile of the std on training rows (a wild spread
  among the ensemble's members is itself a sign of extrapolation).

Models that read no descriptors (graph and element-only networks) use element fractions as their space.
Everything is stored in plain types on the checkpoint (``payload["domain"]``), and the card shows the
statistics without the reference rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Composition, Element

from mi.features.composition import by_element

DOMAIN_VERSION = 1
MAX_COMPONENTS = 24  # principal components kept: enough for 95 %+ of the variance of Magpie-type features
MAX_REFERENCE = 3000  # training rows the threshold is measured against (the check keeps these and the held-out ones)
MAX_CALIBRATION = 3000  # held-out training rows that set the distance threshold
MAX_FIT_ROWS = 20000  # rows the standardiser and the principal components are fitted on
_ELEMENTS = [Element.from_Z(z).symbol for z in range(1, 104)]
_INDEX = {s: i for i, s in enumerate(_ELEMENTS)}


def element_fractions(compositions: Sequence[Composition]) -> np.ndarray:
    """Rows of atomic fractions over elements H..Lr (the space of models without descriptors)."""
    out = np.zeros((len(compositions), len(_ELEMENTS)), dtype=np.float32)
    for i, comp in enumerate(compositions):
        total = comp.num_atoms
        for el, amount in comp.element_composition.items():
            j = _INDEX.get(el.symbol)
            if j is not None and total > 0:
                out[i, j] = amount / total
    return out


def _nearest(x: np.ndarray, reference: np.ndarray, block: int = 4096) -> np.ndarray:
    """Distance from each row of `x` to its nearest row of `reference` (blocks keep memory small)."""
    import torch

    ref = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
    out = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), block):
        part = torch.from_numpy(np.ascontiguousarray(x[start : start + block], dtype=np.float32))
        out[start : start + len(part)] = torch.cdist(part, ref).min(dim=1).values.double().numpy()
    return out


@dataclass(frozen=True)
class Domain:
    """The statistics of a model's training rows that decide whether a new row is in its domain."""

    space: str  # "descriptors" (the model's feature columns) or "element_fractions"
    element_rows: dict[str, int]  # element -> training rows holding it
    min_element_rows: int
    percentile: float
    center: np.ndarray  # (d,) training mean of each input column
    scale: np.ndarray  # (d,) training std (1 where constant)
    components: np.ndarray  # (k, d) principal axes of the standardised inputs
    reference: np.ndarray  # (n_ref, k) projected training rows
    distance_threshold: float
    std_threshold: dict[str, float] = field(default_factory=dict)  # target -> std at the percentile
    n_train: int = 0

    # --- fitting ------------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        compositions: Sequence[Composition],
        *,
        space: str,
        min_element_rows: int = 10,
        percentile: float = 99.0,
        seed: int = 0,
    ) -> Domain:
        """Fit on the training rows: `x` is their inputs in `space` (NaN allowed), `compositions` theirs."""
        x = np.asarray(x, dtype=np.float64)
        n = len(x)
        if n < 2:
            raise ValueError("a domain needs at least two training rows")
        rng = np.random.default_rng(seed)
        counts: dict[str, int] = {}
        for comp in compositions:
            for el in comp.element_composition:
                counts[el.symbol] = counts.get(el.symbol, 0) + 1
        center = np.nanmean(x, axis=0)
        center = np.where(np.isfinite(center), center, 0.0)
        filled = np.where(np.isnan(x), center, x)
        scale = filled.std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        z = (filled - center) / scale
        fit_rows = z[rng.permutation(n)[:MAX_FIT_ROWS]]
        _, s, vt = np.linalg.svd(fit_rows - fit_rows.mean(axis=0), full_matrices=False)
        k = int(min(MAX_COMPONENTS, vt.shape[0]))
        components = vt[:k]
        projected = z @ components.T
        order = rng.permutation(n)
        n_ref = min(MAX_REFERENCE, max(1, n // 2))  # half the rows at most: the rest set the threshold
        reference, held = projected[order[:n_ref]], projected[order[n_ref : n_ref + MAX_CALIBRATION]]
        if len(held):
            distances = _nearest(held, reference)
        else:  # too few rows to hold some out: leave-one-out within the reference
            import torch

            d = torch.cdist(torch.from_numpy(reference), torch.from_numpy(reference)).numpy()
            np.fill_diagonal(d, np.inf)
            distances = d.min(axis=1)
        return cls(
            space=space,
            element_rows=dict(sorted(counts.items())),
            min_element_rows=int(min_element_rows),
            percentile=float(percentile),
            center=center.astype(np.float32),
            scale=scale.astype(np.float32),
            components=components.astype(np.float32),
            # every sampled row: held out above only to measure the threshold, these were trained on too
            reference=projected[order[: n_ref + len(held)]].astype(np.float32),
            distance_threshold=float(np.percentile(distances, percentile)),
            n_train=int(n),
        )

    def with_std_thresholds(self, stds: dict[str, np.ndarray]) -> Domain:
        """The same domain with a std threshold per target (the percentile of the training rows' std)."""
        thresholds = {
            t: float(np.nanpercentile(s, self.percentile)) for t, s in stds.items() if np.isfinite(s).any()
        }
        return Domain(**{**self.__dict__, "std_threshold": thresholds})

    # --- checking -----------------------------------------------------------------------------------

    def distances(self, x: np.ndarray) -> np.ndarray:
        """Distance of each row of `x` (the model's inputs in this domain's space) to the training set."""
        x = np.asarray(x, dtype=np.float64)
        filled = np.where(np.isnan(x), self.center, x)
        projected = ((filled - self.center) / self.scale) @ self.components.T
        return _nearest(projected, self.reference)

    def check(
        self,
        x: np.ndarray,
        compositions: Sequence[Composition] | None,
        stds: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """``{target: in-domain flags}`` for every target in `stds` (or ``{"*": flags}`` without stds), and
        ``"_reason"``: why a row is out (element, distance or std), empty where it is in."""
        n = len(x)
        reason = np.full(n, "", dtype=object)
        if compositions is not None:
            for i, comp in enumerate(compositions):
                rare = [
                    f"{el.symbol} in {self.element_rows.get(el.symbol, 0)} training rows"
                    for el in by_element(comp)  # element_composition without a new Composition per row
                    if self.element_rows.get(el.symbol, 0) < self.min_element_rows
                ]
                if rare:
                    reason[i] = "element " + ", ".join(rare)
        distance = self.distances(x) if n else np.empty(0)
        far = distance > self.distance_threshold
        for i in np.flatnonzero(far & (reason == "")):
            reason[i] = f"distance {distance[i]:.3g} > {self.distance_threshold:.3g} (p{self.percentile:g} of training)"
        base = reason == ""
        out: dict[str, np.ndarray] = {}
        for target, std in (stds or {"*": None}).items():
            ok = base.copy()
            limit = self.std_threshold.get(target)
            if std is not None and limit is not None:
                wide = np.asarray(std, dtype=float) > limit
                ok &= ~wide
            out[target] = ok
        out["_reason"] = reason
        return out

    # --- plain types --------------------------------------------------------------------------------

    def to_payload(self) -> dict[str, Any]:
        return {
            "version": DOMAIN_VERSION,
            "space": self.space,
            "element_rows": {k: int(v) for k, v in self.element_rows.items()},
            "min_element_rows": self.min_element_rows,
            "percentile": self.percentile,
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "components": self.components.tolist(),
            "reference": self.reference.tolist(),
            "distance_threshold": self.distance_threshold,
            "std_threshold": dict(self.std_threshold),
            "n_train": self.n_train,
        }

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Domain:
        if data.get("version") != DOMAIN_VERSION:
            raise ValueError(f"domain version {data.get('version')!r}, this mi reads {DOMAIN_VERSION}")
        return cls(
            space=str(data["space"]),
            element_rows={str(k): int(v) for k, v in data["element_rows"].items()},
            min_element_rows=int(data["min_element_rows"]),
            percentile=float(data["percentile"]),
            center=np.asarray(data["center"], dtype=np.float32),
            scale=np.asarray(data["scale"], dtype=np.float32),
            components=np.asarray(data["components"], dtype=np.float32).reshape(-1, len(data["center"])),
            reference=np.asarray(data["reference"], dtype=np.float32).reshape(len(data["reference"]), -1),
            distance_threshold=float(data["distance_threshold"]),
            std_threshold={str(k): float(v) for k, v in data.get("std_threshold", {}).items()},
            n_train=int(data.get("n_train", 0)),
        )

    def summary(self) -> dict[str, Any]:
        """What the card shows: the statistics, not the reference rows."""
        rare = sorted(e for e, c in self.element_rows.items() if c < self.min_element_rows)
        return {
            "space": self.space,
            "n_train": self.n_train,
            "elements_seen": len(self.element_rows),
            "min_element_rows": self.min_element_rows,
            "rare_elements": rare,
            "percentile": self.percentile,
            "components": int(self.components.shape[0]),
            "reference_rows": int(len(self.reference)),
            "distance_threshold": round(self.distance_threshold, 4),
            "std_threshold": {k: round(v, 4) for k, v in self.std_threshold.items()},
        }


__all__ = ["DOMAIN_VERSION", "Domain", "element_fractions"]
