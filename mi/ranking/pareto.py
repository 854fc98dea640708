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


_ENS_BLOCK = 1024  # rows placed together; each is compared with front members, never with all rows before it
_CELLS = 1 << 20  # pairwise comparisons held in memory at once


class _Front:
    """The rows of one front so far, in visit order, in a buffer that doubles as it fills."""

    def __init__(self, k: int) -> None:
        self.rows = np.empty((64, k), dtype=np.int64)
        self.n = 0

    def add(self, rows: np.ndarray) -> None:
        need = self.n + len(rows)
        if need > len(self.rows):
            grown = np.empty((max(need, 2 * len(self.rows)), self.rows.shape[1]), dtype=np.int64)
            grown[: self.n] = self.rows[: self.n]
            self.rows = grown
        self.rows[self.n : need] = rows
        self.n = need


def _dominated_by(front: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Whether some row of `front` dominates each of `rows`; the front is read in slices and rows found
    dominated leave early (front rows visited first are the strongest, so most leave in the first slice)."""
    out = np.zeros(len(rows), dtype=bool)
    open_ = np.arange(len(rows))
    at, step = 0, 64
    while at < len(front) and len(open_):
        step = max(1, min(2 * step, _CELLS // len(open_)))
        hit = _dominates(front[at : at + step], rows[open_]).any(axis=0)
        out[open_[hit]] = True
        open_ = open_[~hit]
        at += step
    return out


def pareto_ranks(values: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """Pareto front of each row by non-dominated sorting: 1 = not dominated by any row, 2 = not
    dominated once front 1 is removed, and so on.

    `values` is (n, k), one column per objective; `maximise[c]` says whether larger is better in column c.
    NaN counts as the worst value of its objective. Equal rows share a front.

    Efficient non-dominated sorting (ENS-BS, Zhang et al. 2015), vectorised over blocks of rows: rows are
    visited in order of their summed column ranks, so whatever dominates a row was placed before it. A row
    belongs to the first front none of whose members dominates it, found by binary search over the fronts
    (a member of a later front is dominated by one of every earlier front, so a front without a dominator
    of the row is followed by fronts without one); rows of one block that dominate each other are then
    chained in visit order. A row is compared with the members of about log2(fronts) fronts (leaving a
    front at the first slice holding a dominator), not with every row before it: O(n^2 k) only when nearly
    every row is on one front, and O(block * slice) memory.
    """
    values = _checked(values, maximise)
    n, k = values.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if k == 0:
        return np.ones(n, dtype=np.int64)
    order, v = _visit_order(values, maximise)
    ranks = np.zeros(n, dtype=np.int64)
    fronts: list[_Front] = []
    for start in range(0, n, _ENS_BLOCK):
        block = v[start : start + _ENS_BLOCK]
        # binary search per row for the first front without a dominator of it: fronts lo..hi remain
        lo = np.ones(len(block), dtype=np.int64)
        hi = np.full(len(block), len(fronts) + 1, dtype=np.int64)
        while True:
            searching = np.flatnonzero(lo < hi)
            if not len(searching):
                break
            mid = (lo[searching] + hi[searching]) // 2
            for number in np.unique(mid):
                rows = searching[mid == number]
                front = fronts[number - 1]
                dominated = _dominated_by(front.rows[: front.n], block[rows])
                lo[rows[dominated]] = number + 1
                hi[rows[~dominated]] = number
        placed = lo
        inner = _dominates(block, block).T  # inner[i, j]: block row j dominates block row i (only j < i can)
        for i in np.flatnonzero(inner.any(axis=1)):
            placed[i] = max(placed[i], placed[:i][inner[i, :i]].max() + 1)
        ranks[start : start + len(block)] = placed
        for number in np.unique(placed):
            while len(fronts) < number:
                fronts.append(_Front(k))
            fronts[number - 1].add(block[placed == number])
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
