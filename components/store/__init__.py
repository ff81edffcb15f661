"""Store layer: runs, rows and judge columns on disk (results, index), voices, plots.

Above engines and judges, below experiments and the app."""
