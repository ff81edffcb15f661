"""The lab's fast XTTS v2 inference path: pure functions over a loaded coqui ``Xtts`` model.

Stock ``Xtts.inference`` spends its time in three places this module removes or shrinks:

1. **GPT decoding through ``transformers.generate``**: per token it runs ~30 Python-level GPT-2
   blocks behind cache objects, mask builders and generic bookkeeping, and multiplies by fp32
   weights with MKL's matrix-vector kernel. Here one token is a short loop over prepacked
   weights (oneDNN) and a preallocated KV cache. Sampling uses transformers' own logits
   processors in ``generate()``'s order and draws with the same ``torch.multinomial`` call, so in
   fp32 the tokens equal stock's for the same seed.
2. **The second full GPT forward** that stock runs after generation only to get the latents
   HiFiGAN needs: those latents are the hidden states the generation already computed (the one
   that sampled token *i* is latent *i*), so ``generate()`` keeps them instead.
3. **Quadratic streaming**: stock re-vocodes every latent so far for each chunk. ``stream()``
   vocodes only the new frames plus HiFiGAN's receptive field on each side, so each chunk's
   samples equal the whole-utterance vocoding's and the cost is linear in length.

Precision modes (``apply_precision``), all opt-in except fp32:

    fp32  exact: same tokens and (within float tolerance) the same audio as stock coqui
    bf16  GPT weights and activations in bfloat16 (oneDNN, AVX512-BF16/AMX where the CPU has it),
          residual stream, layer norms and logits in fp32; HiFiGAN under bf16 autocast
    int8  the GPT blocks run as one ONNX Runtime graph (``ort_gpt``) with weight-only int8
          matrices (one scale per 128 input rows, activations int8 per block on VNNI/AMX), the
          residual stream, norms and attention fp32; HiFiGAN as bf16
    int4  as int8 with 4-bit weights (an eighth of fp32's bytes)

With random-weight checkpoints only the numerical deviation from fp32 can be measured
(``bench/xtts_speed.py`` reports it); whether bf16/int8/int4 sound as good needs the real weights.

Nothing here imports torch or coqui at module level (the lab's registry must stay light).
"""

from __future__ import annotations

import functools
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from components.core import PRECISIONS
from components.engines.base import LabError
from components.engines.xtts import XttsSettings as GenerationSettings  # the engine owns its settings

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

ORT_PRECISIONS = ("int8", "int4")  # run by ONNX Runtime's quantised kernels (``ort_gpt``)

HOP_SAMPLES = 256              # HiFiGAN output samples per input frame (8*8*2*2 upsampling)
CONTEXT_FRAMES = 16            # HiFiGAN receptive-field radius is ~14 frames (measured); margin of 2
STREAM_FIRST_TOKENS = 10       # first streamed chunk after ~0.46 s of audio's worth of tokens
STREAM_CHUNK_TOKENS = 40       # later chunks: bigger, so the context overhead stays small
STREAM_CROSSFADE = 256         # samples blended at each join (insurance: joins are already exact)

_STATE_ATTR = "_xtts_lab_fast"  # where apply_precision keeps its packed weights on the model
_MAPPED_ATTR = "_xtts_lab_mapped"  # the memory-mapped model.pth whose GPT pages packing may drop


# ---------------------------------------------------------------------------------------------
# Precision: packed weights for the GPT, kept on the model object
# ---------------------------------------------------------------------------------------------

class _Linear:
    """One GPT-2 ``Conv1D`` (y = x @ W + b, W stored [in, out]) repacked for fast small-batch calls.

    fp32/bf16 on CPU: oneDNN prepacked weights (``mkldnn._linear_pointwise``), which streams the
    weights at close to memory bandwidth where MKL's fp32 gemv manages about half and bf16
    ``F.linear`` falls back to a slow path. Elsewhere (CUDA): plain ``F.linear`` in the chosen
    dtype. (int8/int4 run all blocks in ONNX Runtime instead: ``ort_gpt.OrtBlocks``.)
    """

    def __init__(self, conv1d: Any, precision: str, device: "torch.device", gelu: bool = False):
        import torch

        w = conv1d.weight.detach().t().contiguous().float()  # [out, in]
        b = conv1d.bias.detach().float()
        self.gelu = gelu
        self.out_features = w.shape[0]
        self.dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        if device.type == "cpu" and _mkldnn_usable(self.dtype):
            self.kind = "mkldnn"
            self.w = torch.ops.mkldnn._reorder_linear_weight(w.to(self.dtype), 1)
            self.b = b.to(self.dtype)
        else:
            self.kind = "dense"
            self.w = w.to(device=device, dtype=self.dtype)
            self.b = b.to(device=device, dtype=self.dtype)

    def __call__(self, x: "torch.Tensor") -> "torch.Tensor":
        import torch
        import torch.nn.functional as F

        x = x.to(self.dtype)
        if self.kind == "mkldnn":
            if self.gelu:
                return torch.ops.mkldnn._linear_pointwise(x, self.w, self.b, "gelu", [], "tanh")
            return torch.ops.mkldnn._linear_pointwise(x, self.w, self.b, "none", [], "")
        y = F.linear(x, self.w, self.b)
        return F.gelu(y, approximate="tanh") if self.gelu else y


@functools.lru_cache(maxsize=None)
def _mkldnn_usable(dtype: "torch.dtype") -> bool:
    """oneDNN's packed linear exists and computes correctly here (checked once per dtype)."""
    import torch

    try:
        w = torch.randn(8, 16)
        x = torch.randn(2, 16)
        packed = torch.ops.mkldnn._reorder_linear_weight(w.to(dtype), 1)
        y = torch.ops.mkldnn._linear_pointwise(x.to(dtype), packed, None, "none", [], "")
        tol = 1e-4 if dtype == torch.float32 else 0.1
        return bool(torch.allclose(y.float(), x @ w.t(), atol=tol, rtol=tol))
    except (RuntimeError, AttributeError):
        return False


@dataclass
class _Block:
    ln1: tuple                 # (weight, bias, eps) of ln_1
    qkv: _Linear
    proj: _Linear
    ln2: tuple
    fc: _Linear                # includes the tanh-GELU
    out: _Linear
    scaling: float             # attention score scale (1/sqrt(head_dim) for XTTS)


