"""Generate XTTS v2 checkpoints with random weights, in the release layout, from coqui's own classes.

The real weights cannot be downloaded on the machines that build and test the lab, so tests and
the speed benchmark run on checkpoints made here instead. They go through exactly the code a
user's real download goes through (``XttsConfig.load_json`` + ``Xtts.load_checkpoint``), because
they are written by the same classes in the same layout:

    config.json        coqui ``XttsConfig`` (model_args sized by the preset)
    model.pth          ``{"model": state_dict, "config": config dict}`` as coqui saves it
    vocab.json         a BPE tokenizer trained with ``tokenizers``; same special tokens as the release
    speakers_xtts.pth  name -> {"gpt_cond_latent", "speaker_embedding"}, computed by the model itself

Presets:
    tiny  a 2-layer, 64-channel GPT and the real (fixed-size) HiFiGAN + speaker encoder: ~90 MB,
          built in seconds. Generation is capped at 29 audio tokens per sentence (~1.35 s of audio)
          and the stop token is disabled, so every sentence yields exactly that many tokens: test
          lengths are then predictable instead of depending on when random weights stop.
    full  the real v2 architecture (30 layers, 1024 channels, 6681 text tokens, ~456M parameters)
          with random weights, for speed measurements. Random weights never emit the stop token,
          so generation runs to the configured maximum unless the caller pins the token count.

Only real weights can show quality, intelligibility or speaker similarity; these checkpoints
produce noise-like audio of the right shape, length and sample rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

# Every language XTTS v2 speaks gets a "[lang]" token, as in the release vocab.json.
LANGUAGE_TOKENS: tuple[str, ...] = (
    "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru",
    "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi",
)
# Order matters: coqui looks up [START] and [STOP] by name, and ids 0..3 mirror the release.
SPECIAL_TOKENS: tuple[str, ...] = ("[STOP]", "[UNK]", "[SPACE]", "[START]")

DEFAULT_SPEAKERS: tuple[str, str] = ("Claribel Dervla", "Ana Florence")  # two real v2 voice names

REQUIRED_FILES: tuple[str, ...] = ("config.json", "model.pth", "vocab.json", "speakers_xtts.pth")


@dataclass(frozen=True)
class Preset:
    gpt_layers: int
    gpt_n_model_channels: int
    gpt_n_heads: int
    gpt_max_audio_tokens: int      # generation stops after this minus 3 audio tokens
    vocab_size: int                # text tokens (the release has 6681)
    disable_stop_token: bool       # make every sentence run to the maximum length


PRESETS: dict[str, Preset] = {
    "tiny": Preset(gpt_layers=2, gpt_n_model_channels=64, gpt_n_heads=4,
                   gpt_max_audio_tokens=32, vocab_size=512, disable_stop_token=True),
    "full": Preset(gpt_layers=30, gpt_n_model_channels=1024, gpt_n_heads=16,
                   gpt_max_audio_tokens=605, vocab_size=6681, disable_stop_token=False),
}

# Text the BPE tokenizer is trained on: what XTTS's cleaners hand the tokenizer (lower-case Latin,
# romaji for ja, pinyin with tone digits for zh, romanised hangul for ko, native script otherwise).
_CORPUS: tuple[str, ...] = (
    "the quick brown fox jumps over the lazy dog. hello world, how are you today?",
    "this is a test of the speech synthesis system with numbers like one hundred and twenty three.",
    "el veloz murcielago hindu comia feliz cardillo y kiwi. la cigüeña tocaba el saxofon.",
    "portez ce vieux whisky au juge blond qui fume. où est la gare? ça va très bien.",
    "victor jagt zwölf boxkämpfer quer über den großen sylter deich. grüß gott!",
    "quel vituperabile xenofobo zelante assaggia il whisky ed esclama alleluja.",
    "à noite, vovô kowalsky vê o ímã cair no pé do pinguim queixoso e vovó põe açúcar.",
    "pchnąć w tę łódź jeża lub ośm skrzyń fig. zażółć gęślą jaźń.",
    "pijamalı hasta yağız şoföre çabucak güvendi. öğle yemeği çok güzeldi.",
    "съешь же ещё этих мягких французских булок, да выпей чаю.",
    "pa's wijze lynx bezag vroom het fikse aquaduct. goedemorgen allemaal.",
    "příliš žluťoučký kůň úpěl ďábelské ódy. dobrý den.",
    "صِف خَلقَ خَودِ كَمِثلِ الشَمسِ إِذ بَزَغَت يَحظى الضَجيعُ بِها نَجلاءَ مِعطارِ",
    "ni3 hao3 shi4 jie4. wo3 men5 jin1 tian1 qu4 xue2 xiao4. zhong1 guo2 ren2.",
    "árvíztűrő tükörfúrógép. jó napot kívánok!",
    "annyeonghaseyo. jeoneun hangugeoreul gongbuhamnida. gamsahamnida.",
    "konnichiwa. watashi wa gakusei desu. kyou wa ii tenki desu ne. arigatou gozaimasu.",
    "नमस्ते दुनिया। आप कैसे हैं? मैं ठीक हूँ, धन्यवाद।",
)


def _train_vocab(path: Path, vocab_size: int) -> int:
    """Train a BPE tokenizer shaped like the release vocab.json; pad it to exactly ``vocab_size`` ids.

    Returns the number of ids (``max id + 1``), which coqui uses as ``gpt_number_text_tokens``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = list(SPECIAL_TOKENS) + [f"[{lang}]" for lang in LANGUAGE_TOKENS]
    alphabet = sorted(set("".join(_CORPUS)) | set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;"))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator(list(_CORPUS) * 4, trainer=trainer)
    # A small corpus runs out of merges before the release's 6681 ids; fill the rest with tokens
    # no text contains, so the text embedding has the release's shape.
    missing = vocab_size - tokenizer.get_vocab_size()
    if missing > 0:
        tokenizer.add_special_tokens([f"[xttslab-pad-{i}]" for i in range(missing)])
    tokenizer.save(str(path))
    return max(tokenizer.get_vocab().values()) + 1


def _reference_voice(f0: float, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A voice-like test signal: harmonics of ``f0`` with a syllable-rate envelope and a little noise."""
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3.5 * t) ** 2
    audio = wave * envelope + 0.02 * rng.standard_normal(len(t))
    return (0.3 * audio / np.abs(audio).max()).astype(np.float32)


def make_checkpoint(
    out_dir: str | Path,
    preset: str = "tiny",
    seed: int = 0,
    speakers: Iterable[str] = DEFAULT_SPEAKERS,
) -> Path:
    """Write a random-weight XTTS v2 checkpoint in the release layout into ``out_dir``; return it.

    Deterministic for a given ``preset`` and ``seed``. ``speakers`` names the built-in voices
    written to speakers_xtts.pth (default first); their latents come from the model's own
    conditioning encoder run on distinct synthetic voices.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    names = list(speakers)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"speakers must be distinct names, got {names!r}")
    p = PRESETS[preset]

    import torch
    from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig
    from TTS.tts.models.xtts import Xtts

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_text = _train_vocab(out / "vocab.json", p.vocab_size)
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(out / "vocab.json"))

    args = XttsArgs(
        gpt_layers=p.gpt_layers,
        gpt_n_model_channels=p.gpt_n_model_channels,
        gpt_n_heads=p.gpt_n_heads,
        gpt_max_audio_tokens=p.gpt_max_audio_tokens,
        gpt_max_text_tokens=402,
        gpt_max_prompt_tokens=70,
        gpt_number_text_tokens=n_text,
        gpt_start_text_token=vocab.token_to_id("[START]"),
        gpt_stop_text_token=vocab.token_to_id("[STOP]"),
        gpt_num_audio_tokens=1026,      # 1024 DVAE codes + start + stop, as in v2
        gpt_start_audio_token=1024,
        gpt_stop_audio_token=1025,
        gpt_use_perceiver_resampler=True,
        decoder_input_dim=p.gpt_n_model_channels,
    )
    # Sampling and cloning values of the v2 release config.json.
    config = XttsConfig(
        model_args=args,
        temperature=0.75,
        length_penalty=1.0,
        repetition_penalty=5.0,
        top_k=50,
        top_p=0.85,
        gpt_cond_len=30,
        gpt_cond_chunk_len=4,
        max_ref_len=30,
    )

    torch.manual_seed(seed)
    model = Xtts(config)
    with torch.no_grad():
        if p.disable_stop_token:
            model.gpt.mel_head.bias[args.gpt_stop_audio_token] = -1e4
        # mel_stats holds per-bin mel normalisers; the release values are around 1-10.
        model.mel_stats.copy_(torch.linspace(2.0, 6.0, 80))
    # Save before any inference set-up: init_gpt_for_inference adds keys the release lacks.
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save({"model": state, "config": config.to_dict()}, out / "model.pth")
    config.save_json(str(out / "config.json"))

    torch.nn.Module.eval(model)  # plain eval: Xtts.eval() would also build the inference GPT
    rng = np.random.default_rng(seed)
    voices = {}
    sr = 22050
    for i, name in enumerate(names):
        audio = torch.from_numpy(_reference_voice(110.0 + 45.0 * i, 6.0, sr, rng))[None]
        voices[name] = {  # key order matters: coqui unpacks .values() as (latent, embedding)
            "gpt_cond_latent": model.get_gpt_cond_latents(audio, sr, length=30, chunk_length=4).cpu(),
            "speaker_embedding": model.get_speaker_embedding(audio, sr).cpu(),
        }
    torch.save(voices, out / "speakers_xtts.pth")
    (out / "xtts-lab-synthetic.json").write_text(
        json.dumps({"preset": preset, "seed": seed, "speakers": names}, indent=2)
    )
    return out
