"""Candidates: readers (files, folders, globs, databases, formula tables) -> Candidate objects + failures."""

from mi.candidates.base import Candidate, Failure, composition_hash, structure_hash
from mi.candidates.readers import expand_sources, read_candidates, sha256_file

__all__ = [
    "Candidate",
    "Failure",
    "composition_hash",
    "structure_hash",
    "expand_sources",
    "read_candidates",
    "sha256_file",
]
