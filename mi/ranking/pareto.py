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


def _checked(values: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be a 2-d array (rows, objectives), got shape {values.shape}")
    if len(maximise) != values.shape[1]:
        raise ValueError(f"{values.shape[1]} objective columns but {len(maximise)} directions")
    return values


def _visit_order(values: np.ndarray, maximise: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Rows by summed column ranks (a dominating row always comes first), and their ordinal values."""
    ordinal = _ordinal_minimise(values, maximise)
    order = np.lexsort((np.arange(len(values)), ordinal.sum(axis=1)))
    return order, ordinal[order]


def pareto_ranks(values: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """Pareto front of each row by non-dominated sorting: 1 = not dominated by any row, 2 = not
    dominated once front 1 is removed, and so on.

    `values` is (n, k), one column per objective; `maximise[c]` says whether larger is better in column c.
    NaN counts as the worst value of its objective. Equal rows share a front.

    The front of a row is the length of the longest chain of rows dominating one another that ends at it,
    so rows are visited in order of their summed column ranks (a dominating row always comes first) and
    each block of rows is compared with all rows before it at once: O(n^2 k) work, O(n * block) memory.
    """
    values = _checked(values, maximise)
    n, k = values.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if k == 0:
        return np.ones(n, dtype=np.int64)
    order, v = _visit_order(values, maximise)
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


def pareto_front(values: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """Whether each row is on the first Pareto front (``pareto_ranks(values, maximise) == 1``), without
    ranking the rest.

    Rows are visited in order of their summed column ranks, as in `pareto_ranks`; a row is dominated
    exactly when a row of the front found so far, or a row of its own block, dominates it (whatever
    dominates it is dominated in turn by a front row that came before). So each block is compared with the
    front only: O(n f k) work for a front of f rows, not O(n^2 k), and a streamed merge holds only the
    front between shards.
    """
    values = _checked(values, maximise)
    n, k = values.shape
    if n == 0 or k == 0:
        return np.ones(n, dtype=bool)
    order, v = _visit_order(values, maximise)
    on = np.zeros(n, dtype=bool)
    front = v[:0]
    for start in range(0, n, _BLOCK):
        block = v[start : start + _BLOCK]
        dominated = _dominates(block, block).any(axis=0)
        if len(front):
            dominated |= _dominates(front, block).any(axis=0)
        on[start : start + len(block)] = ~dominated
        front = np.vstack([front, block[~dominated]])
    out = np.empty(n, dtype=bool)
    out[order] = on
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
