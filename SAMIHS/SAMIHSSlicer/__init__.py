"""The Slicer side of SAMIHS, beside the module file (Slicer's module factory loads every ``.py``
in the module folder as a module, so helpers live in this package):

- ``mrml_nodes``: MRML nodes <-> arrays (volumes, RAS/IJK, markups, segment voxels);
- ``mrml_logic``: ``SAMIHSMRMLLogic``, the Qt-free logic the module and the web app share;
- ``dependencies``: installing SAMIHS's Python packages inside Slicer.
"""

import importlib.util
import sys
from pathlib import Path

# In a packaged extension SAMIHSLib sits beside the module; in a source checkout (module path
# pointing at SAMIHS/) it is one folder further up.
if importlib.util.find_spec("SAMIHSLib") is None:
    sys.path.append(str(Path(__file__).resolve().parents[2]))
