"""Crystal graph network for structure-dependent targets: gated message passing on the neighbour graph.

CGCNN-class (Xie & Grossman, Phys. Rev. Lett. 120, 145301 (2018)), with a few changes that matter here:

* a site's embedding is the occupancy-weighted sum of its species' embeddings (learned per Z, plus a
  linear map of the Magpie element properties, a buffer of the module), so disordered sites such as
  OBELiX's partial occupancies are represented rather than rounded;
* edges carry a Gaussian expansion of the distance (centres 0..cutoff) times a smooth cosine envelope,
  so a neighbour entering or leaving the cutoff does not jump;
* each convolution: for every edge (i, j), z = [h_i, h_j, e_ij]; message = sigmoid(z W_g) * softplus(z W_c)
  (CGCNN's gate); h_i <- h_i + LayerNorm(sum_j message / max_neighbors), residual, then softplus;
* readout: occupancy-weighted mean over sites, then an MLP head.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mi.models.element_net import element_table
from mi.models.inputs import MAX_Z, GraphBatch
from mi.models.surrogate import EnsembleNet, mlp

GRAPH_VERSION = 1  # bump when the graph an edge list means changes for the same structure


class _GatedConv(nn.Module):
    def __init__(self, dim: int, edge_dim: int, scale: float) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * dim + edge_dim, dim)
        self.core = nn.Linear(2 * dim + edge_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.scale = scale

    def forward(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        z = torch.cat([h[src], h[dst], edges], dim=-1)
        message = torch.sigmoid(self.gate(z)) * F.softplus(self.core(z))
        summed = torch.zeros_like(h).index_add_(0, src, message.to(h.dtype)) * self.scale
        return F.softplus(h + self.norm(summed))


class _GraphMember(nn.Module):
    def __init__(self, n_properties: int, n_out: int, n_gaussians: int, atom_dim: int, n_conv: int,
                 head_hidden: list[int], dropout: float, max_neighbors: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(MAX_Z + 1, atom_dim, padding_idx=0)
        self.properties = nn.Linear(n_properties, atom_dim, bias=False)
        self.convs = nn.ModuleList(_GatedConv(atom_dim, n_gaussians, 1.0 / max_neighbors) for _ in range(n_conv))
        self.head = mlp(atom_dim, n_out, head_hidden, dropout)

    def forward(self, batch: GraphBatch, edges: torch.Tensor, props: torch.Tensor) -> torch.Tensor:
        species = self.embedding(batch.species) + self.properties(props)  # (sites, k, dim)
        h = (species * batch.occupancy.unsqueeze(-1)).sum(dim=1)
        for conv in self.convs:
            h = conv(h, batch.src, batch.dst, edges)
        weight = batch.occupancy.sum(dim=1, keepdim=True).clamp(min=1e-6)
        n = int(batch.n_crystals)
        pooled = torch.zeros(n, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, batch.crystal, h * weight)
        total = torch.zeros(n, 1, dtype=h.dtype, device=h.device).index_add_(0, batch.crystal, weight.to(h.dtype))
        return self.head(pooled / total.clamp(min=1e-6))


class CrystalGraphNet(EnsembleNet):
    """Ensemble of crystal graph networks; forward(GraphBatch) -> (mean, std) in physical units."""

    kind = "cgcnn"
    input_kind = "graph"

    def __init__(
        self,
        n_targets: int,
        cutoff: float = 6.0,
        max_neighbors: int = 12,
        n_gaussians: int = 40,
        atom_dim: int = 64,
        n_conv: int = 3,
        head_hidden: list[int] | None = None,
        dropout: float = 0.0,
        ensemble_size: int = 3,
        heteroscedastic: bool = False,
    ) -> None:
        super().__init__(n_targets, ensemble_size, heteroscedastic)
        self.cutoff, self.max_neighbors = float(cutoff), int(max_neighbors)
        self.n_gaussians, self.atom_dim, self.n_conv = int(n_gaussians), int(atom_dim), int(n_conv)
        self.head_hidden = [int(h) for h in (head_hidden if head_hidden is not None else [128])]
        self.dropout = float(dropout)
        table = torch.from_numpy(element_table())
        self.register_buffer("element_features", table)
        self.register_buffer("gaussian_centres", torch.linspace(0.0, self.cutoff, self.n_gaussians))
        self.members = nn.ModuleList(
            _GraphMember(table.shape[1], self.n_outputs, self.n_gaussians, self.atom_dim, self.n_conv,
                         self.head_hidden, self.dropout, self.max_neighbors)
            for _ in range(self.ensemble_size)
        )

    def config(self) -> dict[str, Any]:
        return {
            "n_targets": self.n_targets,
            "cutoff": self.cutoff,
            "max_neighbors": self.max_neighbors,
            "n_gaussians": self.n_gaussians,
            "atom_dim": self.atom_dim,
            "n_conv": self.n_conv,
            "head_hidden": list(self.head_hidden),
            "dropout": self.dropout,
            "ensemble_size": self.ensemble_size,
            "heteroscedastic": self.heteroscedastic,
        }

    def featurizer(self) -> dict[str, Any]:
        return {"inputs": "graph", "cutoff": self.cutoff, "max_neighbors": self.max_neighbors,
                "graph_version": GRAPH_VERSION}

    def expand_distances(self, distance: torch.Tensor) -> torch.Tensor:
        """Gaussian expansion of each edge length times a cosine envelope that reaches 0 at the cutoff."""
        width = self.cutoff / (self.n_gaussians - 1)
        gauss = torch.exp(-(((distance.unsqueeze(-1) - self.gaussian_centres) / width) ** 2))
        envelope = 0.5 * (torch.cos(math.pi * (distance / self.cutoff).clamp(max=1.0)) + 1.0)
        return gauss * envelope.unsqueeze(-1)

    def prepare(self, batch: GraphBatch) -> tuple[GraphBatch, torch.Tensor, torch.Tensor]:
        return batch, self.expand_distances(batch.distance), self.element_features[batch.species]

    def run_member(self, index: int, prepared: tuple[GraphBatch, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.members[index](*prepared)
