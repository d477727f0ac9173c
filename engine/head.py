"""The embedding head: a small network on top of the frozen backbone's features.

Why a head at all: pretrained features place songs by tags they were trained on,
and they are not robust to a phone in a room.  The index builder fine-tunes this
head on the catalogue's own audio (contrastive, clean vs. degraded views), which
is cheap because backbone features are cached.  Before any training, the head is a
*sane default*: per-dimension standardisation followed by a fixed, seeded
orthogonal projection (a Johnson-Lindenstrauss map, so cosine neighbourhoods of
the standardised features are kept) plus an MLP branch initialised to zero.

A checkpoint carries its metadata (backbone model id, dimensions, training data
hash, date), and the head's own id is a hash of its weights, so an index built
with one head is never queried with another.
"""

from __future__ import annotations

import hashlib
import io
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .errors import ModelError
from .fileio import atomic_write_bytes

log = logging.getLogger(__name__)

HEAD_FORMAT_VERSION = 1


class EmbeddingHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int = 256, hidden: int = 512, seed: int = 0) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.hidden = in_dim, out_dim, hidden
        self.register_buffer("feat_mean", torch.zeros(in_dim))
        self.register_buffer("feat_std", torch.ones(in_dim))
        gen = torch.Generator().manual_seed(seed)
        self.skip = nn.Linear(in_dim, out_dim, bias=False)
        # one thread: LAPACK's blocked QR rounds differently with more threads, and the untrained
        # head's id (a hash of its weights) must not depend on a process's torch thread count
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                q, _ = torch.linalg.qr(torch.randn(max(in_dim, out_dim), max(in_dim, out_dim), generator=gen))
        finally:
            torch.set_num_threads(threads)
        with torch.no_grad():
            self.skip.weight.copy_(q[:out_dim, :in_dim] * np.sqrt(max(in_dim, out_dim) / in_dim))
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        with torch.no_grad():
            for m in self.mlp:
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=(1.0 / m.in_features) ** 0.5, generator=gen)
                    nn.init.zeros_(m.bias)
            # zero last layer: the untrained head is exactly the orthogonal projection
            nn.init.zeros_(self.mlp[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.feat_mean) / self.feat_std
        return F.normalize(self.skip(z) + self.mlp(z), dim=-1)

    @torch.no_grad()
    def fit_normalisation(self, features: np.ndarray) -> None:
        """Set the standardisation from catalogue features (unsupervised, one pass)."""
        f = torch.as_tensor(np.asarray(features, dtype=np.float32))
        self.feat_mean.copy_(f.mean(0))
        self.feat_std.copy_(f.std(0).clamp_min(1e-3))

    def embed(self, features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.forward(torch.as_tensor(np.asarray(features, dtype=np.float32))).numpy()

    def weights_sha256(self) -> str:
        """Hash of the tensors in a canonical order (torch.save bytes are not stable)."""
        h = hashlib.sha256()
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().astype("<f4").tobytes())
        return h.hexdigest()


class LoadedHead:
    """A head plus its metadata, and the id the index is keyed on."""

    def __init__(self, head: EmbeddingHead, meta: dict[str, Any]) -> None:
        self.head = head.eval()
        self.meta = meta

    @property
    def sha(self) -> str:
        """The head's part of the model id.

        A loaded checkpoint is named by a hash of its weights.  The untrained default is
        named by its recipe instead: its weights come from a seeded QR whose last bits
        differ between CPUs / BLAS builds, and an index built in Docker must still be
        queryable on the host.
        """
        if self.meta.get("default"):
            return f"default{HEAD_FORMAT_VERSION}-{self.head.in_dim}x{self.head.out_dim}"
        return self.head.weights_sha256()[:12]

    @property
    def trained(self) -> bool:
        return bool(self.meta.get("trained"))


def default_head(in_dim: int, out_dim: int, backbone_id: str) -> LoadedHead:
    head = EmbeddingHead(in_dim, out_dim)
    return LoadedHead(head, {"backbone": backbone_id, "in_dim": in_dim, "out_dim": out_dim, "trained": False,
                             "default": True, "created": None, "train_data_hash": None})


def save_head(path: Path, head: EmbeddingHead, meta: dict[str, Any]) -> None:
    """Atomic write: a crash mid-save never leaves a half checkpoint behind."""
    meta = dict(meta)
    meta.pop("default", None)  # a saved head is named by its weights
    meta.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    meta.update(in_dim=head.in_dim, out_dim=head.out_dim, hidden=head.hidden, format=HEAD_FORMAT_VERSION)
    buf = io.BytesIO()
    torch.save({"state_dict": head.state_dict(), "meta": meta}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_head(path: Path | None, in_dim: int, out_dim: int, backbone_id: str) -> LoadedHead:
    """The trained head at ``path`` if it exists, else the untrained default."""
    if path is None or not Path(path).exists():
        return default_head(in_dim, out_dim, backbone_id)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        meta = ckpt["meta"]
        head = EmbeddingHead(int(meta["in_dim"]), int(meta["out_dim"]), int(meta.get("hidden", 512)))
        head.load_state_dict(ckpt["state_dict"])
    except Exception as exc:
        raise ModelError(f"cannot read head checkpoint {path}: {exc}") from exc
    if meta.get("backbone") != backbone_id:
        raise ModelError(
            f"head {path} was trained on backbone {meta.get('backbone')!r}, but the backbone is {backbone_id!r}; "
            "retrain it (synesthete-index train) or change SYNESTHETE_BACKBONE"
        )
    log.info("loaded head %s (trained=%s, %s)", path, meta.get("trained"), meta.get("created"))
    return LoadedHead(head, meta)
