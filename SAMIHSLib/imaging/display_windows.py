"""The CT display windows SAMIHS offers (Slicer panel and web app): one list, one set of values."""

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class DisplayWindow:
    """A window of ``width`` HU centred at ``level`` HU; ``key`` names it in code, ``name`` in menus."""

    key: str
    name: str
    width: float
    level: float

    @property
    def label(self) -> str:
        """What a menu shows, e.g. "Brain (W80 L40)"."""
        return f"{self.name} (W{self.width:g} L{self.level:g})"


# Where acute blood shows (brain), thin subdural blood against bone (subdural), early ischaemia and
# subtle density differences (stroke), and fractures (bone).
DISPLAY_WINDOWS: Tuple[DisplayWindow, ...] = (
    DisplayWindow("brain", "Brain", 80.0, 40.0),
    DisplayWindow("subdural", "Subdural", 200.0, 75.0),
    DisplayWindow("stroke", "Stroke", 40.0, 40.0),
    DisplayWindow("bone", "Bone", 2800.0, 600.0),
)