class FastGPT:
    """The XTTS GPT rearranged for decoding one token at a time; built by ``apply_precision``.

    Holds repacked copies of the transformer weights and one KV cache. The coqui modules keep
    theirs, so stock inference still works on the same model; when they are memory-mapped from
    ``model.pth`` (``load_fast``), ``apply_precision`` drops their pages after packing, so the
    packed copy replaces them in memory instead of doubling it (they come back from the file
    if the stock path reads them). A model runs one generation at a
    time: a new ``generate``/``stream`` on the same model overwrites an unfinished stream's
    cache (the XTTS engine runs solo generations with the model to itself). Batches
    (``generate_batch``, ``BatchDecoder``) use caches of their own and can run beside each other.
    """

    def __init__(self, gpt: Any, precision: str, device: "torch.device"):
        if precision not in PRECISIONS:
            raise LabError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        hf = gpt.gpt  # transformers GPT2Model (token/position embeddings replaced by XTTS's own)
        cfg = hf.config
        if cfg.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            raise LabError(f"the fast XTTS path expects a tanh-GELU GPT, got {cfg.activation_function!r}")
        self.precision = precision
        self.device = device
        self.n_heads = cfg.n_head
        self.dim = cfg.n_embd
        self.head_dim = self.dim // self.n_heads
        self.n_layers = len(hf.h)

        def ln(m):
            return (m.weight.detach().float(), m.bias.detach().float(), m.eps)

        self.ort = None  # int8/int4: every block (and ln_f) in one ONNX Runtime graph
        if precision in ORT_PRECISIONS:
            if device.type != "cpu":
                raise LabError(f"precision {precision!r} runs on the CPU only, not on {device.type}; use bf16 there")
            import torch

            from components.xtts.ort_gpt import OrtBlocks

            self.ort = OrtBlocks(hf, precision, threads=torch.get_num_threads())
        self.blocks = [] if self.ort is not None else [
            _Block(ln1=ln(b.ln_1), qkv=_Linear(b.attn.c_attn, precision, device),
                   proj=_Linear(b.attn.c_proj, precision, device), ln2=ln(b.ln_2),
                   fc=_Linear(b.mlp.c_fc, precision, device, gelu=True),
                   out=_Linear(b.mlp.c_proj, precision, device), scaling=float(b.attn.scaling))
            for b in hf.h
        ]
        self.ln_f = ln(hf.ln_f)
        # Latents and logits stay fp32: HiFiGAN consumes the latents, sampling the logits.
        self.final_norm = ln(gpt.final_norm)
        self.mel_head = (gpt.mel_head.weight.detach().float(), gpt.mel_head.bias.detach().float())
        self.mel_embedding = gpt.mel_embedding.weight.detach().float()
        self.mel_pos = gpt.mel_pos_embedding.emb.weight.detach().float()
        self.text_embedding = gpt.text_embedding
        self.text_pos_embedding = gpt.text_pos_embedding
        self.start_text, self.stop_text = gpt.start_text_token, gpt.stop_text_token
        self.start_audio, self.stop_audio = gpt.start_audio_token, gpt.stop_audio_token
        self.max_new_tokens = gpt.max_gen_mel_tokens
        self._cache: tuple | None = None  # (keys, values): per layer [1, heads, capacity, head_dim]

    # -- the transformer ---------------------------------------------------------------------
    def _kv(self, capacity: int):
        import torch

        if self._cache is None or self._cache[0][0].shape[2] < capacity:
            shape = (1, self.n_heads, capacity, self.head_dim)
            # fp32 in every precision: CPU attention over bf16 keys is ~5x slower than over fp32
            # ones, and the cache is small next to the weights.
            mk = lambda: [torch.empty(shape, dtype=torch.float32, device=self.device)  # noqa: E731
                          for _ in range(self.n_layers)]
            self._cache = (mk(), mk())
        return self._cache

    def new_cache(self, slots: int, capacity: int) -> tuple[list, list]:
        """A KV cache of its own for ``slots`` sequences of up to ``capacity`` positions (batches).

        ``torch.empty``: pages are only touched (and resident) once a sequence writes them.
        """
        import torch

        shape = (slots, self.n_heads, capacity, self.head_dim)
        mk = lambda: [torch.empty(shape, dtype=torch.float32, device=self.device)  # noqa: E731
                      for _ in range(self.n_layers)]
        return mk(), mk()

    def forward(self, x: "torch.Tensor", start: int, cache: tuple | None = None, slot: int = 0) -> "torch.Tensor":
        """Run ``x`` ([T, dim] fp32 embeddings at positions start..start+T-1) through the blocks.

        Appends their keys/values to the cache (the model's own, or ``cache``'s sequence
        ``slot``) and returns the final hidden states [T, dim] after ``ln_f`` (what
        transformers' GPT2Model returns as ``last_hidden_state``).
        """
        import torch.nn.functional as F

        keys, values = cache or self._cache
        T, H, D = x.shape[0], self.n_heads, self.head_dim
        if T > 1 and start != 0:  # is_causal below assumes the prompt starts the sequence
            raise ValueError("a multi-token forward must start at position 0")
        end = start + T
        if self.ort is not None:
            import torch

            lengths = torch.tensor([end - 1], dtype=torch.int32)
            return self.ort.run(x[None], (keys, values), slot, lengths, end)[0]
        for i, blk in enumerate(self.blocks):
            h = F.layer_norm(x, (self.dim,), *blk.ln1[:2], blk.ln1[2])
            qkv = blk.qkv(h).float().view(T, 3, H, D).permute(1, 2, 0, 3)  # [3, H, T, D]
            keys[i][slot, :, start:end] = qkv[1]
            values[i][slot, :, start:end] = qkv[2]
            # A single new token attends to everything cached; a prompt attends causally.
            a = F.scaled_dot_product_attention(
                qkv[0][None], keys[i][slot:slot + 1, :, :end], values[i][slot:slot + 1, :, :end],
                is_causal=T > 1, scale=blk.scaling)
            a = a[0].transpose(0, 1).reshape(T, self.dim)
            x = x + blk.proj(a).float()
            h = F.layer_norm(x, (self.dim,), *blk.ln2[:2], blk.ln2[2])
            x = x + blk.out(blk.fc(h)).float()
        return F.layer_norm(x, (self.dim,), *self.ln_f[:2], self.ln_f[2])

    def step(self, x: "torch.Tensor", pos: "torch.Tensor", cache: tuple) -> "torch.Tensor":
        """One token for each of n sequences at once: ``x`` [n, dim] embeddings, sequence i in
        cache slot i at position ``pos[i]`` (its own length so far). Returns hidden states [n, dim].

        Every matrix is read once for all n rows (the point of batching: decoding is bound by
        reading the weights). Each row writes its key/value at its own position and attends to
        its own positions only: the cache is right-padded per row and the padding is masked, so
        rows of different lengths do not see each other's padding (the noise naive padded
        batching adds, coqui-tts issue 3776).
        """
        import torch
        import torch.nn.functional as F

        keys, values = cache
        if self.ort is not None:  # per-row lengths go to GroupQueryAttention (seqlens_k)
            return self.ort.run(x[:, None], cache, 0, pos, int(pos.max()) + 1)[:, 0]
        if x.shape[0] == 1:  # a lone row (one request on the server): the single-stream path,
            # the same arithmetic without the mask and the indexed cache writes
            return self.forward(x, int(pos[0]), cache, 0)
        n, H, D = x.shape[0], self.n_heads, self.head_dim
        rows = torch.arange(n, device=x.device)
        length = int(pos.max()) + 1
        mask = (torch.arange(length, device=x.device)[None] <= pos[:, None])[:, None, None, :]  # [n,1,1,L]
        for i, blk in enumerate(self.blocks):
            h = F.layer_norm(x, (self.dim,), *blk.ln1[:2], blk.ln1[2])
            qkv = blk.qkv(h).float().view(n, 3, H, D)
            keys[i][rows, :, pos] = qkv[:, 1]
            values[i][rows, :, pos] = qkv[:, 2]
            a = F.scaled_dot_product_attention(
                qkv[:, 0, :, None], keys[i][:n, :, :length], values[i][:n, :, :length],
                attn_mask=mask, scale=blk.scaling)
            x = x + blk.proj(a.reshape(n, self.dim)).float()
            h = F.layer_norm(x, (self.dim,), *blk.ln2[:2], blk.ln2[2])
            x = x + blk.out(blk.fc(h)).float()
        return F.layer_norm(x, (self.dim,), *self.ln_f[:2], self.ln_f[2])

    def latent_and_logits(self, hidden: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """hidden [1, dim] -> (latent = final_norm(hidden), logits = mel_head(latent)), fp32."""
        import torch.nn.functional as F

        latent = F.layer_norm(hidden, (self.dim,), *self.final_norm[:2], self.final_norm[2])
        return latent, F.linear(latent, *self.mel_head)

    def prompt(self, cond_latent: "torch.Tensor", text_tokens: "torch.Tensor") -> "torch.Tensor":
        """The prefix XTTS conditions on: speaker latents, [START] text [STOP], the start audio token."""
        import torch
        import torch.nn.functional as F

        text = F.pad(text_tokens, (0, 1), value=self.stop_text)
        text = F.pad(text, (1, 0), value=self.start_text)
        text_emb = self.text_embedding(text) + self.text_pos_embedding(text)
        start = self.mel_embedding[self.start_audio] + self.mel_pos[0]
        return torch.cat([cond_latent[0].float(), text_emb[0].float(), start[None]], dim=0)


def apply_precision(model: Any, precision: str = "fp32") -> FastGPT:
    """Prepare ``model`` (a loaded coqui ``Xtts``) for the fast path in ``precision``; idempotent.

    Builds repacked GPT weights on the model's device and keeps them on the model, replacing any
    earlier precision. The coqui modules keep their weights, so stock ``Xtts.inference`` still
    runs on the same model; those memory-mapped from the checkpoint (``load_fast``) have their
    pages released after packing (``release_mapped_pages``). Raises LabError for an unknown precision or int8 off the CPU.
    """
    import torch

    if precision not in PRECISIONS:
        raise LabError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    current = getattr(model, _STATE_ATTR, None)
    device = next(model.gpt.parameters()).device
    if current is not None and current.precision == precision and current.device == device:
        return current
    setattr(model, _STATE_ATTR, None)  # free the old packed weights before building new ones
    with torch.inference_mode():
        fast = FastGPT(model.gpt, precision, device)
    setattr(model, _STATE_ATTR, fast)
    mapped = getattr(model, _MAPPED_ATTR, None)
    if mapped is not None:
        release_mapped_pages(_packed_sources(model.gpt), mapped)
    _return_freed_heap()
    return fast


def _return_freed_heap() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Packing frees hundreds of MB of temporaries (quantisation copies, the serialized ONNX graph,
    the previous precision's packed weights) in pieces glibc keeps mapped for reuse: measured on
    the full-size model, int8 sat at 4.0 GB resident after packing and 1.8 GB after a trim.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to trim
        pass


def _packed_sources(gpt: Any) -> list:
    """The coqui GPT matrices FastGPT keeps its own (repacked) copies of."""
    return [m.weight for b in gpt.gpt.h for m in (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj)]


def _file_mappings(path: Path) -> list[tuple[int, int]]:
    """Address ranges at which this process has ``path`` memory-mapped (from /proc/self/maps)."""
    target = str(Path(path).resolve())
    ranges = []
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5] == target:
                a, b = parts[0].split("-")
                ranges.append((int(a, 16), int(b, 16)))
    except OSError:
        pass
    return ranges


def release_mapped_pages(tensors: Sequence[Any], path: Path) -> int:
    """Drop the resident pages of ``tensors`` that lie in this process's mapping of ``path``.

    ``load_fast`` memory-maps ``model.pth`` and the coqui modules use those pages directly;
    packing the GPT reads all of them, after which they would stay resident beside the packed
    copy (+1.7 GB in fp32). ``madvise(MADV_DONTNEED)`` on a private file mapping drops clean
    pages from the process; the tensors stay valid and the next read (the stock coqui path, a
    precision switch) faults them back in from the file. Only whole pages inside tensors that
    lie in the file's mapping are touched, never memory the process wrote (copy-on-write pages of
    tensors someone modified would lose the change), nor anything else. Returns the bytes
    released (0 where madvise is unavailable).
    """
    import ctypes
    import mmap

    ranges = _file_mappings(path)
    if not ranges:
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page, released = mmap.PAGESIZE, 0
    for t in tensors:
        start = t.data_ptr()
        end = start + t.numel() * t.element_size()
        if t.device.type != "cpu" or not any(a <= start and end <= b for a, b in ranges):
            continue
        a, b = -(-start // page) * page, end // page * page
        if b > a and madvise(a, b - a, 4) == 0:  # 4 = MADV_DONTNEED
            released += b - a
    return released


def precision_of(model: Any) -> str:
    """The precision ``apply_precision`` last prepared ``model`` for ("fp32" if never)."""
    fast = getattr(model, _STATE_ATTR, None)
    return fast.precision if fast is not None else "fp32"


def _fast(model: Any) -> FastGPT:
    return getattr(model, _STATE_ATTR, None) or apply_precision(model, "fp32")


# ---------------------------------------------------------------------------------------------
# Loading without random initialisation
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

@dataclass
class Generation:
    """What ``generate`` returns for one text chunk."""

    tokens: "torch.Tensor"            # [1, n] int64 audio codes (ends with the stop code if sampled)
    latents: "torch.Tensor"           # [1, n, dim] fp32: stock's second-forward latents, from generation
    timings: dict[str, float] = field(default_factory=dict)  # prefill, decode (seconds)


def encode(model: Any, text: str, lang: str) -> "torch.Tensor":
    """Text -> [1, T] int32 token ids exactly as stock ``Xtts.inference`` encodes one sentence."""
    import torch

    ids = model.tokenizer.encode(text.strip().lower(), lang=lang.split("-")[0])
    return torch.IntTensor(ids).unsqueeze(0).to(next(model.gpt.parameters()).device)


def _processors(settings: GenerationSettings, fast: FastGPT, prompt_len: int, min_new_tokens: int):
    """The logits processors ``transformers.generate`` builds for XTTS's sampling call, in its order.

    XTTS calls generate with do_sample=True, num_beams=1 and fake prompt ids (all 1s plus the
    start code), so the repetition penalty also sees those ids, exactly as here.
    """
    import torch
    from transformers.generation.logits_process import (
        LogitsProcessorList, MinNewTokensLengthLogitsProcessor, RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
    )

    out = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        out.append(RepetitionPenaltyLogitsProcessor(float(settings.repetition_penalty)))
    if min_new_tokens > 0:
        out.append(MinNewTokensLengthLogitsProcessor(
            prompt_len, min_new_tokens, torch.tensor([fast.stop_audio], device=fast.device), device=fast.device))
    if settings.temperature != 1.0:
        out.append(TemperatureLogitsWarper(float(settings.temperature)))
    if settings.top_k != 0:
        out.append(TopKLogitsWarper(top_k=int(settings.top_k), min_tokens_to_keep=1))
    if settings.top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=float(settings.top_p), min_tokens_to_keep=1))
    return out


