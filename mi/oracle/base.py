"""The oracle interface: what labels candidates when the surrogate is not trusted.

Two layers, so that a user can plug in either:

* an `EnergyOracle` computes total energies (single points and relaxations) for structures: CHGNet,
  SevenNet, or another interatomic potential;
* a `Labeller` turns candidates into target values (formation energy, energy above hull, density,
  voltage ...) as a frame indexed by candidate id. `OracleLabeller` does it from an `EnergyOracle`;
  `TableLabeller` reads labels computed elsewhere (DFT results, or a closed pool labelled in advance).

Failures are returned, never raised, for one bad candidate among many.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
from pymatgen.core import Structure

from mi.candidates.base import Candidate, Failure

# every oracle words a hit time limit with this phrase: the funnel counts such failures and retries them on --resume
TIME_LIMIT = "time limit"


@dataclass(frozen=True)
class Relaxation:
    """One oracle calculation on one structure (a single point is a relaxation of zero steps)."""

    id: str
    energy_eV_atom: float
    structure: Structure  # the final (relaxed) structure
    n_steps: int
    converged: bool
    seconds: float
    extra: dict = field(default_factory=dict, compare=False)


class EnergyOracle(ABC):
    """Total energies of structures. Implementations isolate failures per structure."""

    name: str = "oracle"

    @abstractmethod
    def provenance(self) -> dict:
        """What a label made by this oracle records: name, model version, settings."""

    @abstractmethod
    def single_point(self, candidates: Sequence[Candidate]) -> tuple[list[Relaxation], list[Failure]]:
        """Energy of each structure as given."""

    @abstractmethod
    def relax(self, candidates: Sequence[Candidate]) -> tuple[list[Relaxation], list[Failure]]:
        """Relax cell and positions of each structure; the energy is that of the final structure."""


class Labeller(ABC):
    """Target values for candidates: a frame indexed by candidate id, one float column per target."""

    @property
    @abstractmethod
    def targets(self) -> list[str]:
        """The target columns this labeller fills (NaN where a target does not apply)."""

    @property
    @abstractmethod
    def units(self) -> dict[str, str]:
        """Unit of each target column."""

    @abstractmethod
    def provenance(self) -> dict:
        """How the labels were made, recorded with them."""

    @abstractmethod
    def label(self, candidates: Sequence[Candidate]) -> tuple[pd.DataFrame, list[Failure]]:
        """Labels of the candidates that could be labelled, and a Failure for each that could not."""
