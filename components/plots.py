"""Pure plot functions: data in, matplotlib Figure out (Agg backend). Saving is the caller's job."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display here, and figures must render in server threads

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def close(fig) -> None:
    plt.close(fig)


def figures_for(experiment: str, df: pd.DataFrame) -> dict[str, "matplotlib.figure.Figure"]:
    """The summary figures of one experiment's table (name -> Figure)."""
    return {}
