"""Finding XTTS v2 weights, and downloading them once the user accepts the Coqui Public Model License.

Search order (the first that applies wins):

1. ``--xtts-dir DIR`` (``EngineConfig.xtts_dir``), then the ``XTTS_MODEL_DIR`` environment
   variable: a folder in the release layout. A folder named explicitly but incomplete is reported
   as such; the lab does not silently fall back to another copy.
2. coqui-tts's own model cache: the Hugging Face snapshot coqui-tts 0.28 downloads
   (``tts-hub/XTTS-v2``), then the folder older coqui/TTS releases downloaded into
   (``<data dir>/tts/tts_models--multilingual--multi-dataset--xtts_v2``).
3. Nothing found: with the CPML accepted (``--agree-cpml`` or the UI checkbox) ``download()`` runs
   coqui's own downloader; without it, :func:`unavailable_reason` says how to get the weights.

Everything here is light (no torch, no coqui import) except :func:`download`.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from components.core import EngineUnavailable, LabError, Progress, no_progress

REQUIRED_FILES: tuple[str, ...] = ("config.json", "model.pth", "vocab.json", "speakers_xtts.pth")
COQUI_MODEL_NAME = "tts_models/multilingual/multi-dataset/xtts_v2"
COQUI_MODEL_FOLDER = "tts_models--multilingual--multi-dataset--xtts_v2"
HF_REPO_FOLDER = "models--tts-hub--XTTS-v2"
CPML_URL = "https://tts-hub.github.io/cpml"  # where coqui-tts 0.28 points for the licence text; the
# one CPML link of the lab (banner, checkbox hint, messages; the README uses the same address)
ENV_VAR = "XTTS_MODEL_DIR"

HOW_TO_GET = (
    "give --xtts-dir DIR or set XTTS_MODEL_DIR to a folder with config.json, model.pth, vocab.json "
    "and speakers_xtts.pth; or accept the Coqui Public Model License (--agree-cpml, or the "
    f"'I agree to the CPML' box in the UI; {CPML_URL}) to download XTTS v2 (about 1.9 GB) into "
    "coqui-tts's cache"
)


@dataclass(frozen=True)
class Weights:
    """Where the weights are and how they were found."""

    path: Path
    source: str   # "--xtts-dir" | "XTTS_MODEL_DIR" | "coqui cache" | "download"


def missing_files(folder: Path) -> list[str]:
    """Release-layout files absent from ``folder`` (all of them if it is not a folder)."""
    if not folder.is_dir():
        return list(REQUIRED_FILES)
    return [name for name in REQUIRED_FILES if not (folder / name).is_file()]


def coqui_data_dir() -> Path:
    """coqui-tts's model folder: ``trainer.io.get_user_data_dir("tts")``, recomputed here because
    importing ``trainer`` imports torch, and this module must stay light."""
    if os.environ.get("TTS_HOME"):
        base = Path(os.environ["TTS_HOME"]).expanduser()
    elif os.environ.get("XDG_DATA_HOME"):
        base = Path(os.environ["XDG_DATA_HOME"]).expanduser()
    elif sys.platform == "darwin":
        base = Path("~/Library/Application Support/").expanduser()
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", "~")).expanduser()
    else:
        base = Path.home() / ".local/share"
    return base / "tts"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (not at import time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def cache_candidates() -> list[Path]:
    """Folders of coqui-tts's cache that may hold a complete download, newest snapshot first."""
    found: list[Path] = []
    snapshots = hf_hub_cache() / HF_REPO_FOLDER / "snapshots"
    if snapshots.is_dir():
        found += sorted((p for p in snapshots.iterdir() if p.is_dir()),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    found.append(coqui_data_dir() / COQUI_MODEL_FOLDER)
    return found


def find_weights(xtts_dir: str | os.PathLike | None = None) -> Weights | None:
    """Locate complete weights without downloading; None if there are none.

    Raises EngineUnavailable when a folder was named explicitly (argument or XTTS_MODEL_DIR) but
    lacks release files, so the user learns what is wrong with the folder they gave.
    """
    for value, source in ((xtts_dir, "--xtts-dir"), (os.environ.get(ENV_VAR), ENV_VAR)):
        if value:
            folder = Path(value).expanduser()
            missing = missing_files(folder)
            if missing:
                what = "does not exist" if not folder.exists() else f"lacks {', '.join(missing)}"
                raise EngineUnavailable(f"XTTS v2 folder {str(folder)!r} ({source}) {what}; {HOW_TO_GET}")
            return Weights(folder.resolve(), source)
    for folder in cache_candidates():
        if not missing_files(folder):
            return Weights(folder.resolve(), "coqui cache")
    return None


def unavailable_reason(xtts_dir: str | None, agree_cpml: bool) -> str | None:
    """Why XTTS cannot run (None if weights are present or may be downloaded). Light and quick."""
    try:
        if find_weights(xtts_dir) is not None:
            return None
    except EngineUnavailable as e:
        return str(e)
    if agree_cpml:
        return None  # load() will download
    return f"XTTS v2 weights not found; {HOW_TO_GET}"


def download(progress: Progress = no_progress) -> Weights:
    """Download XTTS v2 with coqui-tts's own downloader; call only after the user accepted the CPML.

    Records the acceptance where coqui looks for it (``tos_agreed.txt``), as coqui's own prompt
    does when answered "y". Any failure (no network, hub unreachable, disk full) becomes
    EngineUnavailable with what to do instead.
    """
    folder = coqui_data_dir() / COQUI_MODEL_FOLDER
    progress(0.0, desc="downloading XTTS v2 (about 1.9 GB) into coqui-tts's cache")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tos_agreed.txt").write_text(
            "I have read, understood and agreed to the Terms and Conditions.", encoding="utf-8")
        from TTS.utils.manage import ModelManager

        model_path, _config_path, _item = ModelManager(progress_bar=False).download_model(COQUI_MODEL_NAME)
    except Exception as e:  # noqa: BLE001 - every failure here means "no weights"; say why
        raise EngineUnavailable(
            f"downloading XTTS v2 failed ({type(e).__name__}: {str(e).strip()[:200]}); check the "
            f"network connection, or download the release files yourself and give --xtts-dir DIR "
            f"(or XTTS_MODEL_DIR) pointing at them"
        ) from e
    model_dir = Path(model_path)
    model_dir = model_dir if model_dir.is_dir() else model_dir.parent
    missing = missing_files(model_dir)
    if missing:
        raise EngineUnavailable(f"the XTTS v2 download in {str(model_dir)!r} lacks {', '.join(missing)}; "
                                f"delete that folder and try again, or {HOW_TO_GET}")
    return Weights(model_dir.resolve(), "download")