def _decode(model: Any, text_tokens: "torch.Tensor", gpt_cond_latent: "torch.Tensor",
            settings: GenerationSettings, min_new_tokens: int, max_new_tokens: int | None,
            timings: dict[str, float]) -> Iterator[tuple[int, "torch.Tensor"]]:
    """Yield (audio code, its latent [dim]) one by one; fills ``timings`` (prefill, decode)."""
    import torch

    fast = _fast(model)
    limit = fast.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
    if limit < 1:
        raise LabError(f"max_new_tokens must be at least 1, got {max_new_tokens!r}")
    t0 = time.perf_counter()
    prefix = fast.prompt(gpt_cond_latent.to(fast.device), text_tokens.to(fast.device))
    prompt_len = prefix.shape[0]  # cond + text + start code: the ids transformers would see
    fast._kv(prompt_len + limit)
    ids = torch.ones((1, prompt_len + limit), dtype=torch.long, device=fast.device)
    ids[0, prompt_len - 1] = fast.start_audio
    processors = _processors(settings, fast, prompt_len, min_new_tokens)
    hidden = fast.forward(prefix, 0)[-1:]
    timings["prefill"] = time.perf_counter() - t0
    # Only this generator's own work counts as decode time, not what the consumer does between
    # tokens (streaming vocodes there).
    decode = 0.0
    for n in range(limit):
        t0 = time.perf_counter()
        latent, logits = fast.latent_and_logits(hidden)
        scores = processors(ids[:, : prompt_len + n], logits)
        token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)
        ids[0, prompt_len + n] = token[0, 0]
        code = int(token)
        decode += time.perf_counter() - t0
        timings["decode"] = decode
        yield code, latent[0]
        if code == fast.stop_audio or n + 1 == limit:
            break
        t0 = time.perf_counter()
        # Code n sits at audio position n + 1 (the start code is position 0).
        hidden = fast.forward(fast.mel_embedding[token[0]] + fast.mel_pos[n + 1], prompt_len + n)
        decode += time.perf_counter() - t0
    timings["decode"] = decode


