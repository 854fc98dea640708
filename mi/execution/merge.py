"""Rank the rows of a screen's Parquet shards: all at once when they fit, else in passes over the shards.

**In memory** (up to ``execution.max_rows_in_memory`` kept rows): the shards are concatenated and ranked
by `mi.ranking.rank`, exactly as a single-table screen; ``ranked.csv`` holds every row.

**Streaming** (more rows): the same ranking semantics, without every row in memory at once.

1. Pass 1 reads only the objective columns: per objective the count of finite values, min and max
   (``minmax``), mean and sum of squared deviations combined shard by shard (``zscore``; equal to numpy's
   up to rounding) and the finite values themselves, 8 bytes a row, for ``rank`` (average ranks need the
   whole column). An objective without a finite value is left out, as `rank` does.
2. Pass 2 scores each shard with those statistics (`mi.ranking.stats.Scorer`, the very code that
   `mi.ranking.rank` scores a table with, so ``minmax`` and ``rank`` scores are bit-identical), keeps the k best
   rounded sort keys, and merges the shard's Pareto front into a running front (the front of a union is
   the front of the union of the fronts: exact).
3. Pass 3 gathers the rows whose key reaches the k-th best, and the front's rows. A row dominating
   another scores at least as much (every normalisation is monotone and the weights are >= 0), so that
   set holds every row that dominates one of its members, and Pareto ranks computed inside it are the
   global ones. With ``sort_by: ucb_score`` one more pass adds the rows scoring at least the lowest
   score gathered, for the same reason.

``ranked.csv`` then holds the top-k rows and the whole first Pareto front, each with its global ``rank``;
``crowding_distance`` is exact on the first front and left empty (NaN) for rows of deeper fronts, whose
other members are not gathered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mi.config import RankingConfig
from mi.execution.chunk import STRUCTURE_COLUMN
from mi.ranking import rank, usable_objectives
from mi.ranking.domain import flag_columns
from mi.ranking.pareto import crowding_distance, pareto_front, pareto_ranks
from mi.ranking.stats import RANKING_COLUMNS, Scorer, ranked_order, sort_key


# --- reading shards ---------------------------------------------------------------------------------


def shard_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def read_shard(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The shard's rows; with `columns`, those columns in that order, empty (missing) where the shard lacks
    one (a chunk without manganese has no ``demand_Mn_t_per_year``)."""
    import pyarrow.parquet as pq

    if columns is None:
        return pq.read_table(path).to_pandas()
    present = set(shard_columns(path))
    frame = pq.read_table(path, columns=[c for c in columns if c in present]).to_pandas()
    for c in columns:
        if c not in present:
            frame[c] = None
    return frame[list(columns)]


def union_columns(orders: Iterable[Sequence[str]]) -> list[str]:
    """Every column of the shards, in one table's order whatever the chunking: a column a later shard adds
    (``demand_Kr_t_per_year``, where only that chunk holds krypton) goes right after the column it follows
    there, not at the end, since every chunk writes its columns in the same canonical order."""
    union: list[str] = []
    seen: set[str] = set()
    for order in orders:
        place = 0
        for c in order:
            if c in seen:
                place = union.index(c) + 1
            else:
                union.insert(place, c)
                seen.add(c)
                place += 1
    return union


