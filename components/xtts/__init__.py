"""XTTS v2 support pieces: finding weights, text handling, speaker-latent cache, test checkpoints.

Nothing here imports torch or coqui-tts at module level: the lab imports the engine registry at
start-up and must stay light until the ``xtts`` engine is actually used.
"""
