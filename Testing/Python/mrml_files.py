"""Reading the files SAMIHS writes back into a real MRML scene (slicer-core), for the tests."""


def load_volume(scene, path, name="CT"):
    """A scalar volume node read from ``path`` through its archetype storage node."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node), f"could not read {path}"
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


def load_segmentation(scene, path):
    """A segmentation node read from a ``.seg.nrrd``."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    reader = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    reader.SetFileName(str(path))
    assert reader.ReadData(node), f"could not read {path}"
    return node
