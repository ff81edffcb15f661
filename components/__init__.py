"""Reusable pieces of XTTS Lab: engines, audio helpers, results storage, plots and the UI."""
