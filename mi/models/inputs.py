"""Model inputs: what each model kind reads, built from candidates (or a features frame) and cut into batches.

A model's ``featurizer()`` says which of these it needs:

* ``features``: `DenseInputs`, the columns of a features frame (``<set>.<feature>``, NaN allowed);
* ``composition``: `CompositionInputs`, padded (Z, atomic fraction) pairs of each composition;
* ``graph``: `GraphInputs`, one neighbour graph per structure (`mi.features.graph.graph_features`), with the
  species and occupancies of every site so that disordered sites are represented.

Every builder returns the inputs of the rows it could use and, for the others, a reason; a bad row never
stops the batch. ``batch(rows)`` returns CPU tensors; `to_device` moves any of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Composition, Structure

MAX_Z = 118  # pymatgen's elements; embeddings of elements never seen in training stay untrained


def to_device(batch, device: torch.device | str, non_blocking: bool = False):
    """Move a tensor, a tuple/list of tensors or a dataclass of tensors to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device, non_blocking) for b in batch)
    if dataclasses.is_dataclass(batch):
        return dataclasses.replace(
            batch, **{f.name: to_device(getattr(batch, f.name), device, non_blocking) for f in dataclasses.fields(batch)}
        )
    return batch


def _rows(rows) -> np.ndarray:
    return rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)


# --- descriptor vectors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DenseInputs:
    x: torch.Tensor  # (n, n_features) float32, NaN where unknown

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, rows) -> torch.Tensor:
        return self.x[torch.as_tensor(_rows(rows), dtype=torch.long)]


# --- compositions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompositionInputs:
    z: torch.Tensor  # (n, max elements) int64, 0 = padding
    frac: torch.Tensor  # (n, max elements) float32, atomic fractions summing to 1, 0 for padding
    x: torch.Tensor | None = None  # (n, n_features) descriptors for element models that also read them

    def __len__(self) -> int:
        return self.z.shape[0]

    def batch(self, rows) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(_rows(rows), dtype=torch.long)
        z, frac = self.z[index], self.frac[index]
        width = max(int((z > 0).sum(dim=1).max()), 1) if len(index) else 1  # trim the padding this batch lacks
        if self.x is None:
            return z[:, :width], frac[:, :width]
        return z[:, :width], frac[:, :width], self.x[index]

    def subset(self, rows) -> CompositionInputs:
        index = torch.as_tensor(_rows(rows), dtype=torch.long)
        return CompositionInputs(self.z[index], self.frac[index], None if self.x is None else self.x[index])


def _element_pairs(composition: Composition) -> list[tuple[int, float]]:
    pairs = [(int(el.Z), float(amount)) for el, amount in composition.element_composition.items()]
    if not pairs:
        raise ValueError("empty composition")
    for z, amount in pairs:
        if not 1 <= z <= MAX_Z:
            raise ValueError(f"only elements Z = 1..{MAX_Z} are supported (got Z = {z})")
        if not amount > 0:
            raise ValueError(f"amounts must be positive (got {amount:g})")
    total = sum(a for _, a in pairs)
    return sorted(((z, a / total) for z, a in pairs), key=lambda p: -p[1])


def composition_inputs(compositions: Sequence[Composition]) -> tuple[CompositionInputs, list[str | None]]:
    """Padded (Z, fraction) inputs of every usable composition, and a reason (or None) per composition."""
    pairs, reasons = [], []
    for composition in compositions:
        try:
            pairs.append(_element_pairs(composition))
            reasons.append(None)
        except Exception as exc:  # noqa: BLE001 - reported per row
            reasons.append(f"composition: {exc}")
    width = max((len(p) for p in pairs), default=1)
    z = np.zeros((len(pairs), width), dtype=np.int64)
    frac = np.zeros((len(pairs), width), dtype=np.float32)
    for i, row in enumerate(pairs):
        z[i, : len(row)] = [p[0] for p in row]
        frac[i, : len(row)] = [p[1] for p in row]
    return CompositionInputs(torch.from_numpy(z), torch.from_numpy(frac)), reasons


# --- crystal graphs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Graph:
    """One crystal's neighbour graph in numpy arrays."""

    species: np.ndarray  # (n_sites, k) int64 Z of each species on a site, 0 = padding
    occupancy: np.ndarray  # (n_sites, k) float32
    src: np.ndarray  # (n_edges,) int64 centre site
    dst: np.ndarray  # (n_edges,) int64 neighbour site
    distance: np.ndarray  # (n_edges,) float32, Angstrom


