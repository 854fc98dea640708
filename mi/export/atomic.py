"""Moved to `mi.files` (the lowest layer, so that every stage may write atomically). This name stays only
while work in flight still imports it; new code imports `mi.files`."""

from mi.files import (  # noqa: F401
    atomic_file,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    sha256_file,
    to_jsonable,
)
