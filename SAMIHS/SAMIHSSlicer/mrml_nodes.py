"""MRML nodes <-> arrays: volume voxels, RAS/IJK, markups control points and segment voxels.

Qt-free: runs inside Slicer and in plain Python with PyPI ``slicer-core``. Segment voxels are
written through ``vtkSlicerSegmentationsModuleLogic``, only inside the extent that changed.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import vtk
from vtk.util import numpy_support

import slicer

VoxelExtent = Tuple[slice, slice, slice]  # (k, j, i) slices of the volume's voxel array
# Voxels taken from other segments ("Overwrite other segments"): segment id -> (extent, taken voxels).
TakenVoxels = Dict[str, Tuple[VoxelExtent, np.ndarray]]

_segmentations_logic = None


def ensure_segmentation_converters() -> None:
    """Register the segmentation representation converters. Slicer does this when its
    Segmentations module starts; plain slicer-core needs one module-logic instance to do it."""
    global _segmentations_logic
    if not slicer.vtkSegmentationConverterFactory.GetInstance().GetConverterRules():
        _segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
        _segmentations_logic.SetMRMLScene(slicer.vtkMRMLScene())  # registration happens here


def _matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def volume_array(volume_node) -> np.ndarray:
    """A copy of the volume's voxels as a (k, j, i) array."""
    image = volume_node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise ValueError(f"Volume '{volume_node.GetName()}' has no image data.")
    if image.GetNumberOfScalarComponents() != 1:
        raise ValueError(f"Volume '{volume_node.GetName()}' is not a scalar (greyscale) volume.")
    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1]).copy()


def _ijk_to_ras_vtk(volume_node) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix


def ijk_to_ras(volume_node) -> np.ndarray:
    return _matrix_to_numpy(_ijk_to_ras_vtk(volume_node))


def world_to_volume_ras(volume_node, ras_world: Sequence[float]) -> np.ndarray:
    """A world RAS point in the volume's own RAS frame (undoing a linear parent transform)."""
    parent = volume_node.GetParentTransformNode()
    point = np.append(np.asarray(ras_world, dtype=float), 1.0)
    if parent is None:
        return point[:3]
    if not parent.IsTransformToWorldLinear():
        raise ValueError("The volume is under a non-linear transform; harden it first.")
    matrix = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformFromWorld(matrix)
    return (_matrix_to_numpy(matrix) @ point)[:3]


def ras_to_click(volume_node, ras_world: Sequence[float]) -> Tuple[int, float, float]:
    """World RAS mm -> (slice k, column i, row j) of the volume, as Slicer maps it."""
    ras = np.append(world_to_volume_ras(volume_node, ras_world), 1.0)
    i, j, k = (np.linalg.inv(ijk_to_ras(volume_node)) @ ras)[:3]
    return int(round(k)), float(i), float(j)


def ct_volume_from_node(volume_node):
    """A SAMIHSLib ``CTVolume`` (LPS geometry) of a scalar volume node."""
    from SAMIHSLib.io.volume_io import LPS_TO_RAS, CTVolume

    matrix = ijk_to_ras(volume_node)
    spacing = np.asarray(volume_node.GetSpacing(), dtype=float)
    direction_lps = LPS_TO_RAS @ (matrix[:3, :3] / spacing)  # the flip is its own inverse
    return CTVolume(volume_array(volume_node), tuple(spacing), tuple(LPS_TO_RAS @ matrix[:3, 3]), direction_lps,
                    volume_node.GetName())


def volume_node_from_ct(scene, volume, name: str = "CT"):
    """A new scalar volume node holding a SAMIHSLib ``CTVolume`` (any format SAMIHSLib reads,
    DICOM series included) on its exact geometry: the inverse of :func:`ct_volume_from_node`."""
    array = np.ascontiguousarray(volume.array_hu)
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetAndObserveImageData(image)
    matrix = vtk.vtkMatrix4x4()
    for row, values in enumerate(volume.ijk_to_ras_matrix()):
        for column, value in enumerate(values):
            matrix.SetElement(row, column, float(value))
    node.SetIJKToRASMatrix(matrix)
    node.CreateDefaultDisplayNodes()
    return node


def control_points_ras(markups_node) -> List[Tuple[float, float, float]]:
    """World RAS positions of every defined control point of a markups node."""
    if markups_node is None:
        return []
    points = []
    for index in range(markups_node.GetNumberOfControlPoints()):
        if markups_node.GetNthControlPointPositionStatus(index) != markups_node.PositionDefined:
            continue
        position = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(index, position)
        points.append(tuple(position))
    return points


def _reference_geometry(volume_node):
    """An empty vtkOrientedImageData with the volume's extent and IJK-to-RAS matrix."""
    geometry = slicer.vtkOrientedImageData()
    geometry.SetExtent(volume_node.GetImageData().GetExtent())
    geometry.SetImageToWorldMatrix(_ijk_to_ras_vtk(volume_node))
    return geometry


