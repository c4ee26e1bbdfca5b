"""A click in RAS lands on the voxel Slicer would pick: checked against slicer-core's own
vtkMRMLScalarVolumeNode RAS-to-IJK matrix for the same file."""

import numpy as np

from SAMIHSLib.phantom import oblique_direction
from SAMIHSLib.io.volume_io import CTVolume, read_ct, write_ct

from conftest import require

slicer = require("slicer", module_level=True)


def _slicer_volume_node(path):
    import vtk

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node), "slicer-core could not read the file"
    matrix = vtk.vtkMatrix4x4()
    node.GetRASToIJKMatrix(matrix)
    return node, np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_ras_to_ijk_matches_slicer(tmp_path, small_phantom):
    original = CTVolume(small_phantom.volume_hu, (0.9, 0.8, 5.0), (-90.0, 110.0, -35.0), oblique_direction(15.0))
    path = write_ct(tmp_path / "oblique.nrrd", original)
    volume = read_ct(path)
    _, ras_to_ijk = _slicer_volume_node(path)
    rng = np.random.default_rng(7)
    for _ in range(25):
        ijk = rng.uniform([0, 0, 0], np.array(volume.array_hu.shape[::-1]) - 1)
        ras = (volume.ijk_to_ras_matrix() @ np.append(ijk, 1.0))[:3]
        ours = np.round(volume.ras_to_ijk(ras)).astype(int)
        theirs = np.round((ras_to_ijk @ np.append(ras, 1.0))[:3]).astype(int)
        assert np.array_equal(ours, theirs)
    assert np.allclose(np.linalg.inv(ras_to_ijk), volume.ijk_to_ras_matrix(), atol=1e-4)
