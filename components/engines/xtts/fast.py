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

Where each job lives (this module only gathers their public names):

    gpt.py         FastGPT: packed GPT weights, KV cache, prompt, one-token and batched steps
    precision.py   apply_precision / precision_of: the packed GPT kept on the model, memory given back
    load.py        load_fast: a release folder loaded memory-mapped, without random initialisation
    decode.py      generate: one text chunk's codes and latents (single stream); teacher forcing
    batch.py       generate_batch: a static batch of rows sharing each GPT step
    continuous.py  BatchDecoder: requests joining a running batch
    vocoder.py     vocode / vocode_batch: HiFiGAN, one utterance or many rows in one call
    stream.py      stream / stream_row: chunked audio in linear time

Nothing here imports torch or coqui at module level (the lab's registry must stay light).
"""

from __future__ import annotations

from components.engines.xtts.batch import DEFAULT_BATCH, BatchDone, BatchItem, generate_batch
from components.engines.xtts.continuous import BatchDecodeError, BatchDecoder, RowHandle
from components.engines.xtts.decode import Generation, encode, generate, teacher_forced_latents
from components.engines.xtts.gpt import ORT_PRECISIONS, FastGPT
from components.engines.xtts.load import load_fast
from components.engines.xtts.precision import apply_precision, precision_of, release_mapped_pages
from components.engines.xtts.stream import (
    CONTEXT_FRAMES, STREAM_CHUNK_TOKENS, STREAM_CROSSFADE, STREAM_FIRST_TOKENS, frames_per_token, stream, stream_row,
)
from components.engines.xtts.vocoder import (
    HOP_SAMPLES, rows_per_vocoder_call, vocode, vocode_batch, vocode_rows, vocode_speeds,
)

__all__ = [
    "DEFAULT_BATCH", "BatchDone", "BatchItem", "generate_batch", "BatchDecodeError", "BatchDecoder", "RowHandle",
    "Generation", "encode", "generate", "teacher_forced_latents", "ORT_PRECISIONS", "FastGPT", "load_fast",
    "apply_precision", "precision_of", "release_mapped_pages", "CONTEXT_FRAMES", "STREAM_CHUNK_TOKENS",
    "STREAM_CROSSFADE", "STREAM_FIRST_TOKENS", "frames_per_token", "stream", "stream_row", "HOP_SAMPLES", "vocode",
    "rows_per_vocoder_call", "vocode_batch", "vocode_rows", "vocode_speeds",
]