def concat_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate shard frames so that column types come out as one table's would.

    A chunk where a column is all missing stores it untyped, and a flag column without a missing value is
    bool in its chunk but float where some value is missing: align both to the column's type elsewhere.
    """
    frames = [f for f in frames if len(f)] or frames[:1]
    if not frames:
        return pd.DataFrame()
    kinds: dict[str, set[str]] = {}
    for f in frames:
        for c in f.columns:
            if f[c].notna().any():
                kinds.setdefault(c, set()).add(f[c].dtype.kind)
    aligned = []
    for f in frames:
        copied = False  # a frame is copied only when a column of it changes type (memory: frames are wide)
        for c in f.columns:
            k = kinds.get(c, set())
            numeric = bool(k) and k <= {"f", "b", "i", "u"}
            if numeric and ("f" in k or len(k) > 1) and (f[c].dtype.kind in "bO" or not f[c].notna().any()):
                if not copied:
                    f, copied = f.copy(), True
                f[c] = pd.to_numeric(f[c], errors="coerce").astype(float)
        aligned.append(f)
    if len(aligned) == 1:
        return aligned[0].reset_index(drop=True)
    order = union_columns(f.columns for f in aligned)
    if list(aligned[0].columns) != order:  # concat keeps the first frame's order: give it every column
        aligned[0] = aligned[0].reindex(columns=order)
    return pd.concat(aligned, ignore_index=True, sort=False)


# --- in memory --------------------------------------------------------------------------------------


def _shards_table(files: Sequence[Path]) -> pd.DataFrame:
    frames = []
    for path in files:
        columns = [c for c in shard_columns(path) if c != STRUCTURE_COLUMN]
        frames.append(read_shard(path, columns))
    table = concat_rows(frames)
    frames.clear()  # the shards' frames go before ranking copies the table
    if "id" not in table.columns:
        table = pd.DataFrame({"id": pd.Series(dtype=object)})
    return table


def _merge_in_memory(files: Sequence[Path], cfg: RankingConfig) -> tuple[pd.DataFrame, dict]:
    return rank(_shards_table(files), cfg)  # no name here holds the table: `rank` frees it after its first copy


# --- streaming --------------------------------------------------------------------------------------


def _merge_streaming(
    files: Sequence[Path], cfg: RankingConfig, columns: list[str]
) -> tuple[pd.DataFrame, dict]:
    objectives, skipped = usable_objectives(pd.DataFrame(columns=columns), cfg)
    kappa = cfg.ucb_kappa
    value_cols = list(dict.fromkeys(o.column for o in objectives))
    std_cols = [f"{c}_std" for c in value_cols if kappa is not None and f"{c}_std" in columns]
    read_cols = list(dict.fromkeys(["id", *value_cols, *std_cols, *flag_columns(value_cols, columns)]))

    # Pass 1: statistics, the very ones `mi.ranking.rank` takes from a whole table, gathered shard by shard.
    scorer = Scorer(objectives, kappa=kappa, out_of_domain=cfg.out_of_domain)
    for path in files:
        scorer.add(read_shard(path, read_cols))
    skipped += scorer.close()
    objectives = scorer.objectives
    maximise = scorer.maximise
    by_ucb = cfg.sort_by == "ucb_score"

    def scored(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        columns = scorer.columns(frame)
        return scorer.score(columns), scorer.ucb(columns), scorer.matrix(columns)

    # Pass 2: the k best sort keys and the Pareto front.
    best = np.empty(0)
    front_ids: list[str] = []
    front_values = np.empty((0, len(objectives)))
    total = 0
    for path in files:
        frame = read_shard(path, read_cols)
        if not len(frame):
            continue
        total += len(frame)
        score, ucb, values = scored(frame)
        key = sort_key(ucb if by_ucb else score)
        best = np.sort(np.concatenate([best, key]))[::-1][: cfg.top_k]
        local = pareto_front(values, maximise)  # O(rows x front), not O(rows^2)
        ids = [*front_ids, *frame["id"].astype(str).to_numpy()[local]]
        pool = np.vstack([front_values, values[local]])
        merged = pareto_front(pool, maximise)
        front_ids = [i for i, m in zip(ids, merged) if m]
        front_values = pool[merged]
    threshold = float(best[-1]) if len(best) >= cfg.top_k else -math.inf
    front_set = set(front_ids)

    # Pass 3: rows reaching the threshold, the front's rows, and rows sorting before each front row.
    all_cols = [c for c in columns if c != STRUCTURE_COLUMN]

    def scored_shards() -> Iterator[pd.DataFrame]:
        """Each shard's rows with their place in the one-table order (crowding distance breaks ties by
        it), score, UCB score and sort key."""
        offset = 0
        for path in files:
            frame = read_shard(path, all_cols)
            if not len(frame):
                continue
            frame["_pos"] = np.arange(offset, offset + len(frame))
            offset += len(frame)
            score, ucb, _ = scored(frame)
            frame["score"] = score
            if ucb is not None:
                frame["ucb_score"] = ucb
            frame["_key"] = sort_key(ucb if by_ucb else score)
            yield frame

    gathered, front_rows = [], []
    for frame in scored_shards():
        key = frame["_key"].to_numpy()
        gathered.append(frame[key >= threshold])
        in_front = frame["id"].astype(str).isin(front_set).to_numpy()
        front_rows.append(frame[in_front & (key < threshold)])
    selected = concat_rows(gathered)
    if by_ucb and len(selected):
        # Pareto ranks of the selected rows need every row that could dominate them.
        floor = float(selected["score"].min())
        chosen = set(selected["id"].astype(str))
        extra = []
        for frame in scored_shards():
            mask = (frame["score"].to_numpy() >= floor) & ~frame["id"].astype(str).isin(chosen).to_numpy()
            extra.append(frame[mask])
        closure = concat_rows([selected, *extra])
    else:
        closure = selected
    values = scorer.matrix(scorer.columns(closure))
    closure = closure.assign(pareto_rank=pareto_ranks(values, maximise))
    selected = closure[closure["_key"] >= threshold] if by_ucb else closure
    order = ranked_order(selected[cfg.sort_by].to_numpy(), selected["pareto_rank"].to_numpy(), selected["id"].astype(str).to_numpy())
    selected = selected.iloc[order].reset_index(drop=True)
    selected["rank"] = np.arange(1, len(selected) + 1, dtype=np.int64)
    top = selected[(selected["rank"] <= cfg.top_k) | selected["id"].astype(str).isin(front_set)]

    rest = concat_rows(front_rows)
    if len(rest):
        rest = rest.assign(pareto_rank=1)
        keys = rest["_key"].to_numpy()
        greater = np.zeros(len(rest), dtype=np.int64)
        for path in files:
            frame = read_shard(path, read_cols)
            if not len(frame):
                continue
            score, ucb, _ = scored(frame)
            k = np.sort(sort_key(ucb if by_ucb else score))
            greater += len(k) - np.searchsorted(k, keys, side="right")
        rest_ids = rest["id"].astype(str).to_numpy()
        ties = np.array([np.sum((keys == kv) & (rest_ids < iv)) for kv, iv in zip(keys, rest_ids)], dtype=np.int64)
        # Rows gathered above the threshold with the same key sort before too (front rows of pareto 1 only).
        rest["rank"] = 1 + greater + ties
        top = concat_rows([top, rest])

    # Crowding distance on the first front (all its rows are known).
    front_frame = top[top["pareto_rank"] == 1].sort_values("_pos")
    fv = scorer.matrix(scorer.columns(front_frame))
    crowd = pd.Series(np.nan, index=top.index, dtype=float)
    if len(front_frame) == len(front_set):
        crowd.loc[front_frame.index] = crowding_distance(fv)
    out = top.sort_values("rank", kind="stable").drop(columns=["_key", "_pos"])
    out["crowding_distance"] = crowd.loc[out.index].to_numpy()
    ordered = [c for c in all_cols if c not in RANKING_COLUMNS]
    tail = ["score", *(["ucb_score"] if kappa is not None else []), "pareto_rank", "crowding_distance"]
    out = out[["rank", *ordered, *tail]].reset_index(drop=True)
    out["rank"] = out["rank"].astype(np.int64)
    out["pareto_rank"] = out["pareto_rank"].astype(np.int64)
    summary = {
        "rows_in": total,
        "rows_kept": total,
        "removed": {},
        "skipped": skipped,
        "objectives": [o.column for o in objectives],
        "streamed": True,
        "front_size": len(front_set),
    }
    return out, summary


# --- the merge --------------------------------------------------------------------------------------


def merge_shards(
    files: Sequence[Path], cfg: RankingConfig, *, rows: int, max_rows_in_memory: int
) -> tuple[pd.DataFrame, dict]:
    """Ranked rows and the ranking summary of the shards `files` (which hold `rows` kept rows in all)."""
    files = list(files)
    if rows <= max_rows_in_memory or not files:
        ranked, summary = _merge_in_memory(files, cfg)
        return ranked, {**summary, "streamed": False}
    return _merge_streaming(files, cfg, union_columns(shard_columns(path) for path in files))


def structures_of(files: Sequence[Path], ids: set[str]) -> dict:
    """Structures (pymatgen) of the rows `ids`, read back from the shards."""
    import json

    from pymatgen.core import Structure

    out = {}
    for path in files:
        if STRUCTURE_COLUMN not in shard_columns(path):
            continue
        frame = read_shard(path, ["id", STRUCTURE_COLUMN])
        for i, text in zip(frame["id"].astype(str), frame[STRUCTURE_COLUMN]):
            if i in ids and isinstance(text, str):
                out[i] = Structure.from_dict(json.loads(text))
    return out


__all__ = ["concat_rows", "merge_shards", "read_shard", "structures_of", "union_columns"]
