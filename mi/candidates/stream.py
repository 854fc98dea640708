"""Candidates as a stream, one at a time; `read_candidates` is this stream collected into a list.

A screen of millions reads them lazily, file by file (one file is read whole, as its reader does) and record by record from a generator, in fixed-size
chunks. Duplicate ids are found with a set of 16-byte id digests (16 bytes per candidate, not the
candidate), and the first occurrence that a duplicate's message names is looked up afterwards in one more
pass over the sources, only when there are duplicates.

The stream also keeps the read summary: files seen, read (at least one candidate) and refused (none), the
refused ones counted by reason, and the files of source folders that are not candidate files.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from mi.candidates.base import Candidate, Failure
from mi.candidates.readers import display_path, expand_sources, iter_file, iter_generated
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
    """(file or None for generated candidates, Candidate | Failure)."""
    for path in files:
        for item in iter_file(path, cfg):
            yield path, item
    if cfg.generate is not None:
        for item in iter_generated(cfg, resolve):
            yield None, item


MAX_NOTED_FILES = 5  # skipped files named in a note; the summary counts all


def reason_kind(reason: str) -> str:
    """A failure reason without its particulars (offsets, values, names): what the read summary counts by."""
    head = re.split(r"[:(]", reason, maxsplit=1)[0].strip()
    return re.sub(r"\d+", "N", head) or "unreadable"


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
        self.skipped_files: list[Path] = []
        self.files = expand_sources(cfg.sources, resolve, self.skipped_files) if files is None else list(files)
        self.strict = strict
        self.failures: list[Failure] = []
        self.notes: list[str] = []
        self.read = 0
        self.files_read = 0
        self.files_refused: dict[str, int] = {}
        self._duplicates: dict[str, list[int]] = {}  # id -> positions in `failures` waiting for a message

    def _count_file(self, path: Path | None, candidates: int, first_failure: Failure | None) -> None:
        if path is None:
            return
        if candidates:
            self.files_read += 1
        else:
            kind = reason_kind(first_failure.reason) if first_failure else "no records"
            self.files_refused[kind] = self.files_refused.get(kind, 0) + 1

    def __iter__(self) -> Iterator[Candidate]:
        seen = SeenIds()
        current, n_candidates, first_failure = None, 0, None
        for path, item in _streams(self.cfg, self.resolve, self.files):
            if path != current:
                self._count_file(current, n_candidates, first_failure)
                current, n_candidates, first_failure = path, 0, None
            if isinstance(item, Candidate):
                n_candidates += 1
                self.notes.extend(item.meta.get("notes", ()))
            elif first_failure is None:
                first_failure = item
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
        self._count_file(current, n_candidates, first_failure)
        self.notes = [*self.skipped_note(), *self.notes]

    def summary(self) -> dict:
        """The read summary for the manifest's counts (valid once the stream has been read)."""
        return {
            "files_seen": len(self.files) + len(self.skipped_files),
            "files_read": self.files_read,
            "files_refused": dict(sorted(self.files_refused.items())),
            "files_skipped_not_candidates": len(self.skipped_files),
        }

    def summary_line(self) -> str:
        """The read summary in one line, for the log."""
        refused = sum(self.files_refused.values())
        by_reason = "; ".join(f"{n} {kind}" for kind, n in sorted(self.files_refused.items()))
        return (
            f"read {self.read} candidates: {len(self.files) + len(self.skipped_files)} files seen, "
            f"{self.files_read} read, {refused} refused{f' ({by_reason})' if by_reason else ''}, "
            f"{len(self.skipped_files)} not candidate files; {len(self.failures)} read failures"
        )

    def skipped_note(self) -> list[str]:
        """A note naming the files of source folders that were not read (not candidate files)."""
        if not self.skipped_files:
            return []
        names = ", ".join(display_path(p) for p in self.skipped_files[:MAX_NOTED_FILES])
        more = len(self.skipped_files) - MAX_NOTED_FILES
        return [
            f"{len(self.skipped_files)} files in source folders are not candidate files and were not read: "
            f"{names}{f' and {more} more' if more > 0 else ''}"
        ]

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
        for _, item in _streams(self.cfg, self.resolve, self.files):
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


def read_candidates(
    cfg: CandidatesConfig,
    resolve: Callable[[str], Path],
    *,
    strict: bool = False,
    files: list[Path] | None = None,
) -> tuple[list[Candidate], list[Failure]]:
    """All candidates of the configured sources, and the failures. Duplicate ids are failures too.

    With ``strict``, the first failure raises InputError (the CLI exits non-zero).
    """
    stream = CandidateStream(cfg, resolve, files=files, strict=strict)
    candidates = list(stream)
    return candidates, stream.finish()


__all__ = ["CandidateStream", "SeenIds", "chunked", "read_candidates", "reason_kind"]