def generate(model: Any, text_tokens: "torch.Tensor", gpt_cond_latent: "torch.Tensor",
             settings: GenerationSettings | None = None, *, min_new_tokens: int = 0,
             max_new_tokens: int | None = None) -> Generation:
    """Sample the audio codes of one text chunk and return them with their latents.

    ``text_tokens`` is [1, T] (``encode``), ``gpt_cond_latent`` [1, 32, dim]. Seed torch before
    calling for reproducible output: in fp32 the codes equal stock ``Xtts.inference``'s for the
    same seed, and the latents equal its second GPT forward's (float tolerance) without running
    it. ``min_new_tokens``/``max_new_tokens`` pin the length (timing runs on random weights).
    """
    import torch

    settings = settings or GenerationSettings()
    timings: dict[str, float] = {}
    codes, latents = [], []
    with torch.inference_mode():
        for code, latent in _decode(model, text_tokens, gpt_cond_latent, settings,
                                    min_new_tokens, max_new_tokens, timings):
            codes.append(code)
            latents.append(latent)
        device = latents[0].device
        out = Generation(tokens=torch.tensor([codes], dtype=torch.long, device=device),
                         latents=torch.stack(latents)[None], timings=timings)
    return out


# ---------------------------------------------------------------------------------------------
# Batched generation: many rows, one pass over the weights per step
# ---------------------------------------------------------------------------------------------

DEFAULT_BATCH = 8  # rows decoded together by default (bench/xtts_speed.py --batch measures it)


@dataclass
class BatchItem:
    """One row of a batch: its text chunks (decoded one after another in the row's slot), its
    conditioning, sampling settings and random generator (``None``: torch's global one)."""

    chunks: list                      # [1, T] text tokens per chunk (``encode``)
    gpt_cond_latent: "torch.Tensor"   # [1, 32, dim]
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    generator: "torch.Generator | None" = None
    min_new_tokens: int = 0
    max_new_tokens: int | None = None


@dataclass
class BatchDone:
    """What ``generate_batch`` yields when a row has decoded all its chunks."""

    index: int                        # position of the row in ``items``
    generations: list                 # one ``Generation`` per chunk
    seconds: float                    # wall time from the row's first prefill to its last token
    rows_seen: int                    # the most rows that decoded beside it (itself included)


class _Row:
    """Decoding state of one batch row (one chunk at a time)."""

    def __init__(self, index: int, item: BatchItem):
        self.index, self.item = index, item
        self.chunk = 0
        self.generations: list[Generation] = []
        self.t_start = time.perf_counter()
        self.rows_seen = 1
        self.sink: RowHandle | None = None  # BatchDecoder's per-request delivery; None in generate_batch


def _start_chunk(fast: FastGPT, row: _Row, cache: tuple, slot: int) -> None:
    """Prefill the row's current chunk into cache ``slot`` (all of the prompt but its last
    position, the start code, which the next batched step feeds like any other token)."""
    import torch

    item = row.item
    limit = fast.max_new_tokens if item.max_new_tokens is None else int(item.max_new_tokens)
    t0 = time.perf_counter()
    prefix = fast.prompt(item.gpt_cond_latent.to(fast.device), item.chunks[row.chunk].to(fast.device))
    row.prompt_len = prefix.shape[0]
    row.limit = limit
    row.ids = torch.ones((1, row.prompt_len + limit), dtype=torch.long, device=fast.device)
    row.ids[0, row.prompt_len - 1] = fast.start_audio
    row.processors = _processors(item.settings, fast, row.prompt_len, item.min_new_tokens)
    fast.forward(prefix[:-1], 0, cache, slot)
    row.next_x, row.pos = prefix[-1], row.prompt_len - 1
    row.codes, row.latents = [], []
    row.timings = {"prefill": time.perf_counter() - t0, "decode": 0.0}


def generate_batch(model: Any, items: Sequence[BatchItem], batch_size: int = DEFAULT_BATCH) -> Iterator[BatchDone]:
    """Decode many rows together, yielding each row as soon as all its chunks are done.

    Up to ``batch_size`` rows share every GPT step (one read of the weights for all of them);
    each has its own conditioning, text, length, sampling settings and generator, and draws its
    tokens from its own generator in the same order as ``generate`` would alone. So in fp32 row
    i's codes equal ``generate`` of that row alone with the same seed, and its latents are equal
    within float tolerance (batched matrix products round differently than single rows). A row
    that samples its stop code (or reaches its length limit) leaves the batch at once; its next
    chunk, or the next waiting row, takes its place at the following step.
    """
    import torch

    if batch_size < 1:
        raise LabError(f"batch size must be at least 1, got {batch_size!r}")
    fast = _fast(model)
    for item in items:
        if item.max_new_tokens is not None and int(item.max_new_tokens) < 1:
            raise LabError(f"max_new_tokens must be at least 1, got {item.max_new_tokens!r}")
    # The decorator form of inference_mode re-enters it around each step of the generator, so
    # the caller's code between rows (vocoding, logging) does not run in inference mode.
    return torch.inference_mode()(_generate_batch)(fast, list(items), batch_size)


