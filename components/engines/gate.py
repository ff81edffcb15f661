"""Who may use an engine (or its model) now: one holder alone, or any number sharing it.

One class for both places that need it: ``Engines.use`` (requests to one engine queue there
unless the engine is concurrent) and the XTTS engine's model (requests decoding in the shared
batch share it; a solo decode or a precision switch needs it alone).
"""

from __future__ import annotations

import threading
from typing import Callable


class Gate:
    """Any number of shared holders, or one holder alone. A request that needs it alone goes
    before shared requests that arrive after it (so a stream of shared requests cannot starve it).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0            # holders inside now
        self.shared = False       # how the current holders hold it (all of them hold it one way)
        self._waiting_alone = 0   # requests waiting to hold it alone: later shared ones wait behind them

    def acquire(self, shared: bool, waiting: Callable[[], None] | None = None) -> None:
        """Block until this request may hold it (``shared`` or alone). ``waiting`` (if given) is
        called about every 0.5 s while it waits, outside the lock (a progress message)."""
        with self._cond:
            self._waiting_alone += not shared
        try:
            while True:
                with self._cond:
                    if shared:  # beside other shared holders, unless someone waits to be alone
                        may_enter = not self._waiting_alone and (not self.count or self.shared)
                    else:
                        may_enter = not self.count
                    if may_enter:
                        self.count += 1
                        self.shared = shared
                        return
                    self._cond.wait(0.5)
                if waiting is not None:  # outside the lock: a progress callback may take its time
                    waiting()
        finally:
            with self._cond:
                self._waiting_alone -= not shared

    def share(self) -> None:
        """Alone -> shared, with nobody getting in between (after a precision switch)."""
        with self._cond:
            if self.count != 1 or self.shared:
                raise RuntimeError("share() needs the gate held alone by the caller")
            self.shared = True
            self._cond.notify_all()

    def release(self) -> None:
        """Leave (either way of holding)."""
        with self._cond:
            self.count -= 1
            self._cond.notify_all()
