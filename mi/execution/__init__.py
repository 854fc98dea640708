"""Running a screen in chunks: backends (local, Ray), Parquet shards, and the merge that ranks them.

A screen streams its candidates in chunks of ``execution.chunk_size``; each chunk goes through features,
the surrogate, the properties and the constraints (`mi.execution.chunk`) on a backend (`local`: this
process or a process pool; `ray`: Ray tasks), and its kept rows land in an atomically written Parquet
shard under ``<run>/shards/``. The ranking is then merged from the shards (`mi.execution.merge`).
"""

from mi.execution.chunk import ChunkResult, chunk_key, process_chunk

__all__ = ["ChunkResult", "chunk_key", "process_chunk"]
