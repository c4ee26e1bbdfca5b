"""The census of bleeds the paper's boundary term cannot learn from, on bleeds drawn by hand."""

import numpy as np
import pytest

from training.boundary_census import census, component_weights
from training.datasets import Case


def _case_with(mask: np.ndarray) -> Case:
    return Case(name="drawn", patient="drawn", image_hu=np.zeros(mask.shape, np.int16), mask=mask,
                spacing_zyx=(5.0, 0.45, 0.45))


def test_a_thin_bleed_has_no_boundary_weight_a_thick_one_does_and_a_speck_vanishes():
    mask = np.zeros((1, 512, 512), bool)
    mask[0, 100:160, 100:160] = True  # thick: 30 x 30 at 256, g = 1 - 116/900
    mask[0, 300:304, 50:250] = True  # a 4-px band at 512: 2 px at 256, all boundary
    mask[0, 400, 400] = True  # one pixel: nothing of it is left at 256
    rows = sorted(component_weights([_case_with(mask)]), key=lambda row: row["area_px"])
    assert [row["area_px"] for row in rows] == [1, 800, 3600]
    speck, band, thick = rows
    assert speck["lowres_area_px"] == 0 and speck["g"] == 0.0
    assert band["lowres_area_px"] > 0 and band["g"] == 0.0
    assert thick["g"] == pytest.approx(1 - 116 / 900)
    summary = census(rows)
    assert summary["all"]["components"] == 3 and summary["all"]["g_zero"] == 2
    assert summary["all"]["vanished_at_lowres"] == 1
    assert summary["all"]["changed_by_floor_0.5"] == 1  # the band: the speck has no target, the thick one g 0.87
    assert summary["by_native_area"]["0-100 px"]["components"] == 1
