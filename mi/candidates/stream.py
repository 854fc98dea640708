"""Candidates as a stream, one at a time; `read_candidates` is this stream collected into a list.

A screen of millions reads them lazily, file by file (one file is read whole, as its reader does) and record by record from a generator, in fixed-size
chunks. Duplicate ids are found with a set of 16-byte id digests (16 bytes per candidate, not the
candidate), and the first occurrence that a duplicate's message names is looked up afterwards in one more
pass over the sources, only when there are duplicates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from mi.candidates.base import Candidate, Failure
from mi.candidates.readers import expand_sources, iter_file, iter_generated
from mi.config import CandidatesConfig
from mi.errors import InputError

_MERGE_EVERY = 65_536  # pending digests folded into the sorted array this often


def _digest(candidate_id: str) -> bytes:
    return hashlib.blake2b(candidate_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class SeenIds:
    """A set of ids in 16 bytes each: a sorted array of digests plus a small pending set."""

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype="S16")
        self._pending: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._pending)

    def add(self, candidate_id: str) -> bool:
        """Add `candidate_id`; False if it was already there."""
        key = _digest(candidate_id)
        if key in self._pending:
            return False
        if len(self._sorted):
            i = int(np.searchsorted(self._sorted, key))
            if i < len(self._sorted) and self._sorted[i] == key:
                return False
        self._pending.add(key)
        if len(self._pending) >= _MERGE_EVERY:
            merged = np.concatenate([self._sorted, np.array(sorted(self._pending), dtype="S16")])
            merged.sort(kind="stable")
            self._sorted, self._pending = merged, set()
        return True


def _streams(cfg: CandidatesConfig, resolve: Callable[[str], Path], files: Iterable[Path]):
    for path in files:
        yield from iter_file(path, cfg)
    if cfg.generate is not None:
        yield from iter_generated(cfg, resolve)


class CandidateStream:
    """Iterate the configured candidates lazily; `failures` fills as the stream is read.

    Iterating yields only Candidates (the failures go to `failures`, duplicates included, in stream
    order). With ``strict`` the first failure raises InputError. Call `finish()` after the last item: it
    fills in the first occurrence that each duplicate's message names.
    """

    def __init__(
        self,
        cfg: CandidatesConfig,
        resolve: Callable[[str], Path],
        *,
        files: list[Path] | None = None,
        strict: bool = False,
    ) -> None:
        self.cfg = cfg
        self.resolve = resolve
        self.files = expand_sources(cfg.sources, resolve) if files is None else list(files)
        self.strict = strict
        self.failures: list[Failure] = []
        self.read = 0
        self._duplicates: dict[str, list[int]] = {}  # id -> positions in `failures` waiting for a message

    def __iter__(self) -> Iterator[Candidate]:
        seen = SeenIds()
        for item in _streams(self.cfg, self.resolve, self.files):
            if isinstance(item, Candidate) and not seen.add(item.id):
                if self.strict:
                    where = f"{item.source}" + (f", {item.record}" if item.record else "")
                    reason = _duplicate_reason(item.id, self._first_occurrences({item.id})[item.id])
                    raise InputError(f"{where}: {reason} (--strict stops at the first failure)")
                self._duplicates.setdefault(item.id, []).append(len(self.failures))
                self.failures.append(Failure(item.source, item.record, "candidates", "", id=item.id))
                continue
            if isinstance(item, Failure):
                if self.strict:
                    where = f"{item.source}" + (f", {item.record}" if item.record else "")
                    raise InputError(f"{where}: {item.reason} (--strict stops at the first failure)")
                self.failures.append(item)
                continue
            self.read += 1
            yield item

    def finish(self) -> list[Failure]:
        """The failures, with each duplicate's message naming where its id was first read."""
        if self._duplicates:
            first = self._first_occurrences(set(self._duplicates))
            for candidate_id, positions in self._duplicates.items():
                for i in positions:
                    f = self.failures[i]
                    reason = _duplicate_reason(candidate_id, first[candidate_id])
                    self.failures[i] = Failure(f.source, f.record, "candidates", reason, id=candidate_id)
            self._duplicates = {}
        return self.failures

    def _first_occurrences(self, wanted: set[str]) -> dict[str, Candidate]:
        """The first candidate read with each of these ids (one more pass over the sources)."""
        first: dict[str, Candidate] = {}
        for item in _streams(self.cfg, self.resolve, self.files):
            if isinstance(item, Candidate) and item.id in wanted and item.id not in first:
                first[item.id] = item
                if len(first) == len(wanted):
                    break
        return first


def _duplicate_reason(candidate_id: str, origin: Candidate) -> str:
    return f"duplicate id {candidate_id!r}: already read from {origin.source} ({origin.record})"


def chunked(items: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` items (the last one shorter)."""
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["CandidateStream", "SeenIds", "chunked"]
