"""Composition-only surrogate that learns from element embeddings: a set network with fraction-weighted attention.

In the spirit of Roost (Goodall & Lee, Nat. Commun. 11, 6280 (2020)) and CrabNet (Wang et al., npj Comput.
Mater. 7, 77 (2021)): a composition is a set of (element, fraction) tokens, not a fixed descriptor vector.

* token = learned embedding of Z + a linear map of the element's pymatgen properties (the table is a buffer
  of the module, so a checkpoint predicts the same whatever pymatgen is installed later) + a Fourier
  encoding of the fraction and of its logarithm;
* ``n_layers`` pre-norm transformer layers; attention logits get ``log(fraction)`` of the key added, so a
  softmax over elements is weighted by their fractions (Roost's weighted attention);
* pooling: fraction-weighted attention over the tokens (several gates), then an MLP head;
* optionally (``n_features > 0``, the config's ``descriptor_sets``) a descriptor vector such as the Magpie
  statistics goes through its own small MLP into the head next to the pooled tokens: the descriptors give
  a smooth prior that trains fast, the attention learns what they miss. Its normalisers
  (``feature_mean`` / ``feature_std``) are buffers, as in `EnsembleMLP`.

Every ensemble member owns all of these weights; the element table is shared.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from mi.models.surrogate import EnsembleNet, _nan_mean, _nan_std, mlp

from mi.models.inputs import MAX_Z

N_FOURIER = 8  # frequencies of the fraction encoding


def element_table() -> np.ndarray:
    """(MAX_Z + 1, 2 * n_properties): standardised Magpie element properties and a 'missing' flag per property.

    Built once when a model is created; it is then a buffer of the model, so later changes of the table do
    not change a trained model's predictions.
    """
    from mi.features.composition import magpie_table

    table = np.array(magpie_table().raw, dtype=np.float64)[: MAX_Z + 1]
    missing = np.isnan(table)
    mean = np.nanmean(table[1:], axis=0)
    std = np.nanstd(table[1:], axis=0)
    std = np.where(std > 0, std, 1.0)
    scaled = np.where(missing, 0.0, (table - mean) / std)
    out = np.concatenate([scaled, missing.astype(np.float64)], axis=1)
    out[0] = 0.0  # padding row
    return out.astype(np.float32)


def _fraction_encoding(frac: torch.Tensor) -> torch.Tensor:
    """(..., 2 * N_FOURIER + 2) features of a fraction in (0, 1]: sin/cos at several frequencies, log, value."""
    k = torch.arange(1, N_FOURIER + 1, device=frac.device, dtype=frac.dtype)
    angle = math.pi * frac.unsqueeze(-1) * k
    log = torch.log(frac.clamp(min=1e-6)).unsqueeze(-1) / 5.0
    return torch.cat([torch.sin(angle), torch.cos(angle), log, frac.unsqueeze(-1)], dim=-1)


class _WeightedAttentionLayer(nn.Module):
    """Pre-norm transformer layer whose attention softmax is weighted by the key's fraction.

    Attention is written out rather than taken from `nn.MultiheadAttention`: compositions have a handful of
    elements, and for such short sets the fused kernels cost more than they save on a CPU.
    """

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_dim), nn.SiLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model))

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """h (B, M, d); bias (B, 1, 1, M): log fraction of each key, a large negative number for padding."""
        b, m, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, m, 3, self.n_heads, d // self.n_heads).unbind(dim=2)
        scores = torch.einsum("bqhc,bkhc->bhqk", q, k) / math.sqrt(d // self.n_heads) + bias
        attended = torch.einsum("bhqk,bkhc->bqhc", self.drop(torch.softmax(scores, dim=-1)), v).reshape(b, m, d)
        h = h + self.out(attended)
        return h + self.ff(self.norm2(h))


DESCRIPTOR_DIM = 128  # width of the descriptor branch where it joins the pooled tokens


class _ElementSetMember(nn.Module):
    def __init__(self, n_properties: int, n_out: int, d_model: int, n_heads: int, n_layers: int, ff_dim: int,
                 n_pool_heads: int, head_hidden: list[int], dropout: float, n_features: int = 0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(MAX_Z + 1, d_model, padding_idx=0)
        self.properties = nn.Linear(n_properties, d_model, bias=False)
        self.fraction = nn.Sequential(nn.Linear(2 * N_FOURIER + 2, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.layers = nn.ModuleList(_WeightedAttentionLayer(d_model, n_heads, ff_dim, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.gate = nn.Linear(d_model, n_pool_heads)
        self.descriptors = mlp(n_features, DESCRIPTOR_DIM, [2 * DESCRIPTOR_DIM], dropout) if n_features else None
        self.head = mlp(n_pool_heads * d_model + (DESCRIPTOR_DIM if n_features else 0), n_out, head_hidden, dropout)

    def forward(self, z: torch.Tensor, frac: torch.Tensor, props: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        present = z > 0  # (B, M)
        log_frac = torch.where(present, torch.log(frac.clamp(min=1e-12)), torch.full_like(frac, -1e4))
        h = self.embedding(z) + self.properties(props) + self.fraction(_fraction_encoding(frac))
        bias = log_frac[:, None, None, :].to(h.dtype)  # (B, 1, 1, M_key): added to every head's and query's logits
        for layer in self.layers:
            h = layer(h, bias)
        h = self.norm(h)
        weights = torch.softmax(self.gate(h) + log_frac.unsqueeze(-1).to(h.dtype), dim=1)  # (B, M, pool heads)
        pooled = torch.einsum("bmk,bmd->bkd", weights, h).flatten(1)
        if self.descriptors is not None:
            pooled = torch.cat([pooled, self.descriptors(x)], dim=-1)
        return self.head(pooled)


class ElementAttentionNet(EnsembleNet):
    """Ensemble of element-set attention networks on (Z, fraction) tokens; forward -> (mean, std)."""

    kind = "element_attention"
    input_kind = "composition"

    def __init__(
        self,
        n_targets: int,
        d_model: int = 96,
        n_heads: int = 4,
        n_layers: int = 3,
        ff_dim: int = 192,
        n_pool_heads: int = 2,
        head_hidden: list[int] | None = None,
        dropout: float = 0.0,
        ensemble_size: int = 3,
        heteroscedastic: bool = False,
        n_features: int = 0,
    ) -> None:
        super().__init__(n_targets, ensemble_size, heteroscedastic)
        self.n_features = int(n_features)
        self.d_model, self.n_heads, self.n_layers = int(d_model), int(n_heads), int(n_layers)
        self.ff_dim, self.n_pool_heads = int(ff_dim), int(n_pool_heads)
        self.head_hidden = [int(h) for h in (head_hidden if head_hidden is not None else [256, 128])]
        self.dropout = float(dropout)
        table = torch.from_numpy(element_table())
        self.register_buffer("element_features", table)
        if self.n_features:
            self.register_buffer("feature_mean", torch.zeros(self.n_features))
            self.register_buffer("feature_std", torch.ones(self.n_features))
        self.members = nn.ModuleList(
            _ElementSetMember(table.shape[1], self.n_outputs, self.d_model, self.n_heads, self.n_layers, self.ff_dim,
                              self.n_pool_heads, self.head_hidden, self.dropout, self.n_features)
            for _ in range(self.ensemble_size)
        )

    def config(self) -> dict[str, Any]:
        return {
            "n_targets": self.n_targets,
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "n_layers": self.n_layers,
            "ff_dim": self.ff_dim,
            "n_pool_heads": self.n_pool_heads,
            "head_hidden": list(self.head_hidden),
            "dropout": self.dropout,
            "ensemble_size": self.ensemble_size,
            "heteroscedastic": self.heteroscedastic,
            "n_features": self.n_features,
        }

    def featurizer(self) -> dict[str, Any]:
        return {"inputs": "composition", "max_z": MAX_Z, "descriptors": self.n_features > 0}

    @torch.no_grad()
    def fit_normalisers(self, inputs: Any, targets: torch.Tensor) -> None:
        if self.n_features:
            features = inputs.x
            self.feature_mean.copy_(_nan_mean(features))
            self.feature_std.copy_(_nan_std(features, self.feature_mean, constant=math.inf))
        super().fit_normalisers(inputs, targets)

    def prepare(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        z, frac = batch[0], batch[1]
        x = None
        if self.n_features:
            features = batch[2]
            features = torch.where(torch.isnan(features), self.feature_mean, features)
            # clamp: a descriptor far outside the training range must not blow up the head
            x = ((features - self.feature_mean) / self.feature_std).clamp(-10.0, 10.0)
        return z, frac, self.element_features[z], x

    def run_member(self, index: int, prepared: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.members[index](*prepared)
