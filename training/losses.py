"""Training losses: BCE + the boundary-sensitive term of SAMIHS (paper eq. 4-6).

``L_bd = 1 - 2 g TP / (2 g TP + FP + FN)`` with soft TP/FP/FN from probabilities and
``g = 1 - C / S``, where C counts the ground truth's boundary pixels (foreground pixels with a
background 4-neighbour) and S its foreground pixels. The authors' code uses a different form
(``authors_boundary_loss``); both are available, the paper's is the default.
"""

import torch
import torch.nn.functional as F

_CROSS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def boundary_pixels(target: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) binary target -> (B,) count of foreground pixels on its boundary."""
    neighbours = F.conv2d(target.float(), _CROSS.to(target.device), padding=1)
    return ((neighbours < 5) & (target > 0.5)).flatten(1).sum(dim=1).float()


def boundary_weight(target: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """g = max(1 - C / S, floor) per sample (0 for an empty target)."""
    size = (target > 0.5).flatten(1).sum(dim=1).float()
    g = (1.0 - boundary_pixels(target) / size.clamp(min=1.0)).clamp(min=floor)
    return torch.where(size > 0, g, torch.zeros_like(size))


def paper_boundary_loss(probabilities: torch.Tensor, target: torch.Tensor, eps: float = 1e-6,
                        weight_floor: float = 0.0) -> torch.Tensor:
    """Mean over the batch of ``1 - 2gTP / (2gTP + FP + FN)``.

    A bleed one or two pixels wide is all boundary (g = 0): the term is then 1 whatever the answer,
    with no gradient. ``weight_floor`` 0.5 makes it the soft Jaccard loss there (at g = 0.5 the
    term is 1 - TP / (TP + FP + FN)) and leaves every target with g >= 0.5 as the paper has it."""
    p, t = probabilities.flatten(1), target.float().flatten(1)
    tp = (p * t).sum(dim=1)
    fp = (p * (1 - t)).sum(dim=1)
    fn = ((1 - p) * t).sum(dim=1)
    g = boundary_weight(target, weight_floor)
    return (1.0 - (2 * g * tp + eps) / (2 * g * tp + fp + fn + eps)).mean()


def authors_boundary_loss(probabilities: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The mileswyn/SAMIHS code's variant: alpha = min(2(1 - C/S) - 1, 0.8) over the batch and
    ``(Σp² + Σt² - 2I) / (Σp² + Σt² - (1 + alpha) I)``."""
    t = target.float()
    boundary, size = boundary_pixels(target).sum(), (t > 0.5).sum().float()
    alpha = min(float(2 * (1 - (boundary + eps) / (size + eps)) - 1), 0.8)
    intersect, y_sum, z_sum = (probabilities * t).sum(), (t * t).sum(), (probabilities * probabilities).sum()
    return (z_sum + y_sum - 2 * intersect + eps) / (z_sum + y_sum - (1 + alpha) * intersect + eps)


def samihs_loss(logits: torch.Tensor, target: torch.Tensor, boundary: str = "paper", bce_weight: float = 0.5,
                pos_weight: float = 2.0, boundary_weight_floor: float = 0.0) -> torch.Tensor:
    """``bce_weight * BCE + (1 - bce_weight) * L_bd``; ``boundary`` is "paper", "authors" or "none"
    (BCE only, the ablation). ``pos_weight`` 2 as in the authors' code. ``boundary_weight_floor``
    (paper form only): see :func:`paper_boundary_loss`."""
    if boundary_weight_floor and boundary != "paper":
        raise ValueError(f"boundary_weight_floor applies to the paper's boundary loss, not {boundary!r}.")
    bce = F.binary_cross_entropy_with_logits(logits, target.float(),
                                             pos_weight=torch.tensor(pos_weight, device=logits.device))
    if boundary == "none":
        return bce
    if boundary == "paper":
        term = paper_boundary_loss(torch.sigmoid(logits), target, weight_floor=boundary_weight_floor)
    elif boundary == "authors":
        term = authors_boundary_loss(torch.sigmoid(logits), target)
    else:
        raise ValueError(f"Unknown boundary loss {boundary!r}; use 'paper', 'authors' or 'none'.")
    return bce_weight * bce + (1 - bce_weight) * term
