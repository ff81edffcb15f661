"""The int8/int4 GPT blocks on ONNX Runtime (components.engines.xtts.ort_gpt) on the tiny generated checkpoint.

What is checked: the weight packing is the layout ORT's ``MatMulNBits`` kernel reads, the graph
computes the same GPT-2 blocks as the fp32 torch path (given the same quantised weights, only the
int8 activations differ), and batched steps over rows of different lengths give each row what it
gets alone (``GroupQueryAttention``'s per-row lengths, no padding cross-talk). What is not: how
int8/int4 *sound* with the real weights.
"""

from __future__ import annotations

import numpy as np
import pytest

from components.core import LabError


def _matmul_session(K: int, N: int, bits: int, block: int, packed, scales):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("MatMulNBits", ["x", "q", "s"], ["y"], domain="com.microsoft",
                            K=K, N=N, bits=bits, block_size=block, accuracy_level=4)
    graph = helper.make_graph([node], "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", N])],
                              [numpy_helper.from_array(packed, "q"), numpy_helper.from_array(scales, "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("bits", [8, 4])
def test_packed_weights_are_what_matmulnbits_multiplies_by(bits):
    import torch

    from components.engines.xtts.ort_gpt import dequantize_blocks, quantize_blocks

    torch.manual_seed(0)
    K, N, block = 256, 96, 64
    w = torch.randn(K, N) * 0.05
    packed, scales = quantize_blocks(w, bits, block)
    assert packed.shape == (N, K // block, block * bits // 8) and scales.shape == (N * K // block,)
    deq = dequantize_blocks(packed, scales, bits, K)
    # Rounding error: at most half a step of each block's scale.
    step = np.repeat(scales.reshape(N, K // block), block, axis=1).T
    assert np.all(np.abs(deq - w.numpy()) <= step / 2 + 1e-7)
    x = np.random.default_rng(1).standard_normal((3, K)).astype(np.float32)
    y = _matmul_session(K, N, bits, block, packed, scales).run(None, {"x": x})[0]
    ref = x @ deq
    # The kernel quantises x to int8 per block (accuracy_level 4): ~1% error, not a layout mix-up
    # (a transposed or mis-nibbled matrix gives an error of the order of the result itself).
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 0.02


def test_matrix_sizes_pick_a_block_that_divides_them():
    from components.engines.xtts.ort_gpt import BLOCK, block_size

    assert block_size(1024) == BLOCK and block_size(4096) == BLOCK
    assert block_size(64) == 64 and block_size(48) == 16
    with pytest.raises(LabError, match="blocks of 16"):
        block_size(40)


def _dequantized_copy(xtts_dir, bits):
    """The tiny model in fp32 with its GPT matrices replaced by their own quantised values, so
    int8/int4 re-quantise them without loss and only the activation rounding differs."""
    import torch

    from components.engines.xtts import fast
    from components.engines.xtts.ort_gpt import block_size, dequantize_blocks, quantize_blocks

    model = fast.load_fast(xtts_dir)
    with torch.no_grad():
        for blk in model.gpt.gpt.h:
            for conv in (blk.attn.c_attn, blk.attn.c_proj, blk.mlp.c_fc, blk.mlp.c_proj):
                K = conv.weight.shape[0]
                packed, scales = quantize_blocks(conv.weight, bits, block_size(K))
                conv.weight = torch.nn.Parameter(torch.from_numpy(dequantize_blocks(packed, scales, bits, K)))
    return model


@pytest.mark.parametrize("precision,bits", [("int8", 8), ("int4", 4)])
def test_onnx_blocks_compute_the_torch_blocks(xtts_dir, precision, bits):
    import torch

    from components.engines.xtts import fast

    model = _dequantized_copy(xtts_dir, bits)
    exact = fast.FastGPT(model.gpt, "fp32", torch.device("cpu"))
    low = fast.FastGPT(model.gpt, precision, torch.device("cpu"))
    assert low.ort is not None and not low.blocks
    torch.manual_seed(2)
    prompt = torch.randn(20, exact.dim)
    with torch.inference_mode():
        exact._kv(32)
        low._kv(32)
        outs = [(prompt, exact.forward(prompt, 0), low.forward(prompt, 0))]
        for i in range(5):  # decode steps reading the cache the prompt wrote
            x = torch.randn(1, exact.dim)
            outs.append((x, exact.forward(x, 20 + i), low.forward(x, 20 + i)))
    for x, ref, got in outs:
        assert got.shape == ref.shape
        # Measured against what the blocks add: with small random weights the residual stream
        # is mostly the input, so ln_f(input) alone is already within ~2% of the output.
        skipped = torch.nn.functional.layer_norm(x, (exact.dim,), *exact.ln_f[:2], exact.ln_f[2])
        assert float((got - ref).norm() / (ref - skipped).norm()) < 0.05


def test_batched_steps_keep_rows_apart(xtts_dir):
    """Three rows with prompts of 7, 15 and 11 positions decode together; each row's states equal
    its own decoding alone (so no row sees another's keys or the padding after its own)."""
    import torch

    from components.engines.xtts import fast

    low = fast.FastGPT(fast.load_fast(xtts_dir).gpt, "int8", torch.device("cpu"))
    torch.manual_seed(3)
    lengths = [7, 15, 11]
    prompts = [torch.randn(n, low.dim) for n in lengths]
    steps = torch.randn(4, 3, low.dim)
    with torch.inference_mode():
        batch = low.new_cache(3, 32)
        for slot, p in enumerate(prompts):
            low.forward(p, 0, batch, slot)
        together = [low.step(steps[i], torch.tensor(lengths) + i, batch) for i in range(4)]
        for row, p in enumerate(prompts):
            alone = low.new_cache(1, 32)
            low.forward(p, 0, alone)
            for i in range(4):
                h = low.step(steps[i, row:row + 1], torch.tensor([lengths[row] + i]), alone)
                torch.testing.assert_close(together[i][row:row + 1], h, rtol=1e-4, atol=1e-4)


def test_quantised_modes_run_on_the_cpu_only(xtts_dir):
    import torch

    from components.engines.xtts import fast

    model = fast.load_fast(xtts_dir)
    with pytest.raises(LabError, match="runs on the CPU only"):
        fast.FastGPT(model.gpt, "int4", torch.device("meta"))
