"""SAMIHSLib: the Qt-free core of SAMIHS (models, predictor, propagation, I/O, CLI).

Never imports Qt, ``slicer`` or ``training``: the Slicer module and the training package
build on it, not the other way round.
"""

from .cpu_tuning import shorten_openmp_spin

__version__ = "0.1.0"

shorten_openmp_spin()  # must precede the first ``import torch`` to take effect
