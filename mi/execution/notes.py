"""The chunks' notes of a screen as one set: a note that every chunk repeats becomes one note with the counts
added up, so that the manifest and the report stay the same size whatever the number of candidates.

Chunk notes say how many candidates something happened to, in the words of `mi.properties.columns`:
``"<n> candidate(s)"``, per-element counts ``"Ac (25 candidates), Ag (3 candidates)"`` and a closing list of
example ids ``"(mp-1, mp-2, mp-3, mp-4, mp-5 and 95 more)"``. Notes that differ only in those merge: the
counts are summed (exact), the element counts added per element and the examples are the first ids in
chunk order, so the merged note reads as the note of one chunk holding every candidate. Other notes are
kept once each. The result does not depend on the order the chunks are added in.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from mi.properties.columns import IDS_SHOWN, plural

_COUNT = re.compile(r"\b(\d+) (candidates?)\b")
_ELEMENT = r"[A-Z][a-z]{0,2} \(\d+ candidates?\)"
_ELEMENTS = re.compile(rf"{_ELEMENT}(?:, {_ELEMENT})*")
_ELEMENT_ITEM = re.compile(r"([A-Z][a-z]{0,2}) \((\d+) candidates?\)")
_IDS = re.compile(r" \(([^()]*)\)$")
_MORE = re.compile(r"^(.*) and (\d+) more$")
_COUNT_MARK, _ELEMENTS_MARK = "\x00n", "\x00e"


@dataclass
class _Merged:
    first: tuple[int, int]  # (chunk index, place in the chunk's notes) of its first appearance
    counts: list[int]
    always_plural: list[bool]  # "1 candidates": the note's author writes the plural whatever the count
    elements: list[Counter]
    examples: list[tuple[int, list[str]]] | None  # (chunk index, its shown ids), the first IDS_SHOWN kept
    parts: list[str] = field(default_factory=list)  # the text around the counts


def _split(note: str, with_ids: bool):
    """(template parts, counts, plural words, element counters, shown ids or None) of `note`; None when it
    has no count."""
    ids = None
    body = note
    if with_ids and (m := _IDS.search(note)):
        text, more = m.group(1), 0
        if tail := _MORE.match(text):
            text, more = tail.group(1), int(tail.group(2))
        ids, body = (text.split(", "), more), note[: m.start()]
    elements = [Counter({e: int(n) for e, n in _ELEMENT_ITEM.findall(run)}) for run in _ELEMENTS.findall(body)]
    body = _ELEMENTS.sub(_ELEMENTS_MARK, body)
    counts = [(int(n), word) for n, word in _COUNT.findall(body)]
    if not counts and not elements:
        return None
    if ids is not None:
        shown, more = ids
        # the closing parentheses are example ids only if they add up to the note's first count
        if not counts or len(shown) + more != counts[0][0] or len(shown) > IDS_SHOWN or (more and len(shown) < IDS_SHOWN):
            return _split(note, with_ids=False)
        ids = shown
    parts = re.split(f"({_COUNT_MARK}|{_ELEMENTS_MARK})", _COUNT.sub(_COUNT_MARK, body))
    return parts, counts, elements, ids


class NoteMerger:
    """Notes of numbered chunks, added in any order; `notes` gives them merged, in chunk order."""

    def __init__(self) -> None:
        self._merged: dict[tuple, _Merged] = {}
        self._plain: dict[str, tuple[int, int]] = {}

    def add(self, index: int, notes: Iterable[str]) -> None:
        for place, note in enumerate(notes):
            split = _split(note, with_ids=True)
            if split is None:
                self._plain[note] = min(self._plain.get(note, (index, place)), (index, place))
                continue
            parts, counts, elements, ids = split
            key = (tuple(parts), ids is not None)
            entry = self._merged.get(key)
            if entry is None:
                self._merged[key] = _Merged(
                    (index, place), [n for n, _ in counts], [n == 1 and w == "candidates" for n, w in counts],
                    elements, [(index, ids)] if ids is not None else None, parts,
                )
                continue
            entry.first = min(entry.first, (index, place))
            entry.counts = [a + n for a, (n, _) in zip(entry.counts, counts)]
            entry.always_plural = [a or (n == 1 and w == "candidates") for a, (n, w) in zip(entry.always_plural, counts)]
            entry.elements = [a + b for a, b in zip(entry.elements, elements)]
            if entry.examples is not None:
                entry.examples = _first_ids([*entry.examples, (index, ids)])

    def notes(self) -> list[str]:
        placed = [(first, note) for note, first in self._plain.items()]
        placed += [(entry.first, _render(entry)) for entry in self._merged.values()]
        return [note for _, note in sorted(placed, key=lambda p: p[0])]


def _first_ids(examples: list[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
    """The chunks' examples in chunk order, as far as they reach IDS_SHOWN ids."""
    kept, shown = [], 0
    for index, ids in sorted(examples, key=lambda e: e[0]):
        if shown >= IDS_SHOWN:
            break
        kept.append((index, ids))
        shown += len(ids)
    return kept


def _render(entry: _Merged) -> str:
    counts, elements = iter(zip(entry.counts, entry.always_plural)), iter(entry.elements)
    out = []
    for part in entry.parts:
        if part == _COUNT_MARK:
            n, always = next(counts)
            out.append(f"{n} candidates" if always else plural(n))
        elif part == _ELEMENTS_MARK:
            out.append(", ".join(f"{e} ({plural(n)})" for e, n in sorted(next(elements).items())))
        else:
            out.append(part)
    if entry.examples is not None:
        ids = [i for _, chunk_ids in entry.examples for i in chunk_ids][:IDS_SHOWN]
        more = entry.counts[0] - len(ids)
        out.append(f" ({', '.join(ids)}{f' and {more} more' if more > 0 else ''})")
    return "".join(out)


def merge_notes(notes_by_chunk: Iterable[tuple[int, Iterable[str]]]) -> list[str]:
    """The merged notes of ``(chunk index, notes)`` pairs."""
    merger = NoteMerger()
    for index, notes in notes_by_chunk:
        merger.add(index, notes)
    return merger.notes()


__all__ = ["NoteMerger", "merge_notes"]
