"""Which training slices a step draws: every slice equally often (as drawn), or subtypes balanced.

The real slices are dominated by one subtype (ct-ich is mostly epidural bleeds with fractures),
while subarachnoid and subdural bleeds are a few percent. ``subtype_balance`` = a draws subtype
group ``g`` (``n_g`` slices) with a share proportional to ``n_g ** (1 - a)``: 0 keeps the data's
proportions, 0.5 is square-root sampling, 1 draws every group equally often.
"""

import math
from collections import Counter
from typing import Iterator, List, Sequence

import torch

from .datasets import UNLABELLED_SUBTYPE


def subtype_group(flags: Sequence[str], counts: Counter) -> str:
    """A slice's group: its rarest subtype (a slice with a rare bleed counts as that rare bleed)."""
    return min(flags, key=lambda name: (counts[name], name)) if flags else UNLABELLED_SUBTYPE


def sampling_weights(slice_flags: Sequence[Sequence[str]], balance: float) -> List[float]:
    """One weight per slice, summing to 1, so that group ``g`` is drawn ``n_g ** (1 - balance)``-proportionally."""
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"subtype_balance must be between 0 and 1, not {balance}.")
    counts = Counter(name for flags in slice_flags for name in set(flags))
    groups = [subtype_group(sorted(set(flags)), counts) for flags in slice_flags]
    sizes = Counter(groups)
    raw = [sizes[g] ** -balance for g in groups]
    total = math.fsum(raw)
    return [w / total for w in raw]


class WeightedEpochSampler:
    """``DistributedSampler``'s interface (``set_epoch``, one process's share) over draws with
    replacement by ``weights``: each epoch draws ``len(weights)`` slices, seeded by seed and epoch,
    and process ``rank`` takes every ``num_replicas``-th."""

    def __init__(self, weights: Sequence[float], num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        if not weights:
            raise ValueError("No slice to draw from.")
        self.weights = torch.tensor(list(weights), dtype=torch.float64)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.weights) / self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draws = torch.multinomial(self.weights, len(self.weights), replacement=True, generator=generator).tolist()
        draws += draws[:len(self) * self.num_replicas - len(draws)]  # an equal share for every process
        return iter(draws[self.rank::self.num_replicas])
