"""CHGNet as an energy oracle: single points (batched) and FIRE relaxations of cell and positions.

The weights are those that ship inside the chgnet wheel (``CHGNet.load(model_name="0.3.0")``): nothing is
downloaded. chgnet is imported, and the model loaded, on the first calculation, never when mi is
imported. CHGNet 0.3.0 (and 0.2.0) is trained on MPtrj energies with the Materials Project 2020 corrections
applied, so its energies are read as MP2020-compatible (`mi.oracle.label` relies on that for hulls); the
wheel's ``r2scan`` weights are fine-tuned on MP's r2SCAN energies, which share no hull with those entries.

Every structure is made right-handed first (`mi.oracle.lattice.right_handed`). One structure that fails
(an exception in the model, a non-finite energy, a cell that blows up, the time limit) becomes a
`Failure` with the reason; the others go on.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from mi.candidates.base import Candidate, Failure
from mi.oracle.base import TIME_LIMIT, EnergyOracle, Relaxation
from mi.oracle.lattice import right_handed

log = logging.getLogger(__name__)

STAGE = "oracle"


class _LimitExceeded(Exception):
    pass


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


class CHGNetOracle(EnergyOracle):
    """CHGNet single points and relaxations (FIRE on positions and, with `relax_cell`, the cell).

    `max_steps` caps a relaxation (it then ends unconverged, which the Relaxation records); `time_limit_s`
    caps its wall time (it then fails). `max_volume_ratio` fails a relaxation whose cell grows beyond
    that factor (a runaway, not a crystal); `max_memory_mb` fails one whose resident memory grows by more
    than that (checked every step: a runaway graph grows step by step, and a hard address-space cap would
    also catch torch's own allocator and end the process instead of the structure).
    """

    name = "chgnet"
    # the weights in the wheel and the energies each was trained on: MPtrj GGA/GGA+U with the MP2020
    # corrections (so they share a hull with MP's entries), or MP's r2SCAN calculations (they cannot)
    ENERGY_SCALES = {"0.3.0": "MP2020", "0.2.0": "MP2020", "r2scan": "r2SCAN"}

    def __init__(
        self,
        model_name: str = "0.3.0",
        *,
        fmax: float = 0.1,
        max_steps: int = 300,
        time_limit_s: float | None = 120.0,
        relax_cell: bool = True,
        batch_size: int = 16,
        device: str = "cpu",
        max_volume_ratio: float = 3.0,
        max_memory_mb: float | None = 4096.0,
    ) -> None:
        if model_name not in self.ENERGY_SCALES:
            raise ValueError(f"unknown CHGNet model {model_name!r}; the wheel has {', '.join(self.ENERGY_SCALES)}")
        self.model_name = model_name
        self.fmax = fmax
        self.max_steps = max_steps
        self.time_limit_s = time_limit_s
        self.relax_cell = relax_cell
        self.batch_size = batch_size
        self.device = device
        self.max_volume_ratio = max_volume_ratio
        self.max_memory_mb = max_memory_mb
        self._model_ = None
        self._device_ = "cpu"

    # -- model ---------------------------------------------------------------------------------------

    def _model(self):
        if self._model_ is None:
            from chgnet.model import CHGNet

            from mi.models.device import resolve_device

            device = resolve_device(self.device)
            with contextlib.redirect_stdout(io.StringIO()):  # chgnet prints its device and parameter count
                model = CHGNet.load(model_name=self.model_name, use_device=str(device), verbose=False)
            model.eval()
            self._device_ = str(device)
            self._model_ = model
        return self._model_

    def with_time_limit(self, seconds: float | None) -> CHGNetOracle:
        """The same oracle with another time limit per relaxation, sharing the loaded model (a refinement
        scales the limit with each cell's size; the elemental references keep the original settings)."""
        import copy

        self._model()
        twin = copy.copy(self)
        twin.time_limit_s = seconds
        return twin

    def settings(self) -> dict:
        return {
            "model": self.model_name,
            "fmax_eV_A": self.fmax,
            "max_steps": self.max_steps,
            "time_limit_s": self.time_limit_s,
            "max_memory_mb": self.max_memory_mb,
            "relax_cell": self.relax_cell,
            "optimizer": "FIRE",
            "cell_filter": "FrechetCellFilter" if self.relax_cell else None,
        }

    @property
    def energy_scale(self) -> str:
        return self.ENERGY_SCALES[self.model_name]

    def provenance(self) -> dict:
        return {
            "oracle": self.name,
            "model": f"CHGNet {self.model_name} (weights from the chgnet wheel)",
            "chgnet_version": _package_version("chgnet"),
            "energy_scale": self.energy_scale,
            "settings": self.settings(),
        }

    # -- single points -------------------------------------------------------------------------------

    def single_point(self, candidates: Sequence[Candidate]) -> tuple[list[Relaxation], list[Failure]]:
        ready, failures = _prepare(candidates)
        results: list[Relaxation] = []
        for start in range(0, len(ready), self.batch_size):
            batch = ready[start : start + self.batch_size]
            t0 = time.perf_counter()
            try:
                predictions = self._predict([s for _, s in batch])
            except Exception as exc:  # noqa: BLE001 - isolate the culprit one by one below
                log.debug("batch single point failed (%s); retrying one by one", exc)
                predictions = None
            if predictions is None:
                for cand, structure in batch:
                    t1 = time.perf_counter()
                    try:
                        (pred,) = self._predict([structure])
                        results.append(self._single(cand, structure, pred, time.perf_counter() - t1))
                    except Exception as exc:  # noqa: BLE001
                        failures.append(_failure(cand, f"single point failed: {_reason(exc)}"))
                continue
            seconds = (time.perf_counter() - t0) / max(len(batch), 1)
            for (cand, structure), pred in zip(batch, predictions):
                try:
                    results.append(self._single(cand, structure, pred, seconds))
                except ValueError as exc:
                    failures.append(_failure(cand, f"single point failed: {exc}"))
        return results, failures

    def _predict(self, structures: list[Structure]) -> list[dict]:
        out = self._model().predict_structure(structures, task="e", batch_size=self.batch_size)
        return [out] if isinstance(out, dict) else list(out)

    @staticmethod
    def _single(cand: Candidate, structure: Structure, pred: dict, seconds: float) -> Relaxation:
        energy = float(np.asarray(pred["e"]).reshape(-1)[0])
        if not math.isfinite(energy):
            raise ValueError(f"non-finite energy {energy}")
        return Relaxation(cand.id, energy, structure, 0, True, round(seconds, 4))

    # -- relaxations ---------------------------------------------------------------------------------

    def relax(self, candidates: Sequence[Candidate]) -> tuple[list[Relaxation], list[Failure]]:
        ready, failures = _prepare(candidates)
        results: list[Relaxation] = []
        for cand, structure in ready:
            try:
                results.append(self._relax_one(cand, structure))
            except _LimitExceeded as exc:
                failures.append(_failure(cand, str(exc)))
            except Exception as exc:  # noqa: BLE001 - one structure never stops the others
                failures.append(_failure(cand, f"relaxation failed: {_reason(exc)}"))
        return results, failures

    def _relax_one(self, cand: Candidate, structure: Structure) -> Relaxation:
        from ase.filters import FrechetCellFilter
        from ase.optimize import FIRE
        from chgnet.model.dynamics import CHGNetCalculator
        from pymatgen.io.ase import AseAtomsAdaptor

        with contextlib.redirect_stdout(io.StringIO()):
            model = self._model()
            calculator = CHGNetCalculator(model=model, use_device=self._device_)
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = calculator
        start_volume = atoms.get_volume()
        target = FrechetCellFilter(atoms) if self.relax_cell else atoms
        t0 = time.perf_counter()
        start_rss = _rss_mb()
        steps = {"n": 0}

        def watchdog() -> None:
            steps["n"] += 1
            if self.time_limit_s is not None and time.perf_counter() - t0 > self.time_limit_s:
                raise _LimitExceeded(
                    f"{TIME_LIMIT} of {self.time_limit_s:g} s exceeded after {steps['n']} relaxation steps"
                )
            if atoms.get_volume() > self.max_volume_ratio * start_volume:
                raise ValueError(f"cell grew beyond {self.max_volume_ratio:g}x its starting volume (runaway)")
            if self.max_memory_mb is not None and _rss_mb() - start_rss > self.max_memory_mb:
                raise _LimitExceeded(
                    f"memory limit of {self.max_memory_mb:g} MB exceeded after {steps['n']} relaxation steps"
                )

        with contextlib.redirect_stdout(io.StringIO()):
            optimizer = FIRE(target, logfile=None)
            optimizer.attach(watchdog, interval=1)
            converged = bool(optimizer.run(fmax=self.fmax, steps=self.max_steps))
        energy_total = float(atoms.get_potential_energy())
        if not math.isfinite(energy_total):
            raise ValueError(f"non-finite energy {energy_total}")
        relaxed = right_handed(AseAtomsAdaptor.get_structure(atoms))
        seconds = time.perf_counter() - t0
        return Relaxation(
            cand.id,
            energy_total / len(atoms),
            relaxed,
            int(optimizer.nsteps),
            converged,
            round(seconds, 3),
            extra={"max_force_eV_A": float(np.abs(target.get_forces()).max()) if len(atoms) else 0.0},
        )


def _rss_mb() -> float:
    """This process's resident memory now, MB (0 where /proc is missing: no limit there)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]


def _failure(cand: Candidate, reason: str) -> Failure:
    return Failure(cand.source, cand.record, STAGE, reason, id=cand.id)


def _prepare(candidates: Sequence[Candidate]) -> tuple[list[tuple[Candidate, Structure]], list[Failure]]:
    """(candidate, right-handed ordered structure) for those the oracle can take; a Failure for the rest."""
    ready, failures = [], []
    for cand in candidates:
        structure = cand.structure
        if structure is None:
            failures.append(_failure(cand, "no structure: the oracle needs a crystal structure, not only a formula"))
            continue
        if not structure.is_ordered:
            failures.append(_failure(cand, "disordered structure (partial occupancies): order it first"))
            continue
        if len(structure) == 0:
            failures.append(_failure(cand, "empty structure"))
            continue
        try:
            ready.append((cand, right_handed(structure)))
        except Exception as exc:  # noqa: BLE001
            failures.append(_failure(cand, f"bad lattice: {_reason(exc)}"))
    return ready, failures
