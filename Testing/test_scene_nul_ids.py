"""VTK takes C strings: a node id with a NUL must not resolve as its prefix."""

import pytest
import slicer

from SlicerMCPLib.core.errors import InvalidNodeId
from SlicerMCPLib.scene.nodes import find_node


def test_nul_in_node_id_does_not_resolve_as_its_prefix():
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    assert find_node(scene, node.GetID()) is node
    with pytest.raises(InvalidNodeId):
        find_node(scene, node.GetID() + "\x00x")
