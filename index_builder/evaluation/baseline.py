"""The reference every figure is compared with: MFCC + chroma + spectral-contrast statistics.

Mean and std over a whole excerpt, standardised on the catalogue, compared by
cosine: the classic hand-made descriptor, measured the same way as the models.
librosa is imported here only; eval is a dev tool, the engine never imports it.
"""

from __future__ import annotations

import numpy as np

from engine.embed import l2n


def mfcc_stats(samples: np.ndarray, sr: int) -> np.ndarray:
    """Mean and std of 20 MFCC, 12 chroma and 7 spectral-contrast bands (78-d)."""
    import librosa

    y = np.asarray(samples, np.float32)
    if len(y) < sr:
        y = np.pad(y, (0, sr - len(y)))
    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=512)) ** 2
    mel = librosa.feature.melspectrogram(S=S, sr=sr)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20)
    chroma = librosa.feature.chroma_stft(S=S, sr=sr)
    contrast = librosa.feature.spectral_contrast(S=np.sqrt(S), sr=sr, fmin=100.0, n_bands=6)
    f = np.concatenate([mfcc, chroma, contrast])
    return np.concatenate([f.mean(1), f.std(1)]).astype(np.float32)


def standardise(cat: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """``cat`` and ``others`` shifted and scaled by the catalogue's per-dimension mean and std."""
    mu, sd = cat.mean(0), cat.std(0) + 1e-6
    return [(cat - mu) / sd, *[(o - mu) / sd for o in others]]


def baseline_rankings(cat_stats: np.ndarray, query_stats: list[np.ndarray], k: int = 5,
                      ) -> tuple[np.ndarray, list[list[int]]]:
    """The baseline's track vectors (n, 78) and, per query, its k nearest tracks (indices, best first)."""
    q = np.stack(query_stats) if query_stats else np.zeros((0, cat_stats.shape[1]))
    mc, mq = standardise(cat_stats, q)
    mc_n, mq_n = l2n(mc), l2n(mq)
    return mc_n, [[int(j) for j in np.argsort(-(mc_n @ mq_n[i]))[:k]] for i in range(len(mq_n))]
