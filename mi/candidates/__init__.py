"""Candidates: readers (files, folders, globs, databases, formula tables) -> Candidate objects + failures."""

from mi.candidates.base import Candidate, Failure, composition_hash, structure_hash
from mi.candidates.readers import expand_sources
from mi.candidates.stream import read_candidates
from mi.files import sha256_file  # re-exported for work in flight (mi.refine); new code imports mi.files

__all__ = [
    "Candidate",
    "Failure",
    "composition_hash",
    "structure_hash",
    "expand_sources",
    "read_candidates",
    "sha256_file",
]
