"""Writing a model folder so that an interrupted write never leaves a folder that looks complete."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def replaced_on_success(path: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `path`; if the block succeeds, it replaces `path` in one rename.
    On an error the staging folder is removed and `path` is left as it was."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
