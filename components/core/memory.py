"""Peak memory while a block of code runs: resident memory of this process and its children, and
CUDA memory when torch is already in use (measuring never imports torch)."""

from __future__ import annotations

import sys
import threading
from typing import Any

MEMORY_SAMPLE_S = 0.02  # seconds between resident-memory samples while a synthesis runs


class PeakMemory:
    """Peak resident memory of this process plus its children (e.g. the MeloTTS worker) while the
    ``with`` block runs, sampled every MEMORY_SAMPLE_S, and peak CUDA memory allocated by torch when
    ``device`` is a CUDA device. RSS counts shared pages too: compare engines, not absolute cost."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.peak_rss_mb: float | None = None
        self.start_rss_mb: float | None = None  # before the block: peak minus this is what it added
        self.peak_vram_mb: float | None = None
        self._stop = threading.Event()

    def _rss(self) -> int:
        total = self._proc.memory_info().rss
        for child in self._proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except Exception:  # noqa: BLE001 - a child may exit between listing and reading
                pass
        return total

    def _watch(self) -> None:
        while not self._stop.wait(MEMORY_SAMPLE_S):
            self._peak = max(self._peak, self._rss())

    def _cuda(self):
        # Only when the engine already imported torch: measuring must never import it.
        torch = sys.modules.get("torch")
        if torch is not None and str(self.device).startswith("cuda") and torch.cuda.is_available():
            return torch
        return None

    def __enter__(self) -> "PeakMemory":
        import psutil

        self._proc = psutil.Process()
        torch = self._cuda()
        if torch is not None:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._peak = self._rss()
        self.start_rss_mb = self._peak / 2**20
        self._thread = threading.Thread(target=self._watch, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        torch = self._cuda()
        if torch is not None:
            torch.cuda.synchronize(self.device)
            self.peak_vram_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        self._stop.set()
        self._thread.join()
        self.peak_rss_mb = max(self._peak, self._rss()) / 2**20
