"""SAMIHSLib: the Qt-free core of SAMIHS (models, predictor, propagation, I/O, CLI).

Never imports Qt, ``slicer`` or ``training``: the Slicer module and the training package
build on it, not the other way round.
"""

__version__ = "0.1.0"