def _generate_batch(fast: FastGPT, items: list[BatchItem], batch_size: int) -> Iterator[BatchDone]:
    """The body of ``generate_batch`` (a generator; see there)."""
    if not items:
        return
    batch = _Slots(fast, min(batch_size, len(items)))
    # One cache for the whole call, sized for its longest row (BatchDecoder grows its own).
    batch.reserve(max(_positions(fast, item) for item in items))
    waiting = list(range(len(items)))[::-1]
    while waiting or batch.active:
        while waiting and len(batch.active) < batch.slots:
            batch.admit(waiting[-1], items[waiting.pop()])
        leaving, failed = batch.step()
        if failed:
            raise failed[0][1]
        yield from leaving


def _positions(fast: FastGPT, item: BatchItem) -> int:
    """KV-cache positions ``item`` needs: its longest prompt (cond + [START] text [STOP] + start
    code) plus its token limit."""
    limit = fast.max_new_tokens if item.max_new_tokens is None else int(item.max_new_tokens)
    return max(item.gpt_cond_latent.shape[1] + int(c.shape[-1]) + 3 for c in item.chunks) + limit


class _Slots:
    """The rows decoding together and their KV cache: the step loop ``generate_batch`` and
    ``BatchDecoder`` share. Row ``active[s]`` decodes in cache slot ``s``; slots stay dense
    (a leaving row's slot is taken by the last row)."""

    def __init__(self, fast: FastGPT, slots: int):
        self.fast, self.slots = fast, slots
        self.capacity = 0
        self.cache: tuple | None = None
        self.touched = [0] * slots  # per slot: positions below this hold finite values (written or zeroed)
        self.active: list[_Row] = []

    def reserve(self, capacity: int) -> None:
        """Make every slot hold at least ``capacity`` positions, keeping what active rows cached.

        Growing copies the active rows' keys/values into a bigger cache. Capacity grows in
        steps of 128 positions, so a decoder whose rows' prompts differ by a few tokens grows
        rarely; ``torch.empty`` pages cost nothing until a row writes them.
        """
        if capacity <= self.capacity:
            return
        capacity = -(-capacity // 128) * 128
        old = self.cache
        self.cache = self.fast.new_cache(self.slots, capacity)
        self.touched = [0] * self.slots
        if old is not None:
            for s, row in enumerate(self.active):
                for new, prev in zip((*self.cache[0], *self.cache[1]), (*old[0], *old[1])):
                    new[s, :, :row.pos] = prev[s, :, :row.pos]
                self.touched[s] = row.pos
        self.capacity = capacity

    def admit(self, index: int, item: BatchItem, sink: "RowHandle | None" = None) -> _Row:
        """Prefill ``item``'s first chunk into the next free slot; it decodes from the next step.
        Raises (and takes no slot) if its inputs are unusable."""
        self.reserve(_positions(self.fast, item))
        slot = len(self.active)
        row = _Row(index, item)
        row.sink = sink
        try:
            _start_chunk(self.fast, row, self.cache, slot)
        except BaseException:
            # A prefill that failed part-way may have left non-finite keys where the next row in
            # this slot reads masked padding (NaN survives the mask): zero what it could reach.
            end = min(self.capacity, _positions(self.fast, item))
            for layer in (*self.cache[0], *self.cache[1]):
                layer[slot, :, :end] = 0.0
            self.touched[slot] = max(self.touched[slot], end)
            raise
        self.touched[slot] = max(self.touched[slot], row.pos)
        self.active.append(row)
        return row

    def remove(self, s: int) -> None:
        """Take the row in slot ``s`` out; the last row moves into its slot."""
        last = self.active.pop()
        if s < len(self.active):
            _move_slot(self.cache, len(self.active), s, last.pos)
            self.touched[s] = max(self.touched[s], last.pos)
            self.active[s] = last

    def reset(self) -> None:
        """Forget every row and the cache (after a failed step its contents are unknown)."""
        self.active, self.cache, self.capacity = [], None, 0
        self.touched = [0] * self.slots

    def step(self) -> tuple[list[BatchDone], list[tuple[_Row, BaseException]]]:
        """One token for every active row. Returns (rows that finished all their chunks, in
        index order; rows whose next chunk could not start, with the error)."""
        import torch

        fast, cache, active = self.fast, self.cache, self.active
        n = len(active)
        for row in active:
            row.rows_seen = max(row.rows_seen, n)
        t0 = time.perf_counter()
        x = torch.stack([row.next_x for row in active])
        pos = torch.tensor([row.pos for row in active], device=fast.device)
        _clear_padding(cache, self.touched, n, max(row.pos for row in active) + 1, self.capacity)
        latent, logits = fast.latent_and_logits(fast.step(x, pos, cache))
        finished = []
        for s, row in enumerate(active):
            k = len(row.codes)
            scores = row.processors(row.ids[:, : row.prompt_len + k], logits[s: s + 1])
            token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1,
                                      generator=row.item.generator)
            code = int(token)
            row.ids[0, row.prompt_len + k] = code
            row.codes.append(code)
            row.latents.append(latent[s])
            row.pos += 1
            if row.sink is not None:
                row.sink._token(code, latent[s])
            if code == fast.stop_audio or k + 1 == row.limit:
                finished.append(s)
            else:  # code k sits at audio position k + 1 (the start code is position 0)
                row.next_x = fast.mel_embedding[code] + fast.mel_pos[k + 1]
        step_seconds = time.perf_counter() - t0
        for row in active:
            row.timings["decode"] += step_seconds
        # Highest slot first: a row moved down from the end is never one still to remove.
        leaving, failed = [], []
        for s in reversed(finished):
            row = active[s]
            generation = Generation(tokens=torch.tensor([row.codes], dtype=torch.long, device=fast.device),
                                    latents=torch.stack(row.latents)[None], timings=row.timings)
            row.generations.append(generation)
            if row.sink is not None:
                row.sink._chunk_done(generation)
            row.chunk += 1
            if row.chunk < len(row.item.chunks):
                try:
                    _start_chunk(fast, row, cache, s)
                    self.touched[s] = max(self.touched[s], row.pos)
                    continue
                except Exception as e:  # noqa: BLE001 - this row's next chunk only; the batch goes on
                    failed.append((row, e))
            self.remove(s)
            if not failed or failed[-1][0] is not row:
                leaving.append((row, BatchDone(row.index, row.generations, time.perf_counter() - row.t_start,
                                               row.rows_seen)))
        leaving.sort(key=lambda pair: pair[1].index)  # rows done at the same step: in order
        for row, done in leaving:
            if row.sink is not None:
                row.sink._finish(done)
        return [done for _row, done in leaving], failed


