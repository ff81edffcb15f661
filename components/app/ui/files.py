"""Files gradio may serve: a results folder can live anywhere (``--out``), gradio serves only what
is under the working or temp directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def servable(path: str | os.PathLike | None) -> str | None:
    """``path`` itself if gradio may serve it (under the working or temp directory), else a copy
    in the temp directory: a results folder given with ``--out`` can live anywhere, and the
    app cannot set ``launch(allowed_paths=...)`` itself when it is mounted by someone else."""
    if path is None:
        return None
    p = Path(path).resolve()
    for root in (Path.cwd().resolve(), Path(tempfile.gettempdir()).resolve()):
        if p.is_relative_to(root):
            return str(p)
    copy = Path(tempfile.gettempdir()) / "xtts-lab-served" / p.parent.parent.name / p.parent.name / p.name
    if not copy.exists() or copy.stat().st_mtime < p.stat().st_mtime:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, copy)
    return str(copy)
