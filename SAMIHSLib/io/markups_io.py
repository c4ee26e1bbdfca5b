"""Reading Slicer markups point lists (``.mrk.json``) as clicks.

Slicer writes each control point's ``position`` in the node's ``coordinateSystem`` ("LPS" since
Slicer 5, "RAS" in files from older versions or written so on purpose); both are handled.
A point list whose name contains "negative" holds negative clicks. Slicer's own files do not
store the list's name: there the file's name (Slicer names it after the list) or the points'
labels (Slicer's default "%N-%d" puts the list's name in each) say it.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple

from SAMIHSLib.io.atomic_write import write_text_atomic
from SAMIHSLib.io.validation import InputError

Point3 = Tuple[float, float, float]


@dataclass
class MarkupsClicks:
    """Positive and negative clicks in RAS mm."""

    positive_ras: List[Point3] = field(default_factory=list)
    negative_ras: List[Point3] = field(default_factory=list)


def read_markups_clicks(path: Path) -> MarkupsClicks:
    """All control points of all point lists in a ``.mrk.json`` file, converted to RAS."""
    try:
        document = json.loads(Path(path).read_text())
        markups = document["markups"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path} is not a Slicer markups file: {error}") from error
    clicks = MarkupsClicks()
    for markup in markups:
        system = str(markup.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise InputError(f"{path}: unknown coordinate system {system!r}.")
        negative = _is_negative(markup, Path(path))
        for point in markup.get("controlPoints", []):
            x, y, z = (float(v) for v in point["position"])
            ras = (-x, -y, z) if system == "LPS" else (x, y, z)
            (clicks.negative_ras if negative else clicks.positive_ras).append(ras)
    if not clicks.positive_ras:
        raise InputError(f"{path} has no positive control points.")
    return clicks


def _is_negative(markup: dict, path: Path) -> bool:
    """Whether a point list holds negative clicks: by its name, or, in a file Slicer wrote (no
    name stored), by the file's name or the labels of all its points."""
    name = str(markup.get("name", ""))
    if name:
        return "negative" in name.lower()
    labels = [str(point.get("label", "")).lower() for point in markup.get("controlPoints", [])]
    return "negative" in path.name.lower() or (bool(labels) and all("negative" in label for label in labels))


def write_markups_clicks(path: Path, positive_ras: List[Point3], name: str = "SAMIHS clicks",
                         coordinate_system: str = "LPS") -> Path:
    """Write clicks as Slicer does (a Fiducial point list), for round trips and examples."""
    sign = (-1.0, -1.0, 1.0) if coordinate_system == "LPS" else (1.0, 1.0, 1.0)
    document = {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                   "Schema/markups-schema-v1.0.3.json#",
        "markups": [{
            "type": "Fiducial", "coordinateSystem": coordinate_system, "coordinateUnits": "mm", "name": name,
            "controlPoints": [
                {"id": str(n + 1), "label": f"{name}-{n + 1}", "position": [p[i] * sign[i] for i in range(3)],
                 "selected": True, "locked": False, "visibility": True, "positionStatus": "defined"}
                for n, p in enumerate(positive_ras)
            ],
        }],
    }
    return write_text_atomic(Path(path), json.dumps(document, indent=2) + "\n")