def _clear_padding(cache: tuple, touched: list[int], n: int, length: int, capacity: int) -> None:
    """Zero never-written cache positions that rows 0..n-1 are about to read as masked padding.

    Masking is not enough on its own: fresh memory may hold NaN bit patterns, and NaN stays NaN
    under a -inf mask (NaN - inf, 0 * NaN). Zeroing ahead in blocks of 64 positions keeps this
    rare without touching (making resident) the whole cache up front.
    """
    for s in range(n):
        if touched[s] < length:
            end = min(capacity, length + 64)
            for layer in (*cache[0], *cache[1]):
                layer[s, :, touched[s]:end] = 0.0
            touched[s] = end


def _move_slot(cache: tuple, src: int, dst: int, length: int) -> None:
    """Copy a sequence's cached keys/values from slot ``src`` to ``dst`` (keeps rows 0..n-1 dense)."""
    for layer in (*cache[0], *cache[1]):
        layer[dst, :, :length] = layer[src, :, :length]


# ---------------------------------------------------------------------------------------------
# Continuous batching: requests join a running batch
# ---------------------------------------------------------------------------------------------

class BatchDecodeError(LabError):
    """A batched decoding step failed: every request decoding in it at that moment fails."""


class RowHandle:
    """One request's row in a ``BatchDecoder``: its codes and latents as they are sampled, then
    its result. Read it from one thread: ``tokens()`` once per text chunk (streaming) and/or
    ``result()``; either raises the row's error (a LabError) if it failed."""

    def __init__(self) -> None:
        self._events: queue.SimpleQueue = queue.SimpleQueue()  # filled by the decoder's thread
        self._done: BatchDone | None = None
        self._error: BaseException | None = None
        self.generations: list[Generation] = []  # chunks read so far
        self.cancelled = False
        self._notify: "queue.SimpleQueue | None" = None  # gets this handle once the row is over
        # Per-token events only for readers that stream: each one wakes the reading thread, which
        # then takes the GIL from the decoder's thread mid-step.
        self.deliver_tokens = True

    # -- the decoder's side ------------------------------------------------------------------
    def _token(self, code: int, latent: "torch.Tensor") -> None:
        if self.deliver_tokens:
            self._events.put(("token", (code, latent)))

    def _chunk_done(self, generation: Generation) -> None:
        self._events.put(("chunk", generation))

    def _finish(self, done: BatchDone) -> None:
        self._events.put(("done", done))
        if self._notify is not None:
            self._notify.put(self)

    def _fail(self, error: BaseException) -> None:
        self._events.put(("error", error))
        if self._notify is not None:
            self._notify.put(self)

    # -- the request's side ------------------------------------------------------------------
    def _next(self) -> tuple[str, Any]:
        if self._error is not None:
            raise self._error
        kind, value = self._events.get()
        if kind == "error":
            self._error = value
            raise value
        if kind == "chunk":
            self.generations.append(value)
        elif kind == "done":
            self._done = value
        return kind, value

    def tokens(self, timings: dict[str, float] | None = None) -> Iterator[tuple[int, "torch.Tensor"]]:
        """Yield the next text chunk's (code, latent [dim]) as the decoder samples them; the
        chunk's prefill/decode seconds go into ``timings`` when it ends."""
        while self._done is None:
            kind, value = self._next()
            if kind == "token":
                yield value
            elif kind == "chunk":
                if timings is not None:
                    timings.update(value.timings)
                return

    def result(self) -> BatchDone:
        """Wait for the row to finish all its chunks; its ``BatchDone``."""
        while self._done is None:
            self._next()
        return self._done

    def cancel(self) -> None:
        """The request went away (a closed stream): the decoder drops its row at the next step."""
        self.cancelled = True


class BatchDecoder:
    """Continuous batching: rows submitted at any time join the running batch at its next step.

    One worker thread (started by ``submit``, ended when no row is left) runs ``generate_batch``'s
    step loop over up to ``slots`` rows, admitting waiting rows into free slots before each step.
    Each ``submit`` returns a ``RowHandle`` that receives the row's codes and latents as they are
    sampled (so a stream can vocode as it goes) and then its result. As in ``generate_batch``,
    each row samples from its own generator with its own processors: in fp32 its codes equal
    ``generate`` alone with the same seed, whenever it joined and whoever decoded beside it.

    Failures stay as small as they can: a row whose inputs cannot be prefilled fails alone (the
    others never see it); a step that raises fails the rows decoding in it with a
    ``BatchDecodeError``, and the decoder starts afresh for the next rows. Create one per model
    and precision (it keeps the ``FastGPT`` it was made with; a precision switch needs a new one).
    """

    def __init__(self, model: Any, slots: int = DEFAULT_BATCH):
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise LabError(f"batch size must be at least 1, got {slots!r}")
        self.fast = _fast(model)
        self.slots = slots
        self.busiest = 0          # the most rows that decoded together so far (for tests and logs)
        self._lock = threading.Lock()
        self._waiting: deque[tuple[RowHandle, BatchItem]] = deque()
        self._worker: threading.Thread | None = None
        self._admitted = 0        # rows admitted so far (each row's BatchDone.index)

    def serves(self, model: Any) -> bool:
        """True while ``model`` is still prepared in the precision this decoder was made for."""
        return getattr(model, _STATE_ATTR, None) is self.fast

    def submit(self, item: BatchItem, notify: "queue.SimpleQueue | None" = None, *,
               stream_tokens: bool = True) -> RowHandle:
        """Queue ``item`` to join the batch at its next step; returns its handle at once.
        ``notify`` (if given) receives the handle when the row has finished or failed, so one
        caller can wait for whichever of its rows ends first. ``stream_tokens=False``: the
        handle's ``tokens()`` yields nothing and only returns at each chunk's end (for readers
        that want whole chunks or the result; see ``RowHandle.deliver_tokens``)."""
        if not item.chunks:
            raise LabError("a batch row needs at least one text chunk")
        if item.max_new_tokens is not None and int(item.max_new_tokens) < 1:
            raise LabError(f"max_new_tokens must be at least 1, got {item.max_new_tokens!r}")
        handle = RowHandle()
        handle._notify = notify
        handle.deliver_tokens = stream_tokens
        with self._lock:
            self._waiting.append((handle, item))
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="xtts-batch-decoder", daemon=True)
                self._worker.start()
        return handle

    def _run(self) -> None:
        import torch

        batch = _Slots(self.fast, self.slots)
        try:
            with torch.inference_mode():
                while self._admit(batch):
                    self._step(batch)
        except BaseException as e:  # noqa: BLE001 - nobody would see it on this thread: tell every row
            error = BatchDecodeError(f"the XTTS batch decoder stopped: {type(e).__name__}: {e}")
            for row in batch.active:
                row.sink._fail(error)
            with self._lock:
                waiting, self._worker = list(self._waiting), None
                self._waiting.clear()
            for handle, _item in waiting:
                handle._fail(error)

    def _admit(self, batch: _Slots) -> bool:
        """Drop cancelled rows, prefill waiting rows into free slots; False when nothing is left
        (the worker then ends; the next ``submit`` starts another)."""
        for s in reversed(range(len(batch.active))):
            if batch.active[s].sink.cancelled:
                batch.remove(s)
        with self._lock:
            free = batch.slots - len(batch.active)
            joining = [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]
            if not joining and not batch.active:
                self._worker = None
                return False
        for handle, item in joining:
            if handle.cancelled:
                continue
            index, self._admitted = self._admitted, self._admitted + 1
            try:
                batch.admit(index, item, sink=handle)
            except Exception as e:  # noqa: BLE001 - this row's inputs only: it fails alone
                handle._fail(e if isinstance(e, LabError) else LabError(
                    f"this request's XTTS inputs could not be decoded: {type(e).__name__}: {e}"))
        return True

    def _step(self, batch: _Slots) -> None:
        if not batch.active:
            return
        self.busiest = max(self.busiest, len(batch.active))
        try:
            _leaving, failed = batch.step()  # finished rows were told through their handles
        except Exception as e:  # noqa: BLE001 - fail the rows in this step, keep serving new ones
            n = len(batch.active)
            for row in batch.active:
                error = BatchDecodeError(
                    f"batched XTTS decoding failed ({type(e).__name__}: {e}); the {n} request(s) "
                    "decoding together were stopped, later requests decode afresh")
                error.__cause__ = e  # what failed, for callers that handle it (CUDA out of memory)
                row.sink._fail(error)
            batch.reset()  # drop the cache too: after an out-of-memory its memory can go back
            return
        for row, e in failed:
            row.sink._fail(e if isinstance(e, LabError) else LabError(
                f"this request's next text chunk could not be decoded: {type(e).__name__}: {e}"))


