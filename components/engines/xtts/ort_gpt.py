"""The XTTS GPT's transformer blocks as one ONNX Runtime graph with block-quantised weights.

Why: decoding one token reads every GPT weight once, so at batch 1 its floor is weight bytes /
memory bandwidth. Torch's eager loop misses that floor in two places: ~12 small ops per block
(layer norms, attention, cache writes, residuals) each pay Python and dispatcher overhead, 30
blocks deep, and fbgemm's dynamic int8 matrix kernel streams the weights well below bandwidth.
Here the whole step is one ``run`` of one graph built from ONNX Runtime's own kernels:

- ``MatMulNBits`` (com.microsoft): weight-only 8- or 4-bit matrices with one fp32 scale per
  block of ``BLOCK`` input rows; ``accuracy_level=4`` quantises the activations to int8 per block
  so the products run on VNNI/AMX integer units;
- ``GroupQueryAttention`` (com.microsoft, as many key/value heads as query heads): appends each
  row's key/value in place to a cache buffer it shares with torch (I/O binding on the same
  memory) and attends over each row's own length (``seqlens_k``), so rows of different lengths
  batch without padding noise;
- standard ``LayerNormalization``/``Add``/``Gelu``, fused by ORT's graph optimiser.

The cache stays a list of torch tensors ([slots, heads, capacity, head_dim] per layer), so the
batch code (slot moves, padding) works on it unchanged. Built from a loaded coqui GPT-2; nothing
is downloaded or exported from torch (the graph is written node by node).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from components.core import LabError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

BITS = {"int8": 8, "int4": 4}
# Input rows sharing one scale. 128 measured fastest of 32/64/128 for both widths on a Zen 4
# (int8 10.8 vs 12.3 ms, int4 6.8 vs 9.2 ms for the 30 blocks' matrices at batch 1); the
# per-block scale still tracks the weights more closely than a per-output-channel one.
BLOCK = 128


def block_size(K: int) -> int:
    """``BLOCK``, or for a matrix too small for it (test checkpoints) the largest power of two
    from 16 (the operator's minimum) that divides its ``K`` input rows."""
    block = BLOCK
    while K % block and block > 16:
        block //= 2
    if K % block:
        raise LabError(f"a {K}-row matrix does not split into blocks of 16 or more")
    return block


def quantize_blocks(w: "torch.Tensor", bits: int, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """``w`` [in=K, out=N] (GPT-2 Conv1D layout) -> MatMulNBits' (B, scales).

    Symmetric per block: q = round(w / s) with s = max|w| / (2^(bits-1) - 1) over each block of
    ``block`` consecutive input rows of an output column, stored as unsigned q + 2^(bits-1) (the
    operator's default zero point). B is uint8 [N, K/block, block*bits/8] (two 4-bit values per
    byte, low nibble first), scales fp32 [N * K/block].
    """
    import torch

    K, N = w.shape
    if K % block:
        raise LabError(f"a {K}-row matrix does not split into blocks of {block}")
    wt = w.detach().float().t().reshape(N, K // block, block)
    qmax = 2 ** (bits - 1) - 1
    scale = (wt.abs().amax(dim=-1) / qmax).clamp(min=1e-12)
    q = (torch.round(wt / scale[..., None]).clamp(-qmax - 1, qmax) + 2 ** (bits - 1)).to(torch.uint8)
    if bits == 4:
        q = q[..., 0::2] | (q[..., 1::2] << 4)
    return q.contiguous().numpy(), scale.reshape(-1).contiguous().numpy().astype(np.float32)


def dequantize_blocks(packed: np.ndarray, scales: np.ndarray, bits: int, K: int) -> np.ndarray:
    """Inverse of ``quantize_blocks``: the [K, N] fp32 matrix the operator multiplies by."""
    N, nb, _ = packed.shape
    q = packed.astype(np.int32)
    if bits == 4:
        q = np.stack([q & 0xF, q >> 4], axis=-1).reshape(N, nb, -1)
    w = (q - 2 ** (bits - 1)) * scales.reshape(N, nb, 1)
    return w.reshape(N, K).T.astype(np.float32)


def _session_from_files(model: Any, options: Any) -> Any:
    """An InferenceSession of ``model`` loaded from a temporary folder with its weights as external data.

    Why not from bytes: ORT then holds two copies of every weight (the parsed graph's and the
    kernels' prepacked one): +780 MB for the 370 MB of int8 matrices, measured. From files it
    memory-maps the originals, reads them once to prepack and leaves them as file pages the
    kernel can drop: +400 MB. The folder is deleted at once; on Linux the mappings outlive the
    file names (and where a mapped file cannot be deleted, cleanup errors are ignored).
    """
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="xtts-lab-gpt-", ignore_cleanup_errors=True) as folder:
        path = f"{folder}/blocks.onnx"
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="blocks.weights", size_threshold=1024)
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class OrtBlocks:
    """The blocks of a GPT-2 (``hf``: transformers ``GPT2Model``) plus its final ``ln_f``."""

    def __init__(self, hf: Any, precision: str, threads: int):
        import onnxruntime as ort

        if precision not in BITS:
            raise LabError(f"ONNX Runtime blocks run {', '.join(BITS)}, not {precision!r}")
        cfg = hf.config
        self.bits = BITS[precision]
        self.heads = cfg.n_head
        self.dim = cfg.n_embd
        self.head_dim = self.dim // self.heads
        model = self._graph(hf)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No spin-waiting after a step by default: the worker threads would keep a core busy
        # while torch samples the next token and while the lab's judges or another engine run.
        # Measured on 2 cores (int8, decode ms/token): quiet 11-14 spinning vs 15-16 not; with
        # one core busy elsewhere 33-38 spinning vs 18-20 not. XTTS_LAB_ORT_SPIN=1 turns it on.
        spin = "1" if os.environ.get("XTTS_LAB_ORT_SPIN", "0") == "1" else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        self.spinning = spin == "1"
        self.session = _session_from_files(model, options)
        # Binding the 2 x 30 cache buffers costs ~0.4 ms, so a binding is kept while a thread
        # steps the same cache slots (per thread: the server's decoder and an experiment's own
        # batch may run this graph at once); only the per-step inputs are bound again.
        self._bound = threading.local()

    def _graph(self, hf: Any):
        from onnx import TensorProto, helper, numpy_helper

        nodes, inits = [], []
        f32 = lambda a: np.ascontiguousarray(a.detach().float().numpy())  # noqa: E731

        def const(name: str, array: np.ndarray) -> str:
            inits.append(numpy_helper.from_array(array, name))
            return name

        def layer_norm(name: str, x: str, m: Any) -> str:
            nodes.append(helper.make_node(
                "LayerNormalization", [x, const(name + ".w", f32(m.weight)), const(name + ".b", f32(m.bias))],
                [name], axis=-1, epsilon=float(m.eps)))
            return name

        def linear(name: str, x: str, conv1d: Any) -> str:
            K, N = conv1d.weight.shape
            block = block_size(int(K))
            packed, scales = quantize_blocks(conv1d.weight, self.bits, block)
            nodes.append(helper.make_node(
                "MatMulNBits", [x, const(name + ".q", packed), const(name + ".s", scales)], [name + ".mm"],
                domain="com.microsoft", K=int(K), N=int(N), bits=self.bits, block_size=block, accuracy_level=4))
            nodes.append(helper.make_node("Add", [name + ".mm", const(name + ".bias", f32(conv1d.bias))], [name]))
            return name

        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", self.dim]),
                  helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["B"]),
                  helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, [])]
        outputs = [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["B", "S", self.dim])]
        cache_shape = ["B", self.heads, "C", self.head_dim]
        x = "x"
        for i, blk in enumerate(hf.h):
            p = f"h{i}"
            h = layer_norm(p + ".ln1", x, blk.ln_1)
            qkv = linear(p + ".qkv", h, blk.attn.c_attn)
            for kind in ("key", "value"):
                inputs.append(helper.make_tensor_value_info(f"past_{kind}.{i}", TensorProto.FLOAT, cache_shape))
                outputs.append(helper.make_tensor_value_info(f"present_{kind}.{i}", TensorProto.FLOAT, cache_shape))
            # Packed QKV in (key and value inputs empty); the cache is read and written in place.
            nodes.append(helper.make_node(
                "GroupQueryAttention",
                [qkv, "", "", f"past_key.{i}", f"past_value.{i}", "seqlens_k", "total_sequence_length"],
                [p + ".attn", f"present_key.{i}", f"present_value.{i}"], domain="com.microsoft",
                num_heads=self.heads, kv_num_heads=self.heads, scale=float(blk.attn.scaling)))
            proj = linear(p + ".proj", p + ".attn", blk.attn.c_proj)
            nodes.append(helper.make_node("Add", [x, proj], [p + ".x1"]))
            h = layer_norm(p + ".ln2", p + ".x1", blk.ln_2)
            fc = linear(p + ".fc", h, blk.mlp.c_fc)
            nodes.append(helper.make_node("Gelu", [fc], [p + ".gelu"], approximate="tanh"))
            out = linear(p + ".out", p + ".gelu", blk.mlp.c_proj)
            nodes.append(helper.make_node("Add", [p + ".x1", out], [p + ".x2"]))
            x = p + ".x2"
        nodes.append(helper.make_node(
            "LayerNormalization", [x, const("ln_f.w", f32(hf.ln_f.weight)), const("ln_f.b", f32(hf.ln_f.bias))],
            ["hidden"], axis=-1, epsilon=float(hf.ln_f.eps)))
        graph = helper.make_graph(nodes, "xtts_gpt_blocks", inputs, outputs, inits)
        # Opset 20 for Gelu's tanh approximation; contrib ops from the com.microsoft domain.
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)])

    def _cache_binding(self, cache: tuple[Sequence["torch.Tensor"], Sequence["torch.Tensor"]], first: int, B: int):
        """An I/O binding with slots first..first+B-1 of ``cache`` as past and present (in place)."""
        tensors = (*cache[0], *cache[1])
        key = (tuple(t.data_ptr() for t in tensors), tuple(tensors[0].shape), first, B)
        bound = self._bound
        if getattr(bound, "key", None) != key:
            io = self.session.io_binding()
            for kind, layers in (("key", cache[0]), ("value", cache[1])):
                for i, t in enumerate(layers):
                    part = t[first:first + B]  # contiguous: slots are the outermost dimension
                    shape = list(part.shape)
                    io.bind_input(f"past_{kind}.{i}", "cpu", 0, np.float32, shape, part.data_ptr())
                    io.bind_output(f"present_{kind}.{i}", "cpu", 0, np.float32, shape, part.data_ptr())
            bound.io, bound.key = io, key
        return bound.io

    def run(self, x: "torch.Tensor", cache: tuple[Sequence["torch.Tensor"], Sequence["torch.Tensor"]],
            first: int, seqlens: "torch.Tensor", total: int) -> "torch.Tensor":
        """Run ``x`` [B, S, dim] (fp32) for cache slots first..first+B-1; returns ``ln_f`` states [B, S, dim].

        Row b's S tokens sit at positions seqlens[b]-S+1..seqlens[b] (``seqlens`` int32: each
        row's length after this call, minus one); their keys/values are written into the cache
        at those positions. ``total`` is the longest row's length after the call. A multi-token
        call (S > 1) must be a row's whole prompt (total == S).
        """
        import torch

        B, S, _ = x.shape
        x = x.float().contiguous()
        seqlens = seqlens.to(torch.int32).contiguous()
        total_t = torch.tensor(int(total), dtype=torch.int32)
        out = torch.empty((B, S, self.dim), dtype=torch.float32)
        io = self._cache_binding(cache, first, B)
        io.bind_input("x", "cpu", 0, np.float32, [B, S, self.dim], x.data_ptr())
        io.bind_input("seqlens_k", "cpu", 0, np.int32, [B], seqlens.data_ptr())
        io.bind_input("total_sequence_length", "cpu", 0, np.int32, [], total_t.data_ptr())
        io.bind_output("hidden", "cpu", 0, np.float32, [B, S, self.dim], out.data_ptr())
        self.session.run_with_iobinding(io)
        return out
