"""Signal processing for every synthesis, in plain numpy (plus soxr for resampling).

The per-row path (signal metrics, the espeak engine, the waveform and spectrogram images) used
librosa and pyloudnorm. librosa's numba kernels compile on their first call (30-45 s in a new
environment, seconds in every new process) and pyloudnorm imports scipy.signal (~1 s), all for
a synthesis that takes 0.01 s. These functions compute the same things with numpy's FFT:

* :func:`yin` is librosa 0.11's ``yin`` (same framing, threshold, parabolic refinement);
* :func:`frame_rms_db` is ``librosa.feature.rms`` with ``center=True``, in dB;
* :func:`integrated_loudness` is ITU-R BS.1770-4 as pyloudnorm computes it (its K-weighting
  biquads, 400 ms blocks with 75 % overlap, -70 LUFS and -10 LU gates), the filters applied
  through their exact frequency response instead of ``scipy.signal.lfilter``;
* :func:`stft` / :func:`time_stretch` are a Hann STFT and a phase vocoder as librosa's.

tests/test_dsp.py checks each against the library it replaces.
"""

from __future__ import annotations

import numpy as np


def frames(y: np.ndarray, frame: int, hop: int, *, center: bool = True) -> np.ndarray:
    """``(n_frames, frame)`` view of ``y``; with ``center`` frame k is centred on sample k*hop
    (zero padding of frame//2 at both ends, as librosa's ``center=True``)."""
    y = np.asarray(y)
    if center:
        y = np.pad(y, frame // 2)
    if len(y) < frame:
        y = np.pad(y, (0, frame - len(y)))
    return np.lib.stride_tricks.sliding_window_view(y, frame)[::hop]


def resample(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    """``audio`` at ``target`` Hz with soxr's HQ filter, length ceil(n * target / sr) (float32).

    The same call and length rule as ``librosa.resample(res_type="soxr_hq")``.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if sr == target:
        return audio
    import soxr

    out = soxr.resample(audio, sr, target, quality="HQ")
    n = int(np.ceil(len(audio) * target / sr))
    out = out[:n] if len(out) >= n else np.pad(out, (0, n - len(out)))
    return np.ascontiguousarray(out, dtype=np.float32)


def frame_rms_db(y: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """RMS level in dBFS of each centred ``frame``-sample window, every ``hop`` samples."""
    f = frames(np.asarray(y, dtype=np.float64), frame, hop)
    rms = np.sqrt(np.mean(f * f, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def yin(y: np.ndarray, *, fmin: float, fmax: float, sr: int, frame: int, hop: int,
        trough_threshold: float = 0.1) -> np.ndarray:
    """F0 in Hz of each centred frame by YIN (de Cheveigné and Kawahara 2002), as librosa.yin."""
    f = frames(np.asarray(y, dtype=np.float64), frame, hop).T  # (frame, n_frames)
    min_period = int(np.floor(sr / fmax))
    max_period = min(int(np.ceil(sr / fmin)), frame - 1)
    # Autocorrelation by FFT (zero-padded to 2*frame: no circular wrap at the lags used).
    spec = np.fft.rfft(f, n=2 * frame, axis=0)
    acf = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, n=2 * frame, axis=0)[: max_period + 1]
    # Difference function d(k) = 2 (r(0) - r(k)) - sum_{m<k} y(m)^2 (librosa's form).
    energy = np.cumsum(f * f, axis=0)
    d = np.zeros((max_period + 1, f.shape[1]))
    d[1:] = 2.0 * (acf[0:1] - acf[1:]) - energy[:max_period]
    # Cumulative mean normalised difference.
    k = np.arange(1, max_period + 1)[:, None]
    cum_mean = np.cumsum(d[1:], axis=0) / k
    cmnd = d[min_period: max_period + 1] / (cum_mean[min_period - 1: max_period] + np.finfo(float).tiny)
    # Parabolic refinement around each bin (0 where the optimum would move more than a bin).
    shifts = np.zeros_like(cmnd)
    x_prev, x0, x_next = cmnd[:-2], cmnd[1:-1], cmnd[2:]
    a = x_next + x_prev - 2 * x0
    b = (x_next - x_prev) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shifts[1:-1] = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a)
    # First trough under the threshold, else the global minimum.
    padded = np.pad(cmnd, ((1, 1), (0, 0)), mode="edge")
    is_trough = (cmnd < padded[:-2]) & (cmnd <= padded[2:])
    is_trough[0] = cmnd[0] < cmnd[1]
    below = is_trough & (cmnd < trough_threshold)
    period = np.argmax(below, axis=0)
    none = ~below.any(axis=0)
    period[none] = np.argmin(cmnd, axis=0)[none]
    cols = np.arange(cmnd.shape[1])
    return sr / (min_period + period + shifts[period, cols])


# -- loudness (ITU-R BS.1770-4) ---------------------------------------------------------------------
LOUDNESS_BLOCK_S = 0.4   # gating block
LOUDNESS_OVERLAP = 0.75  # of consecutive blocks
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0


def _biquad(kind: str, gain_db: float, q: float, fc: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ cookbook coefficients ``(b, a)`` normalised by a0 (pyloudnorm's K-weighting design)."""
    A = 10 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * fc / sr
    alpha = np.sin(w0) / (2.0 * q)
    cos = np.cos(w0)
    if kind == "high_shelf":
        b = [A * ((A + 1) + (A - 1) * cos + 2 * np.sqrt(A) * alpha), -2 * A * ((A - 1) + (A + 1) * cos),
             A * ((A + 1) + (A - 1) * cos - 2 * np.sqrt(A) * alpha)]
        a = [(A + 1) - (A - 1) * cos + 2 * np.sqrt(A) * alpha, 2 * ((A - 1) - (A + 1) * cos),
             (A + 1) - (A - 1) * cos - 2 * np.sqrt(A) * alpha]
    else:  # high_pass
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        a = [1 + alpha, -2 * cos, 1 - alpha]
    return np.array(b) / a[0], np.array(a) / a[0]


def k_weight(audio: np.ndarray, sr: int) -> np.ndarray:
    """The K-weighting filter (1.5 kHz +4 dB shelf, then 38 Hz high-pass), zero initial state.

    Applied as X(w)·H(w) over an FFT one second longer than the clip: the filters' impulse
    responses have died out long before that, so this equals the recursive filter to float
    precision, without scipy.
    """
    x = np.asarray(audio, dtype=np.float64)
    n = len(x)
    size = 1 << int(np.ceil(np.log2(n + sr)))
    z = np.exp(-1j * 2 * np.pi * np.fft.rfftfreq(size))  # z^-1 on the rfft grid
    h = np.ones_like(z)
    for b, a in (_biquad("high_shelf", 4.0, 1 / np.sqrt(2), 1500.0, sr), _biquad("high_pass", 0.0, 0.5, 38.0, sr)):
        h *= (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)
    return np.fft.irfft(np.fft.rfft(x, n=size) * h, n=size)[:n]


def integrated_loudness(audio: np.ndarray, sr: int) -> float:
    """Gated integrated loudness of a mono clip in LUFS (-inf when every block is gated out)."""
    y = k_weight(audio, sr)
    block = LOUDNESS_BLOCK_S * sr
    step = 1.0 - LOUDNESS_OVERLAP
    n_blocks = int(np.round((len(y) / sr - LOUDNESS_BLOCK_S) / (LOUDNESS_BLOCK_S * step))) + 1
    power = np.concatenate([[0.0], np.cumsum(y * y)])
    lo = (LOUDNESS_BLOCK_S * (np.arange(n_blocks) * step) * sr).astype(int)
    hi = (LOUDNESS_BLOCK_S * (np.arange(n_blocks) * step + 1) * sr).astype(int)
    hi = np.minimum(hi, len(y))
    z = (power[hi] - power[np.minimum(lo, hi)]) / block
    with np.errstate(divide="ignore"):
        level = -0.691 + 10.0 * np.log10(z)
        gated = z[level >= ABSOLUTE_GATE_LUFS]
        if not len(gated):
            return float("-inf")
        relative = -0.691 + 10.0 * np.log10(gated.mean()) + RELATIVE_GATE_LU
        kept = z[(level > relative) & (level > ABSOLUTE_GATE_LUFS)]
        return float(-0.691 + 10.0 * np.log10(kept.mean())) if len(kept) else float("-inf")


# -- STFT and time stretch ---------------------------------------------------------------------------
def _hann(n: int) -> np.ndarray:
    """Periodic Hann window (scipy's ``get_window("hann", n)``, librosa's default)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def stft(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Complex STFT ``(1 + n_fft // 2, n_frames)``: periodic Hann window, centred zero-padded frames."""
    return np.fft.rfft(frames(np.asarray(y, dtype=np.float64), n_fft, hop) * _hann(n_fft), axis=1).T


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log = hz >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def mel_filters(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """``(n_mels, 1 + n_fft // 2)`` triangular filters from 0 Hz to sr/2 on Slaney's mel scale with
    Slaney's area normalisation: librosa's ``filters.mel`` defaults."""
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    width = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]


def mel_power(y: np.ndarray, sr: int, n_fft: int, hop: int, n_mels: int) -> np.ndarray:
    """``(n_mels, n_frames)`` mel power spectrogram: librosa's ``feature.melspectrogram`` defaults
    (periodic Hann, centred zero-padded frames, power 2) without librosa and its JIT start-up."""
    return mel_filters(sr, n_fft, n_mels) @ (np.abs(stft(y, n_fft, hop)) ** 2)


def power_to_db(power: np.ndarray, *, amin: float = 1e-10, top_db: float = 80.0) -> np.ndarray:
    """Decibels relative to the maximum, floored ``top_db`` below it (``librosa.power_to_db(S, ref=np.max)``)."""
    db = 10.0 * np.log10(np.maximum(amin, power)) - 10.0 * np.log10(max(amin, float(np.max(power))))
    return np.maximum(db, db.max() - top_db)


def istft(spec: np.ndarray, hop: int, length: int) -> np.ndarray:
    """Inverse of :func:`stft` by windowed overlap-add, cut to ``length`` samples."""
    n_fft = 2 * (spec.shape[0] - 1)
    window = _hann(n_fft)
    chunks = np.fft.irfft(spec.T, n=n_fft, axis=1) * window
    total = n_fft + hop * (chunks.shape[0] - 1)
    out, norm = np.zeros(total), np.zeros(total)
    for i, chunk in enumerate(chunks):
        out[i * hop: i * hop + n_fft] += chunk
        norm[i * hop: i * hop + n_fft] += window ** 2
    out /= np.where(norm > 1e-10, norm, 1.0)
    out = out[n_fft // 2:]
    return out[:length] if len(out) >= length else np.pad(out, (0, length - len(out)))


def time_stretch(y: np.ndarray, rate: float, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """``y`` played ``rate`` times faster at the same pitch (phase vocoder, as librosa's).

    Output length is round(len(y) / rate).
    """
    spec = stft(y, n_fft, hop)
    steps = np.arange(0, spec.shape[1], rate)
    spec = np.pad(spec, ((0, 0), (0, 2)))
    expected = np.linspace(0, np.pi * hop, spec.shape[0])  # phase advance per hop of each bin
    phase = np.angle(spec[:, 0])
    out = np.empty((spec.shape[0], len(steps)), dtype=complex)
    for t, step in enumerate(steps):
        left, right = spec[:, int(step)], spec[:, int(step) + 1]
        alpha = step - int(step)
        out[:, t] = ((1 - alpha) * np.abs(left) + alpha * np.abs(right)) * np.exp(1j * phase)
        delta = np.angle(right) - np.angle(left) - expected
        delta -= 2 * np.pi * np.round(delta / (2 * np.pi))
        phase += expected + delta
    return istft(out, hop, int(round(len(y) / rate))).astype(np.float32)
