"""SAMIHSLib: the Qt-free core of SAMIHS. The layout follows the flow of one segmentation:

- ``io``: a CT file or series -> an axial stack in HU; results -> files (atomic), DICOM SEG;
- ``models``: the networks (SAM / LiteMedSAM, PR adapters) and their checkpoints;
- ``engines``: where the network runs (PyTorch, ONNX Runtime, OpenVINO), one registry;
- ``interaction``: click -> slice mask -> propagated volume -> correction session;
- ``cli`` and ``batch``: the command line over all of it.

Never imports Qt, ``slicer`` or ``training``: the Slicer module and the training package
build on it, not the other way round. Importing it changes nothing in the process (the CPU
tuning of ``cpu_tuning`` is applied only by programs that own their process).
"""

__version__ = "0.1.0"