def release_config(weights: Weights | None, xtts_dir: str | None) -> dict:
    """``config.json`` of ``weights`` (else of the weights found for ``xtts_dir``); {} when none."""
    import json

    try:
        weights = weights or find_weights(xtts_dir)
    except LabError:
        weights = None
    if weights is None:
        return {}
    return json.loads((weights.path / "config.json").read_text())


def speaker_names(xtts_dir: str | None) -> list[str]:
    """Built-in voices of the found weights' speakers_xtts.pth, the file's first voice first
    (reads the file with torch, without loading the model); [] when there is none."""
    try:
        weights = find_weights(xtts_dir)
    except LabError:
        return []
    if weights is None or not (weights.path / "speakers_xtts.pth").is_file():
        return []
    import torch

    return list(torch.load(weights.path / "speakers_xtts.pth", map_location="cpu", weights_only=True))


def fingerprint(folder: Path) -> str:
    """A short identity of a checkpoint for cache keys: hashes config, vocab and samples of model.pth.

    Reading three 1 MiB windows of model.pth instead of all 1.9 GB keeps it instant, and random
    or trained weights differ in every window, so two different checkpoints never collide.
    """
    h = hashlib.sha256()
    for name in ("config.json", "vocab.json"):
        h.update((folder / name).read_bytes())
    model = folder / "model.pth"
    size = model.stat().st_size
    h.update(str(size).encode())
    window = 1 << 20
    with open(model, "rb") as f:
        for offset in (0, max(0, size // 2 - window // 2), max(0, size - window)):
            f.seek(offset)
            h.update(f.read(window))
    return h.hexdigest()[:16]
