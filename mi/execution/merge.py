"""Rank the rows of a screen's Parquet shards: all at once when they fit, else in passes over the shards.

**In memory** (up to ``execution.max_rows_in_memory`` kept rows): the table `mi.ranking.rank` makes of the
shards' concatenation, exactly as a single-table screen, built without holding the rows twice (the ranking
from the columns it reads, then each shard's rows placed at their ranks); ``ranked.csv`` holds every row.

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
from mi.properties import demand
from mi.ranking import apply_constraints, rank, usable_objectives
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
    # which columns of each frame hold a value: one call per frame, not one per column (100 shards x 140
    # columns were seconds of a merge)
    valued = [dict(zip(f.columns, f.notna().any().to_numpy())) if f.columns.is_unique else None for f in frames]
    kinds: dict[str, set[str]] = {}
    for f, has in zip(frames, valued):
        for c in f.columns:
            if (has[c] if has is not None else f[c].notna().any()):
                kinds.setdefault(c, set()).add(f[c].dtype.kind)
    aligned = []
    for f, has in zip(frames, valued):
        copied = False  # a frame is copied only when a column of it changes type (memory: frames are wide)
        for c in f.columns:
            k = kinds.get(c, set())
            numeric = bool(k) and k <= {"f", "b", "i", "u"}
            empty = not (has[c] if has is not None else f[c].notna().any())
            if numeric and ("f" in k or len(k) > 1) and (f[c].dtype.kind in "bO" or empty):
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
    """`rank` of the shards' concatenation (`concat_rows`), without the whole table held twice.

    Pass 1 reads each shard for the columns ranking reads and for its probe: the few rows holding the
    first value of each column, so the probes' concatenation has the columns, order and types of the
    whole table. `rank` orders the narrow table. Pass 2 reads each shard again, aligns its types with the
    probes (`concat_rows` of the probes and the shard: what the whole concatenation would have made of
    its rows) and places its rows at their ranks, column by column: one ranked table and one shard in
    memory at the peak, where concatenating and then ranking held the table two or three times.
    """
    columns = {path: [c for c in shard_columns(path) if c != STRUCTURE_COLUMN] for path in files}
    names = set().union(*columns.values()) if columns else set()
    wanted = _ranking_inputs(cfg, names)
    probes, narrow = [], []
    for path in files:
        frame = read_shard(path, columns[path])
        if len(frame):
            probes.append(_probe(frame))
            narrow.append(frame[[c for c in frame.columns if c in wanted]].copy())
        del frame
    if len(probes) < 2:  # one shard with rows (or none): it is the table
        return rank(_shards_table(files), cfg)  # no name here holds the table: `rank` frees it after its first copy
    template = concat_rows(probes)
    del probes
    # errors (a missing or non-numeric column) name the whole table's columns, as ranking it would
    usable_objectives(template, cfg)
    apply_constraints(template, cfg.constraints)
    narrow_table = concat_rows([_aligned(template[[c for c in template.columns if c in wanted]], f) for f in narrow])
    del narrow
    rows = len(narrow_table)
    narrow_table["_row"] = np.arange(rows)
    order, summary = rank(narrow_table, cfg)
    del narrow_table
    place = np.full(rows, -1, dtype=np.int64)  # row of the concatenation -> its place in the ranking (-1: removed)
    place[order["_row"].to_numpy()] = np.arange(len(order))
    kept = [c for c in template.columns if c not in RANKING_COLUMNS]
    table: dict[str, object] = {"rank": order["rank"].to_numpy()}
    table.update((c, _empty(template[c], len(order))) for c in kept)
    offset = 0
    for path in files:
        frame = read_shard(path, columns[path])
        if not len(frame):
            continue
        at = place[offset : offset + len(frame)]
        offset += len(frame)
        ranked = at >= 0  # all but rows a constraint removes (the chunks have removed them already)
        aligned = _aligned_columns(template, frame)
        for c in kept:
            column = aligned[c]
            values = column.array if isinstance(table[c], pd.api.extensions.ExtensionArray) else column.to_numpy()
            table[c][at[ranked]] = values[ranked]
        del frame, aligned
    for c in ("score", "ucb_score", "pareto_rank", "crowding_distance"):
        if c in order.columns:
            table[c] = order[c].to_numpy()
    # copy=False: one block per column, no consolidated copy of the table
    return pd.DataFrame(table, copy=False), summary


def _ranking_inputs(cfg: RankingConfig, names: set[str]) -> set[str]:
    """The columns `rank` reads: ids, objectives and constraints with their std and in-domain flags."""
    base = [*(o.column for o in cfg.objectives), *(c.column for c in cfg.constraints)]
    std = [*(f"{c}_std" for c in base), *(c.std for c in cfg.constraints if c.probability is not None)]
    wanted = {"id", *base, *std}
    return {c for c in (*wanted, *flag_columns(list(wanted), sorted(names))) if c in names}


def _probe(frame: pd.DataFrame) -> pd.DataFrame:
    """The few rows of `frame` holding the first value of each column (a column is missing in all of
    them only where it has no value): the types that a concatenation of `frame` with other frames gives
    are those it gives with these rows."""
    first = frame.notna().to_numpy().argmax(axis=0)
    return frame.take(np.unique(first))


def _aligned(template: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame`'s rows as the concatenation of every shard holds them: its columns, order and types."""
    return pd.DataFrame(_aligned_columns(template, frame), copy=False)


def _aligned_columns(template: pd.DataFrame, frame: pd.DataFrame) -> dict[str, pd.Series]:
    """The columns of `_aligned`. One already of the concatenation's type is the frame's own
    (`concat_rows` changes none of its values); the others, missing ones included, are what `concat_rows`
    of the probes and the shard makes of them."""
    frame = frame.reset_index(drop=True)
    columns = dict(frame.items())
    types = dict(template.dtypes.items())
    rest = [c for c in template.columns if c not in columns or columns[c].dtype != types[c]]
    if rest:
        fixed = concat_rows([template[rest], frame[[c for c in rest if c in columns]]])
        columns.update(fixed.iloc[len(template) :].reset_index(drop=True).items())
    return {c: columns[c] for c in template.columns}


def _empty(column: pd.Series, n: int):
    """An array of `n` missing values of the column's type, to be filled."""
    if isinstance(column.dtype, np.dtype):
        return np.empty(n, dtype=column.dtype) if column.dtype != object else np.full(n, None, dtype=object)
    return column.array.take(np.full(n, -1), allow_fill=True)


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
        summary = {**summary, "streamed": False}
    else:
        ranked, summary = _merge_streaming(files, cfg, union_columns(shard_columns(path) for path in files))
    return demand.complete_merged(ranked), summary


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
