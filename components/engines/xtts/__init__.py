"""Coqui XTTS v2, split by job. The engine (``engine.XttsEngine``, what the registry names) uses:

    settings.py   languages, sampling settings, defaults (no model needed)
    locate.py     finding, downloading and fingerprinting the weights
    load.py       loading a release folder memory-mapped, without random initialisation
    precision.py  the GPT's packed weights in fp32 / bf16 / int8 / int4 (ort_gpt.py: ONNX Runtime)
    gpt.py        the fast GPT step (no second forward pass)
    text.py       text normalised and split into token chunks
    latents.py    conditioning latents and their cache;  voices.py: references and built-in speakers
    decode.py     one request's GPT decode;  batch.py / continuous.py: rows decoded together
    shared.py     the batch concurrent requests share;  batched.py: many requests in one call
    vocoder.py    HiFiGAN;  stream.py: streamed decode and vocoding
    device.py     torch plumbing (device, seeds, GPU sync, out-of-memory)
    fast.py       the fast path's public names in one place
    synthetic.py  random-weight checkpoints built from coqui's real classes, for the tests

Nothing here imports torch or coqui-tts at module level: the lab imports the engine registry at
start-up and must stay light until the ``xtts`` engine is actually used.
"""
