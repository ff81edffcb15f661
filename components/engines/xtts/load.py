"""Loading an XTTS release folder without random initialisation, memory-mapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.core import EngineUnavailable, LabError
from components.engines.xtts.precision import _MAPPED_ATTR, apply_precision


def open_weights(weights: Any, device: str, precision: str) -> Any:
    """The coqui ``Xtts`` of ``weights`` (a ``locate.Weights``) on ``device``, GPT in ``precision``
    (``load_fast``); corrupt or foreign files raise EngineUnavailable naming the folder."""
    try:
        return load_fast(weights.path, device=device, precision=precision)
    except Exception as e:  # noqa: BLE001 - corrupt or foreign files: tell the user which folder
        raise EngineUnavailable(
            f"could not load XTTS v2 from {str(weights.path)!r} ({weights.source}): "
            f"{type(e).__name__}: {str(e).strip()[:200]}; is it a complete, unmodified XTTS v2 "
            "release (config.json, model.pth, vocab.json, speakers_xtts.pth)?"
        ) from e


def load_fast(checkpoint_dir: str | Path, device: str = "cpu", precision: str = "fp32") -> Any:
    """Load an XTTS release-layout folder the way ``Xtts.load_checkpoint`` does, only faster.

    Stock loading builds every module twice with random initialisation, then reads the whole
    file into memory and copies it over. Here the modules are built without initialisation,
    ``model.pth`` is memory-mapped and its tensors become the
    parameters directly (``load_state_dict(assign=True)``). The result is the same coqui
    ``Xtts`` object (tokenizer, speaker manager, inference GPT), prepared for ``precision``;
    HiFiGAN's weight norm is folded into plain weights once (stock recomputes it every call).

    Falls back to stock ``load_checkpoint`` for files that cannot be memory-mapped (old
    pickle-format checkpoints).
    """
    import torch
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.layers.xtts.xtts_manager import SpeakerManager
    from TTS.tts.models.xtts import Xtts

    folder = Path(checkpoint_dir)
    for name in ("config.json", "model.pth", "vocab.json"):
        if not (folder / name).is_file():
            raise LabError(f"xtts checkpoint folder {str(folder)!r} has no {name}")
    config = XttsConfig()
    config.load_json(str(folder / "config.json"))
    try:
        state = torch.load(folder / "model.pth", map_location="cpu", mmap=True, weights_only=True)["model"]
    except Exception:  # noqa: BLE001 - legacy/pickled checkpoints: coqui's loader knows them
        model = Xtts(config)
        model.load_checkpoint(config, checkpoint_dir=str(folder), eval=True)
        model.to(device)
        _fold_weight_norm(model)
        apply_precision(model, precision)
        return model

    # Built without initialisation: parameters are allocated but never written (the memory is
    # not even touched), then replaced by the memory-mapped tensors. (The meta device would be
    # cheaper still, but torchaudio's mel filterbank in the speaker encoder computes on creation.)
    with _no_init():
        model = Xtts(config)
        model.tokenizer = VoiceBpeTokenizer(vocab_file=str(folder / "vocab.json"))
        model.init_models()  # sizes the text embedding from the tokenizer, as load_checkpoint does
    speakers = folder / "speakers_xtts.pth"
    model.speaker_manager = SpeakerManager(str(speakers)) if speakers.is_file() else None
    # Same key clean-up as Xtts.get_compatible_checkpoint_state_dict (trainer prefixes, DVAE).
    ignore = {"torch_mel_spectrogram_style_encoder", "torch_mel_spectrogram_dvae", "dvae"}
    state = {k.removeprefix("xtts."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if k.split(".")[0] not in ignore}
    model.load_state_dict(state, strict=True, assign=True)
    _materialize_meta(model)
    model.hifigan_decoder.eval()
    model.gpt.init_gpt_for_inference(kv_cache=model.args.kv_cache)
    model.gpt.eval()
    model.to(device)
    _fold_weight_norm(model)
    setattr(model, _MAPPED_ATTR, folder / "model.pth")
    apply_precision(model, precision)
    return model


def _no_init():
    """Context in which torch and transformers modules skip random weight initialisation."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x kept it here
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()


def _materialize_meta(model: Any) -> None:
    """Fail loudly if a tensor the state dict does not carry is still on the meta device."""

    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise LabError(f"model.pth lacks tensors the model needs: {', '.join(left[:5])}")


def _fold_weight_norm(model: Any) -> None:
    """Replace HiFiGAN's weight-norm parametrisations by the weights they compute (same values)."""
    from torch.nn.utils.parametrize import remove_parametrizations

    for module in model.hifigan_decoder.waveform_decoder.modules():
        params = getattr(module, "parametrizations", None)
        if params is not None and "weight" in params:
            remove_parametrizations(module, "weight")
