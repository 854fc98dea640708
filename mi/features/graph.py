"""Crystal graphs for a graph network: the neighbour list of a structure as compact arrays.

`graph_features(structure, cutoff, max_neighbors)` returns a dict of numpy arrays:

=====================  ===============  ==============================================================
key                    dtype, shape     what
=====================  ===============  ==============================================================
``atomic_numbers``     int32 (n,)       Z of each site's most occupied species
``occupancy``          float32 (n,)     total occupancy of each site (1 for an ordered site)
``species_offsets``    int32 (n+1,)     site s holds species ``species_offsets[s]:species_offsets[s+1]``
``species_z``          int32 (S,)       Z of every species on every site (disorder)
``species_occupancy``  float32 (S,)     its occupancy
``edge_index``         int32 (2, E)     (centre, neighbour) site indices; sorted by centre, then distance
``distances``          float32 (E,)     Angstrom
``images``             int16 (E, 3)     lattice translation of the neighbour
``vectors``            float32 (E, 3)   neighbour - centre, Cartesian Angstrom (``vectors=True`` only)
``lattice``            float32 (3, 3)   rows are the cell vectors
``frac_coords``        float32 (n, 3)
=====================  ===============  ==============================================================

Each centre keeps its ``max_neighbors`` nearest neighbours within ``cutoff`` (ties by index); split sites
(alternative positions of one atom, see `mi.features.structure`) are not edges. `save_graphs` and
`load_graphs` store many graphs in one ``.npz``, each array concatenated with offsets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from pymatgen.core import Structure

from mi.features.structure import StructureAnalysis, neighbor_pairs


def graph_features(
    structure: Structure, cutoff: float = 6.0, max_neighbors: int | None = 12, vectors: bool = False
) -> dict[str, np.ndarray]:
    """The crystal graph of `structure` (see the module docstring); raises ValueError for an unusable cell."""
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if max_neighbors is not None and max_neighbors < 1:
        raise ValueError(f"max_neighbors must be at least 1 (or None), got {max_neighbors}")
    a = StructureAnalysis(structure)
    a.check_search_size(cutoff)
    i, j, images, d = neighbor_pairs(a.lattice, a.coords, a.coords, cutoff)
    keep = a.valid_pairs(i, j, d)
    i, j, images, d = i[keep], j[keep], images[keep], d[keep]
    order = np.lexsort((j, d, i))
    i, j, images, d = i[order], j[order], images[order], d[order]
    if max_neighbors is not None and len(i):
        first = np.searchsorted(i, i, side="left")
        rank = np.arange(len(i)) - first
        keep = rank < max_neighbors
        i, j, images, d = i[keep], j[keep], images[keep], d[keep]
    if len(images) and np.abs(images).max() > np.iinfo(np.int16).max:
        raise ValueError("periodic images beyond int16: the cutoff is absurdly large for this cell")

    offsets = np.concatenate([[0], np.cumsum(np.bincount(a.species_site, minlength=a.n_sites))])
    majority = np.array(
        [a.species_z[s + np.argmax(a.species_occupancy[s:e])] for s, e in zip(offsets[:-1], offsets[1:])]
    )
    graph = {
        "atomic_numbers": majority.astype(np.int32),
        "occupancy": a.occupancy.astype(np.float32),
        "species_offsets": offsets.astype(np.int32),
        "species_z": a.species_z.astype(np.int32),
        "species_occupancy": a.species_occupancy.astype(np.float32),
        "edge_index": np.stack([i, j]).astype(np.int32),
        "distances": d.astype(np.float32),
        "images": images.astype(np.int16),
        "lattice": a.lattice.astype(np.float32),
        "frac_coords": np.asarray(structure.frac_coords, dtype=np.float32),
    }
    if vectors:
        graph["vectors"] = (a.coords[j] + images @ a.lattice - a.coords[i]).astype(np.float32)
    return graph


def save_graphs(path: str | os.PathLike, graphs: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Write graphs (id -> `graph_features` dict) to one ``.npz``: arrays concatenated, with offsets."""
    ids = list(graphs)
    names = sorted({name for g in graphs.values() for name in g})
    payload: dict[str, np.ndarray] = {"ids": np.array(ids, dtype=str)}
    for name in names:
        missing = [gid for gid in ids if name not in graphs[gid]]
        if missing:
            raise ValueError(f"graph {missing[0]!r} has no {name!r} array (all graphs need the same arrays)")
        # edge_index is (2, E): concatenate along edges
        parts = [np.asarray(graphs[g][name]).T if name == "edge_index" else np.asarray(graphs[g][name]) for g in ids]
        payload[name] = np.concatenate(parts) if parts else np.empty(0)
        payload[f"{name}__offsets"] = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    from mi.files import atomic_file

    with atomic_file(path) as handle:
        np.savez_compressed(handle, **payload)


def load_graphs(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Graphs written by `save_graphs`, id -> dict of arrays."""
    with np.load(path, allow_pickle=False) as data:
        ids = data["ids"].tolist()
        names = [k for k in data.files if k != "ids" and not k.endswith("__offsets")]
        arrays = {name: (data[name], data[f"{name}__offsets"]) for name in names}
    out: dict[str, dict[str, np.ndarray]] = {}
    for g, gid in enumerate(ids):
        graph = {}
        for name, (values, offsets) in arrays.items():
            part = values[offsets[g] : offsets[g + 1]]
            graph[name] = part.T if name == "edge_index" else part
        out[gid] = graph
    return out