def read_segment_mask(segmentation_node, segment_id: str, volume_node) -> np.ndarray:
    """The segment as a (k, j, i) bool array on the volume's voxel grid."""
    shape = volume_array_shape(volume_node)
    full = np.zeros(shape, dtype=bool)
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise ValueError(f"No segment '{segment_id}' in '{segmentation_node.GetName()}'.")
    # Segments share labelmap layers: take the layer and keep this segment's label value.
    layer = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    if layer is None or layer.GetPointData().GetScalars() is None:
        return full
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        layer, _reference_geometry(volume_node), resampled, False, True)
    scalars = resampled.GetPointData().GetScalars()
    if scalars is None:
        return full
    i0, i1, j0, j1, k0, k1 = resampled.GetExtent()
    values = numpy_support.vtk_to_numpy(scalars).reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
    values = values == segment.GetLabelValue()
    vi0, vi1, vj0, vj1, vk0, vk1 = volume_node.GetImageData().GetExtent()
    # Clip to the volume: the segment may extend beyond it.
    ks, js, is_ = (slice(max(k0, vk0), min(k1, vk1) + 1), slice(max(j0, vj0), min(j1, vj1) + 1),
                   slice(max(i0, vi0), min(i1, vi1) + 1))
    if ks.stop <= ks.start or js.stop <= js.start or is_.stop <= is_.start:
        return full
    full[ks.start - vk0:ks.stop - vk0, js.start - vj0:js.stop - vj0, is_.start - vi0:is_.stop - vi0] = values[
        ks.start - k0:ks.stop - k0, js.start - j0:js.stop - j0, is_.start - i0:is_.stop - i0]
    return full


def volume_array_shape(volume_node) -> Tuple[int, int, int]:
    return tuple(volume_node.GetImageData().GetDimensions()[::-1])  # type: ignore[return-value]


def write_segment_region(segmentation_node, segment_id: str, volume_node, mask: np.ndarray, extent: VoxelExtent) -> None:
    """Replace the segment's voxels inside ``extent`` (k, j, i slices) with ``mask[extent]``.

    Only that small extent is written, and other segments keep their voxels (Slicer's own
    overwrite list did not take them here: :func:`take_from_other_segments` does it explicitly).
    """
    segmentation = segmentation_node.GetSegmentation()
    # In a shared layer the partial (max/min) writes below would mix label values: own layer.
    sharing: List[str] = []
    segmentation.GetSegmentIDsSharingBinaryLabelmapRepresentation(segment_id, sharing, False)
    if sharing:
        segmentation.SeparateSegmentLabelmap(segment_id)
    labelmap = slicer.vtkOrientedImageData()
    vtk_extent = (extent[2].start, extent[2].stop - 1, extent[1].start, extent[1].stop - 1, extent[0].start,
                  extent[0].stop - 1)
    labelmap.SetExtent(vtk_extent)
    labelmap.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())[:] = mask[extent].astype(np.uint8).ravel()
    labelmap.SetImageToWorldMatrix(_ijk_to_ras_vtk(volume_node))
    labelmap.Modified()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    # MODE_REPLACE clears the segment outside the extent too; max-then-min replaces inside only.
    for mode in (logic.MODE_MERGE_MAX, logic.MODE_MERGE_MIN):
        logic.SetBinaryLabelmapToSegment(labelmap, segmentation_node, segment_id, mode, vtk_extent, False, [])


def take_from_other_segments(segmentation_node, segment_id: str, volume_node, gained: np.ndarray,
                             extent: VoxelExtent) -> TakenVoxels:
    """Remove the voxels ``gained`` ((k, j, i) bool, inside ``extent``) from every other segment;
    returns segment id -> (extent, the voxels taken from it), for undo."""
    taken = {}
    for other in other_segment_ids(segmentation_node, segment_id):
        other_mask = read_segment_mask(segmentation_node, other, volume_node)
        lost = other_mask & gained
        if lost.any():
            write_segment_region(segmentation_node, other, volume_node, other_mask & ~lost, extent)
            taken[other] = (extent, lost[extent].copy())
    return taken


def give_back_to_other_segments(segmentation_node, volume_node, taken: TakenVoxels, take: bool = False) -> None:
    """Return the voxels :func:`take_from_other_segments` took (``take``: take them again, for redo).
    A segment deleted since is skipped."""
    for other, (extent, voxels) in taken.items():
        if segmentation_node.GetSegmentation().GetSegment(other) is None:
            continue
        mask = read_segment_mask(segmentation_node, other, volume_node)
        mask[extent] = (mask[extent] & ~voxels) if take else (mask[extent] | voxels)
        write_segment_region(segmentation_node, other, volume_node, mask, extent)


def other_segment_ids(segmentation_node, segment_id: str) -> List[str]:
    return [sid for sid in segmentation_node.GetSegmentation().GetSegmentIDs() if sid != segment_id]


def other_segments_mask(segmentation_node, segment_id: str, volume_node) -> Optional[np.ndarray]:
    """Union of every other segment on the volume grid, or None if there are none."""
    others = other_segment_ids(segmentation_node, segment_id)
    if not others:
        return None
    union = np.zeros(volume_array_shape(volume_node), dtype=bool)
    for other in others:
        union |= read_segment_mask(segmentation_node, other, volume_node)
    return union


def nodes_of_class(scene, class_name: str) -> list:
    """Every node of ``class_name`` (subclasses included) in ``scene``."""
    nodes = []
    collection = scene.GetNodesByClass(class_name)
    for index in range(collection.GetNumberOfItems()):
        nodes.append(collection.GetItemAsObject(index))
    return nodes