# ---------------------------------------------------------------------------------------------
# Vocoding
# ---------------------------------------------------------------------------------------------

def _vocoder_autocast(model: Any):
    """bf16 autocast for HiFiGAN in the bf16/int8/int4 modes; nothing (exact fp32) otherwise."""
    import contextlib

    import torch

    if precision_of(model) == "fp32":
        return contextlib.nullcontext()
    device_type = next(model.hifigan_decoder.parameters()).device.type
    return torch.autocast(device_type, dtype=torch.bfloat16)


def _rescale(latents: "torch.Tensor", speed: float) -> "torch.Tensor":
    """Stock's speed control: stretch the latents [1, n, dim] in time by 1/speed (linear)."""
    import torch.nn.functional as F

    length_scale = 1.0 / max(speed, 0.05)
    if length_scale == 1.0:
        return latents
    return F.interpolate(latents.transpose(1, 2), scale_factor=length_scale, mode="linear").transpose(1, 2)


def vocode(model: Any, latents: "torch.Tensor", speaker_embedding: "torch.Tensor", speed: float = 1.0) -> np.ndarray:
    """GPT latents [1, n, dim] -> mono float32 audio at the model's output rate, as stock does.

    ``speed`` rescales the latents first (stock ``inference()``'s ``speed``). In fp32 this is
    exactly stock's HiFiGAN call; bf16/int8/int4 modes run it under bf16 autocast.
    """
    import torch

    device = next(model.hifigan_decoder.parameters()).device
    with torch.inference_mode(), _vocoder_autocast(model):
        wav = model.hifigan_decoder(_rescale(latents.to(device), speed), g=speaker_embedding.to(device))
    return wav.float().cpu().squeeze().numpy().astype(np.float32, copy=False)


def vocode_speeds(model: Any, latents: "torch.Tensor", speaker_embedding: "torch.Tensor",
                  speeds: Sequence[float]) -> list[np.ndarray]:
    """One GPT pass, many speeds: ``vocode`` the same latents once per speed, in order.

    Speed only rescales the latents before HiFiGAN, so each result equals a separate synthesis
    at that speed with the same seed.
    """
    return [vocode(model, latents, speaker_embedding, speed) for speed in speeds]


# ---------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------

def _final_count(n_final_in: int, scale: float, n_out: int) -> int:
    """How many outputs of a linear ``F.interpolate`` (align_corners=False) can no longer change.

    Output k reads inputs floor(src) and floor(src)+1 with src = (k + 0.5) / scale - 0.5; once
    both lie among the ``n_final_in`` inputs that are final (and the last input is not being
    clamped), later inputs cannot change it. One output is held back against float rounding.
    """
    if n_final_in < 2:
        return 0
    return max(0, min(n_out, math.ceil((n_final_in - 0.5) * scale - 0.5) - 1))


class _FrameStream:
    """HiFiGAN's input frames for a growing list of latents, computed with stock's exact ops.

    Stock ``HifiDecoder.forward`` interpolates the latents x4 (1024-sample codes -> 256-sample
    hops) and then by 24000/22050, and the speed control interpolates before that. Each output
    depends on two neighbouring inputs only, so all frames but the last few are final long
    before the utterance ends; ``frames()`` says how many.
    """

    def __init__(self, model: Any, speed: float):
        dec = model.hifigan_decoder
        self.dec = dec
        self.length_scale = 1.0 / max(speed, 0.05)
        self.up = dec.ar_mel_length_compression / dec.output_hop_length
        self.resample = dec.output_sample_rate / dec.input_sample_rate

    def frames(self, latents: "torch.Tensor", done: bool) -> tuple["torch.Tensor", int]:
        """latents [1, n, dim] so far -> (frames [dim, F], how many of them are final)."""
        import torch.nn.functional as F

        n = latents.shape[1]
        z = _rescale(latents, 1.0 / self.length_scale)
        final = n if self.length_scale == 1.0 else _final_count(n, self.length_scale, z.shape[1])
        z = F.interpolate(z.transpose(1, 2), scale_factor=[self.up], mode="linear").squeeze(1)
        final = _final_count(final, self.up, z.shape[-1])
        if self.resample != 1.0:
            z = F.interpolate(z, scale_factor=[self.resample], mode="linear")
            final = _final_count(final, self.resample, z.shape[-1])
        z = z.squeeze(0)
        return z, (z.shape[-1] if done else final)


def frames_per_token(model: Any, speed: float = 1.0) -> float:
    """HiFiGAN input frames per GPT token (~4.35 at speed 1: 1024 samples at 22.05 kHz)."""
    dec = model.hifigan_decoder
    return (dec.ar_mel_length_compression / dec.output_hop_length
            * dec.output_sample_rate / dec.input_sample_rate / max(speed, 0.05))


