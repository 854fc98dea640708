"""Non-dominated sorting and crowding distance, vectorised with numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_BLOCK = 256


def _ordinal_minimise(values: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """Each column replaced by its dense rank, smaller = better, NaN = one past the worst value.

    Dominance only depends on the order within each column, so this changes no front, and it makes NaN,
    +-inf and -0.0 behave without special cases.
    """
    n, k = values.shape
    out = np.empty((n, k), dtype=np.int64)
    for c in range(k):
        col = -values[:, c] if maximise[c] else values[:, c]
        nan = np.isnan(col)
        uniq, inverse = np.unique(col[~nan], return_inverse=True)
        out[~nan, c] = inverse.ravel()
        out[nan, c] = len(uniq)
    return out


def _dominates(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``out[i, j]``: row a[i] dominates row b[j] (minimisation: <= everywhere, < somewhere)."""
    le = np.ones((len(a), len(b)), dtype=bool)
    lt = np.zeros((len(a), len(b)), dtype=bool)
    for c in range(a.shape[1]):
        x, y = a[:, c, None], b[None, :, c]
        le &= x <= y
        lt |= x < y
    return le & lt


def pareto_ranks(values: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """Pareto front of each row by non-dominated sorting: 1 = not dominated by any row, 2 = not
    dominated once front 1 is removed, and so on.

    `values` is (n, k), one column per objective; `maximise[c]` says whether larger is better in column c.
    NaN counts as the worst value of its objective. Equal rows share a front.

    The front of a row is the length of the longest chain of rows dominating one another that ends at it,
    so rows are visited in order of their summed column ranks (a dominating row always comes first) and
    each block of rows is compared with all rows before it at once: O(n^2 k) work, O(n * block) memory.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be a 2-d array (rows, objectives), got shape {values.shape}")
    n, k = values.shape
    if len(maximise) != k:
        raise ValueError(f"{k} objective columns but {len(maximise)} directions")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if k == 0:
        return np.ones(n, dtype=np.int64)
    ordinal = _ordinal_minimise(values, maximise)
    order = np.lexsort((np.arange(n), ordinal.sum(axis=1)))
    v = ordinal[order]
    ranks = np.zeros(n, dtype=np.int64)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        block = v[start:stop]
        base = np.ones(stop - start, dtype=np.int64)
        if start:
            dom = _dominates(v[:start], block)  # (start, b)
            has = dom.any(axis=0)
            if has.any():
                best = np.where(dom[:, has], ranks[:start, None], 0).max(axis=0)
                base[has] = best + 1
        inner = _dominates(block, block)
        for i in range(stop - start):
            above = inner[:i, i]
            if above.any():
                base[i] = max(base[i], ranks[start : start + i][above].max() + 1)
            ranks[start + i] = base[i]
    out = np.empty(n, dtype=np.int64)
    out[order] = ranks
    return out


def crowding_distance(values: np.ndarray, ranks: np.ndarray | None = None) -> np.ndarray:
    """NSGA-II crowding distance of each row within its front (all rows form one front if `ranks` is None).

    Per objective, a front's rows are sorted; the two extremes get +inf, the others add the gap between
    their neighbours divided by the front's range of that objective. Fronts of one or two rows are all
    +inf. NaN values take no part in their objective's sum. Direction does not matter.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be a 2-d array (rows, objectives), got shape {values.shape}")
    n, k = values.shape
    ranks = np.ones(n, dtype=np.int64) if ranks is None else np.asarray(ranks)
    if ranks.shape != (n,):
        raise ValueError(f"ranks has shape {ranks.shape}, expected ({n},)")
    out = np.zeros(n, dtype=float)
    for front in np.unique(ranks):
        idx = np.flatnonzero(ranks == front)
        if len(idx) <= 2:
            out[idx] = np.inf
            continue
        for c in range(k):
            col = values[idx, c]
            finite = ~np.isnan(col)
            rows, vals = idx[finite], col[finite]
            if len(rows) == 0:
                continue
            order = np.argsort(vals, kind="stable")
            rows, vals = rows[order], vals[order]
            out[rows[0]] = out[rows[-1]] = np.inf
            span = vals[-1] - vals[0]
            if len(rows) > 2 and np.isfinite(span) and span > 0:
                out[rows[1:-1]] += (vals[2:] - vals[:-2]) / span
    return out
