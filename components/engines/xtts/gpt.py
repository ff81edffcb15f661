"""The XTTS GPT rearranged for decoding: packed weights, a preallocated KV cache, one token at a time.

Built by ``precision.apply_precision`` in one of the precision modes (see ``components.engines.xtts.fast``);
int8/int4 hand every block to ONNX Runtime (``ort_gpt``). Nothing here imports torch at module level.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.core import PRECISIONS, LabError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

ORT_PRECISIONS = ("int8", "int4")  # run by ONNX Runtime's quantised kernels (``ort_gpt``)


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

            from components.engines.xtts.ort_gpt import OrtBlocks

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