@dataclass(frozen=True)
class GraphBatch:
    """Graphs of a batch concatenated: site and edge indices offset per crystal."""

    species: torch.Tensor  # (sites, k) int64
    occupancy: torch.Tensor  # (sites, k)
    src: torch.Tensor  # (edges,) int64
    dst: torch.Tensor  # (edges,) int64
    distance: torch.Tensor  # (edges,)
    crystal: torch.Tensor  # (sites,) int64 index of each site's crystal in the batch
    n_crystals: torch.Tensor  # () int64


def structure_graph(structure: Structure, cutoff: float, max_neighbors: int) -> Graph:
    """The neighbour graph of one structure, from `mi.features.graph.graph_features`.

    Every species of a disordered site is kept with its occupancy (a site's embedding is their weighted sum).
    """
    from mi.features.graph import graph_features

    if len(structure) == 0:
        raise ValueError("structure has no sites")
    arrays = graph_features(structure, cutoff=cutoff, max_neighbors=max_neighbors)
    offsets = np.asarray(arrays["species_offsets"], dtype=np.int64)
    counts = np.diff(offsets)
    z = np.asarray(arrays["species_z"], dtype=np.int64)
    if z.size and not (1 <= z.min() and z.max() <= MAX_Z):
        raise ValueError(f"only elements Z = 1..{MAX_Z} are supported")
    k = max(int(counts.max()), 1) if counts.size else 1
    site = np.repeat(np.arange(len(counts)), counts)
    slot = np.arange(len(z)) - offsets[site]
    species = np.zeros((len(counts), k), dtype=np.int64)
    occupancy = np.zeros((len(counts), k), dtype=np.float32)
    species[site, slot] = z
    occupancy[site, slot] = np.asarray(arrays["species_occupancy"], dtype=np.float32)
    edge = np.asarray(arrays["edge_index"], dtype=np.int64).reshape(2, -1)
    if edge.shape[1] == 0:
        raise ValueError(f"no neighbours within {cutoff:g} A")
    return Graph(species, occupancy, edge[0], edge[1], np.asarray(arrays["distances"], dtype=np.float32))


@dataclass(frozen=True)
class GraphInputs:
    graphs: list[Graph]

    def __len__(self) -> int:
        return len(self.graphs)

    def batch(self, rows) -> GraphBatch:
        graphs = [self.graphs[int(i)] for i in _rows(rows)]
        k = max((g.species.shape[1] for g in graphs), default=1)
        species, occupancy, src, dst, distance, crystal = [], [], [], [], [], []
        offset = 0
        for i, g in enumerate(graphs):
            n = g.species.shape[0]
            pad = k - g.species.shape[1]
            species.append(np.pad(g.species, ((0, 0), (0, pad))))
            occupancy.append(np.pad(g.occupancy, ((0, 0), (0, pad))))
            src.append(g.src + offset)
            dst.append(g.dst + offset)
            distance.append(g.distance)
            crystal.append(np.full(n, i, dtype=np.int64))
            offset += n

        def cat(parts, dtype):
            return torch.from_numpy(np.concatenate(parts).astype(dtype, copy=False)) if parts else torch.empty(0)

        return GraphBatch(
            species=cat(species, np.int64).reshape(-1, k),
            occupancy=cat(occupancy, np.float32).reshape(-1, k),
            src=cat(src, np.int64),
            dst=cat(dst, np.int64),
            distance=cat(distance, np.float32),
            crystal=cat(crystal, np.int64),
            n_crystals=torch.tensor(len(graphs)),
        )


def graph_inputs(
    structures: Sequence[Structure | None], cutoff: float, max_neighbors: int
) -> tuple[GraphInputs, list[str | None]]:
    """Graphs of every usable structure, and a reason (or None) per structure; None means no structure."""
    graphs, reasons = [], []
    for structure in structures:
        if structure is None:
            reasons.append("graph: no structure (this model needs one)")
            continue
        try:
            graphs.append(structure_graph(structure, cutoff, max_neighbors))
            reasons.append(None)
        except Exception as exc:  # noqa: BLE001 - one bad structure must not stop the batch
            reasons.append(f"graph: {type(exc).__name__}: {exc}")
    return GraphInputs(graphs), reasons
