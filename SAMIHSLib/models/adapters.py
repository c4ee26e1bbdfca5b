"""Parameter-refactoring (PR) adapters of SAMIHS (arXiv 2311.08190, eq. 1-3).

Each adapted position (before multi-head attention, before the MLP) of every transformer
block computes

    m_out = m_in @ W_down @ diag(R_l) @ W_up + B_l + m_in

``W_down`` is shared by all blocks of one width at that position, ``W_up = W_down^T`` as in the
authors' code (this gives the ~174k parameters quoted for ViT-B at rank 100), and ``R_l``
(rescale, length ``rank``) and ``B_l`` (bias, length ``width``) belong to block ``l``. Both are
zero at init, so an adapted encoder starts exactly equal to the frozen one.
"""

from typing import Iterable, List

import torch
from torch import nn

from SAMIHSLib.models.config import AdapterConfig


class SharedAdapterBasis(nn.Module):
    """The shared down-projection ``W_down`` (width x rank) of one (position, width) pair."""

    def __init__(self, width: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.empty(width, rank))
        nn.init.xavier_uniform_(self.down)


class PRAdapter(nn.Module):
    """Per-block part of a PR adapter: rescale ``R_l`` and bias ``B_l``.

    The shared basis is held by reference (not as a submodule) so that it appears once in the
    state dict, under the encoder's ``adapter_bases``.
    """

    def __init__(self, basis: SharedAdapterBasis) -> None:
        super().__init__()
        width, rank = basis.down.shape
        self._basis: List[SharedAdapterBasis] = [basis]  # a list hides it from nn.Module registration
        self.rescale = nn.Parameter(torch.zeros(rank))
        self.bias = nn.Parameter(torch.zeros(width))

    @property
    def basis(self) -> SharedAdapterBasis:
        """The shared ``W_down`` this adapter uses (held by other blocks of the same width too)."""
        return self._basis[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        down = self._basis[0].down
        return x + (x @ (down * self.rescale)) @ down.t() + self.bias

    def fold_into_linear(self, linear: nn.Linear) -> None:
        """Fold this adapter into the linear layer it feeds: ``linear(adapter(x))`` becomes linear.

        The adapter is affine, ``x -> x @ A + B`` with ``A = I + W_down diag(R) W_down^T``, so
        ``W' = W @ A^T`` and ``b' = b + W @ B``. Used by inference engines that want plain graphs.
        """
        down = self._basis[0].down
        a = torch.eye(down.shape[0], dtype=down.dtype, device=down.device) + (down * self.rescale) @ down.t()
        with torch.no_grad():
            new_bias = linear.bias + linear.weight @ self.bias
            linear.weight.copy_(linear.weight @ a.t())
            linear.bias.copy_(new_bias)


class AdapterBank(nn.Module):
    """All shared bases of one encoder, keyed ``"<position>_<width>"``."""

    def __init__(self, config: AdapterConfig, widths: Iterable[int]) -> None:
        super().__init__()
        self.config = config
        self.bases = nn.ModuleDict()
        for position in config.positions:
            for width in sorted(set(widths)):
                self.bases[f"{position}_{width}"] = SharedAdapterBasis(width, config.rank)

    def make_adapter(self, position: str, width: int) -> "nn.Module":
        """A new per-block adapter for ``position`` at ``width``, or Identity when disabled."""
        if position not in self.config.positions:
            return nn.Identity()
        return PRAdapter(self.bases[f"{position}_{width}"])


def adapter_parameter_names(model: nn.Module) -> List[str]:
    """Names of every PR-adapter parameter of ``model`` (bases and per-block terms)."""
    return [
        name
        for name, _ in model.named_parameters()
        if ".adapter_bank." in f".{name}" or ".attn_adapter." in name or ".mlp_adapter." in name
    ]
