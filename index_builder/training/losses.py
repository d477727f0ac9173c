"""The training objectives (torch tensors in, a scalar loss out).

- :func:`info_nce` makes a phone recording of a moment land on that moment (and not
  on any other track's moment in the batch);
- :func:`relational_kd` keeps each patch's neighbourhood among the batch's other
  tracks what the untrained head gave, so the head keeps what the pretrained
  backbone knows about similarity while it learns robustness;
- :func:`sup_con` (``--supervised``) pulls tracks with the same label together.

torch is imported inside each function: importing the module costs nothing.
"""

from __future__ import annotations


def info_nce(a, b, temperature: float):
    """Symmetric InfoNCE: row i of ``a`` matches row i of ``b``; both L2-normalised."""
    import torch
    import torch.nn.functional as F

    logits = a @ b.T / temperature
    target = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def relational_kd(student, teacher, temperature: float):
    """KL(teacher || student) of each row's softmax over the *other* rows' cosines."""
    import torch
    import torch.nn.functional as F

    n = len(student)
    if n < 3:
        return student.sum() * 0.0
    mask = ~torch.eye(n, dtype=torch.bool)
    s = (student @ student.T / temperature)[mask].view(n, n - 1)
    t = (teacher @ teacher.T / temperature)[mask].view(n, n - 1)
    return F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), log_target=True, reduction="batchmean")


def sup_con(z, labels, temperature: float):
    """Supervised contrastive loss (Khosla et al. 2020) over rows with a label (>= 0)."""
    import torch

    keep = labels >= 0
    z, labels = z[keep], labels[keep]
    n = len(z)
    if n < 2:
        return z.sum() * 0.0
    logits = z @ z.T / temperature
    eye = torch.eye(n, dtype=torch.bool)
    logits = logits.masked_fill(eye, -1e9)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    has = pos.any(1)
    if not has.any():
        return z.sum() * 0.0
    return -(log_prob * pos).sum(1)[has].div(pos.sum(1)[has]).mean()
