"""SAMIHSLib: the Qt-free core of SAMIHS. The layout follows the flow of one segmentation:

- leaves (``imaging``: a CT slice -> model input and back; ``metrics``, ``phantom``, ``device``,
  ``cpu_info``, ``cpu_tuning``, ``model_names``, ``progress``): used by every layer, import none above;
- ``io``: a CT file or series -> an axial stack in HU; results -> files (atomic), DICOM SEG;
- ``models``: the networks (SAM / LiteMedSAM, PR adapters) and their checkpoints;
- ``engines``: where the network runs (PyTorch, ONNX Runtime, OpenVINO), one registry;
- ``interaction``: click -> slice mask -> propagated volume -> correction session; ``volume``:
  every click of a volume segmented and joined;
- ``cli``, ``batch`` and ``batch_ray``: the applications over all of it.

Imports run one way, down ``LAYERS`` (a test reads every import): a layer imports its own layer
and the ones before it. The Slicer module, the web app and the library never import an
application. Never imports Qt, ``slicer`` or ``training``: the Slicer module and the training
package build on it, not the other way round. Importing it changes nothing in the process (the
CPU tuning of ``cpu_tuning`` is applied only by programs that own their process).
"""

__version__ = "0.1.0"

LAYERS = (
    ("imaging", "metrics", "phantom", "device", "cpu_info", "cpu_tuning", "model_names", "progress"),
    ("io",),
    ("models",),
    ("engines",),
    ("interaction", "volume"),
    ("cli", "batch", "batch_ray"),
)
APPLICATIONS = LAYERS[-1]