def stream(model: Any, text_tokens: "torch.Tensor", gpt_cond_latent: "torch.Tensor",
           speaker_embedding: "torch.Tensor", settings: GenerationSettings | None = None, *,
           speed: float = 1.0, first_chunk_tokens: int = STREAM_FIRST_TOKENS,
           chunk_tokens: int = STREAM_CHUNK_TOKENS, crossfade: int = STREAM_CROSSFADE,
           min_new_tokens: int = 0, max_new_tokens: int | None = None,
           stats: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
    """Return an iterator of float32 audio chunks of one text chunk while its codes are being generated.

    Each chunk vocodes only frames not yet played plus ``CONTEXT_FRAMES`` on each side (more
    than HiFiGAN's receptive field), so its samples equal those of vocoding the whole utterance
    and the total work grows linearly with length (stock re-vocodes everything each chunk).
    Joins are additionally crossfaded over ``crossfade`` samples. The first chunk comes after
    ``first_chunk_tokens`` codes, later ones every ``chunk_tokens``. Same seed, same codes as
    ``generate``. ``stats`` (if given) receives timings (gpt, vocoder), gpt_tokens,
    ttfa_seconds (call to first chunk) and chunks.
    """
    import torch

    if first_chunk_tokens < 1 or chunk_tokens < 1:
        raise LabError(f"chunk sizes must be at least 1 token, got {first_chunk_tokens!r}, {chunk_tokens!r}")
    if crossfade < 0:
        raise LabError(f"crossfade must be >= 0 samples, got {crossfade!r}")
    # The decorator form of inference_mode re-enters it around each step of a generator, so the
    # caller's code between chunks does not run in inference mode.
    return torch.inference_mode()(_stream)(
        model, text_tokens, gpt_cond_latent, speaker_embedding, settings or GenerationSettings(),
        speed, first_chunk_tokens, chunk_tokens, crossfade, min_new_tokens, max_new_tokens, stats)


def stream_row(model: Any, handle: RowHandle, speaker_embedding: "torch.Tensor", *, speed: float = 1.0,
               first_chunk_tokens: int = STREAM_FIRST_TOKENS, chunk_tokens: int = STREAM_CHUNK_TOKENS,
               crossfade: int = STREAM_CROSSFADE, stats: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
    """``stream`` for the next text chunk of a ``BatchDecoder`` row: its audio, chunk by chunk, as
    the batch samples its codes (the same vocoding and the same samples as ``stream``)."""
    import torch

    if first_chunk_tokens < 1 or chunk_tokens < 1:
        raise LabError(f"chunk sizes must be at least 1 token, got {first_chunk_tokens!r}, {chunk_tokens!r}")
    return torch.inference_mode()(_stream)(
        model, None, None, speaker_embedding, None, speed, first_chunk_tokens, chunk_tokens, crossfade,
        0, None, stats, handle.tokens)


def _stream(model, text_tokens, gpt_cond_latent, speaker_embedding, settings, speed, first_chunk_tokens,
            chunk_tokens, crossfade, min_new_tokens, max_new_tokens, stats, decoded=None) -> Iterator[np.ndarray]:
    """The body of ``stream`` and ``stream_row`` (a generator; see there). ``decoded``: a callable
    that takes the timings dict and returns the (code, latent) iterator (a decoder row's
    ``tokens``) instead of decoding here."""
    import torch

    t_start = time.perf_counter()
    device = next(model.hifigan_decoder.parameters()).device
    g = speaker_embedding.to(device)
    frames = _FrameStream(model, speed)
    fpt = frames_per_token(model, speed)
    first_frames = max(1, math.ceil(first_chunk_tokens * fpt))
    later_frames = max(1, math.ceil(chunk_tokens * fpt))
    gen_timings: dict[str, float] = {}
    latents: list[Any] = []
    tail = None          # samples computed but held back to crossfade with the next chunk
    pos = 0              # samples emitted so far (the tail starts here)
    t_voc = 0.0
    n_chunks = 0
    ttfa = None

    def render(done: bool) -> "np.ndarray | None":
        nonlocal tail, pos, t_voc
        wanted = first_frames if pos == 0 else later_frames
        # Cheap estimate first (a few frames at the end are never final): the exact count below
        # interpolates all latents so far, which is only worth doing when a chunk may be due.
        if not done and (len(latents) * fpt - 4 - CONTEXT_FRAMES) * HOP_SAMPLES - pos < wanted * HOP_SAMPLES:
            return None
        t0 = time.perf_counter()
        z, n_final = frames.frames(torch.stack(latents)[None], done)
        end = z.shape[-1] if done else n_final - CONTEXT_FRAMES  # frames before this have final audio
        if not done and end * HOP_SAMPLES - pos < wanted * HOP_SAMPLES:
            t_voc += time.perf_counter() - t0
            return None
        a = max(0, pos // HOP_SAMPLES - CONTEXT_FRAMES)
        b = z.shape[-1] if done else min(n_final, end + CONTEXT_FRAMES)
        # Window lengths vary from chunk to chunk; oneDNN's per-shape set-up measured ~0.03 s at
        # most, less than padding windows to a few fixed lengths would cost.
        with _vocoder_autocast(model):
            wav = frames.dec.waveform_decoder(z[:, a:b], g=g).float().reshape(-1)
        seg = wav[pos - a * HOP_SAMPLES: end * HOP_SAMPLES - a * HOP_SAMPLES].clone()
        k = min(len(tail), len(seg)) if tail is not None else 0
        if k:  # both chunks computed these samples; blend the old into the new
            fade = torch.linspace(0.0, 1.0, k, device=seg.device)
            seg[:k] = tail[:k] * (1.0 - fade) + seg[:k] * fade
        hold = 0 if done else min(crossfade, len(seg))
        out, tail = seg[: len(seg) - hold], seg[len(seg) - hold:]
        pos += len(out)
        t_voc += time.perf_counter() - t0
        return out.cpu().numpy().astype(np.float32, copy=False)

    source = (decoded(gen_timings) if decoded is not None else
              _decode(model, text_tokens, gpt_cond_latent, settings, min_new_tokens, max_new_tokens, gen_timings))
    for _code, latent in source:
        latents.append(latent)
        chunk = render(done=False)
        if chunk is not None and len(chunk):
            ttfa = time.perf_counter() - t_start if ttfa is None else ttfa
            n_chunks += 1
            yield chunk
    chunk = render(done=True)
    if chunk is not None and len(chunk):
        ttfa = time.perf_counter() - t_start if ttfa is None else ttfa
        n_chunks += 1
        yield chunk
    if stats is not None:
        stats["timings"] = {"gpt": gen_timings.get("prefill", 0.0) + gen_timings.get("decode", 0.0),
                            "vocoder": t_voc}
        stats["gpt_tokens"] = len(latents)
        stats["ttfa_seconds"] = ttfa
        stats["chunks"] = n_chunks


# ---------------------------------------------------------------------------------------------
# Measuring the precision modes
# ---------------------------------------------------------------------------------------------

def teacher_forced_latents(model: Any, text_tokens: "torch.Tensor", gpt_cond_latent: "torch.Tensor",
                           codes: "torch.Tensor") -> "torch.Tensor":
    """The latents [1, n, dim] ``model`` computes for given codes [1, n], in one forward pass.

    This is what stock's second GPT forward computes, here in the model's current precision:
    feeding the same (fp32-sampled) codes to a bf16 or int8 model measures the latent error of
    the precision alone, without the sampling divergence that free-running generation adds.
    """
    import torch
    import torch.nn.functional as F

    fast = _fast(model)
    with torch.inference_mode():
        prefix = fast.prompt(gpt_cond_latent.to(fast.device), text_tokens.to(fast.device))
        fed = codes[0, :-1].to(fast.device)  # the last code is sampled, never fed back
        x = torch.cat([prefix, fast.mel_embedding[fed] + fast.mel_pos[1: 1 + len(fed)]])
        fast._kv(x.shape[0])
        hidden = fast.forward(x, 0)[prefix.shape[0] - 1:]
        latents = F.layer_norm(hidden, (fast.dim,), *fast.final_norm[:2], fast.final_norm[2])
    return latents[None]
