"""Export: the run directory (ranked table, top CIFs, failures, config, manifest), written atomically."""

from __future__ import annotations

from mi.export.atomic import (
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    to_jsonable,
)
from mi.export.rundir import (
    build_manifest,
    column_order,
    format_top_table,
    git_commit,
    looks_like_run_dir,
    make_run_id,
    new_run_dir,
    package_versions,
    prepare_out_dir,
    safe_file_stem,
    sha256_file,
    utc_now,
    write_config,
    write_failures,
    write_manifest,
    write_ranked,
    write_top_cifs,
)

__all__ = [
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_text",
    "build_manifest",
    "column_order",
    "format_top_table",
    "git_commit",
    "looks_like_run_dir",
    "make_run_id",
    "new_run_dir",
    "package_versions",
    "prepare_out_dir",
    "safe_file_stem",
    "sha256_file",
    "to_jsonable",
    "utc_now",
    "write_config",
    "write_failures",
    "write_manifest",
    "write_ranked",
    "write_top_cifs",
]
