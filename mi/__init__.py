"""mi: materials informatics for battery materials.

Stages, one subpackage each: candidates -> features -> models (+ exact properties) -> ranking -> export.
"""

__version__ = "0.1.0"
