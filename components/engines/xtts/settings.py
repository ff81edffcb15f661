"""XTTS's settings and facts that need no model: its languages, its sampling settings, defaults.

Light (no torch): the engine registry, the UI and the XTTS modules read these without loading
anything; the engine (``engine.py``) and the decoders import them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.core import PRECISIONS
from components.engines.settings import EngineSettings, setting

# The 17 languages XTTS v2 speaks, in the order its documentation lists them.
LANGUAGES: tuple[str, ...] = (
    "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru",
    "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi",
)

DEFAULT_CACHE_DIR = "~/.cache/xtts-lab"
STREAM_CHUNK_TOKENS = 40       # GPT tokens per streamed chunk (~1.9 s of audio; coqui's default is 20,
                               # fewer, bigger chunks keep the fast path's per-chunk context cheap)


@dataclass(frozen=True)
class XttsSettings(EngineSettings):
    """XTTS's sampling settings (its GPT sampler), declared with their ranges.

    Defaults are XTTS v2's ``config.json``; they are logged with every row (named columns as well
    as the ``settings`` JSON) because its documentation, code defaults and config disagree.
    """

    engine_name = "xtts"

    temperature: float = setting(0.75, "softmax temperature of the GPT sampler", min=0.05, max=5.0, step=0.05,
                                 column="temperature")
    top_k: int = setting(50, "keep the k most likely audio tokens (1 = greedy)", min=1, max=1000, step=1,
                         column="top_k")
    top_p: float = setting(0.85, "nucleus sampling mass", min=0.01, max=1.0, step=0.01, column="top_p")
    repetition_penalty: float = setting(10.0, "> 1 discourages repeated audio tokens", min=1.0, max=50.0, step=0.5,
                                        column="repetition_penalty")
    length_penalty: float = setting(1.0, "beam-search length penalty (kept for parity with coqui)", min=0.1,
                                    max=10.0, step=0.1, column="length_penalty")
    enable_text_splitting: bool = setting(True, "split long text at sentence ends before the token limit",
                                          column="text_splitting", label="split text at sentence ends")
    # The choices are the engine's capabilities.precisions (below); None = the lab's --precision.
    precision: str | None = setting(None, "GPT precision; empty = the lab's --precision. fp32 is exact; bf16, "
                                          "int8 and int4 are faster", choices=(None, *PRECISIONS))


# The decoders' name for the same settings (coqui calls them generation settings).
GenerationSettings = XttsSettings
