"""The Segment Editor effect "UGS-Net nodule" end to end without Qt: the module's export writes the inputs
without touching the CT node, the real ``lungai ugsnet segment`` runs, and the effect's import adds
"Nodule 2 ..." to a user's segmentation made on another grid, leaving its geometry, reference volume, other
segments and place in the subject hierarchy alone (a real MRML scene on slicer-core; Qt parts stubbed)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import json, subprocess, sys
from pathlib import Path

import slicer_qt_stubs
slicer_qt_stubs.install()

import numpy as np
import slicer
from headless_slicer import start_scene

from lungai.segments import SegmentSpec
from lungai.ugsnet.sample import crop_volume, load_sample
from LungAICommon import mrml
from UGSNetSegmentation import exportInputs
from SegmentEditorUGSNetEffect.SegmentEditorEffect import importIntoSegmentation

scene = start_scene()
work = Path(sys.argv[1])
volume, point = crop_volume(load_sample(), 5, slices=5)
ct = mrml.volume_node_from_volume(volume, "CT")
arguments = exportInputs(work, ct, [point], device="cpu")
run = subprocess.run([sys.executable, "-m", "lungai", "--progress", "none", *arguments], capture_output=True, text=True)
assert run.returncode == 0, run.stderr

coarse = volume.like(volume.array)
coarse.array = volume.array[:, ::2, ::2].copy()
coarse.spacing = (volume.spacing[0] * 2, volume.spacing[1] * 2, volume.spacing[2])
coarse_node = mrml.volume_node_from_volume(coarse, "coarse")
user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "user")
user.CreateDefaultDisplayNodes()
user.SetReferenceImageGeometryParameterFromVolumeNode(coarse_node)
first = np.zeros(coarse.shape, bool)
first[0, :4, :4] = True
mrml.merge_segments_in_place(user, [first], [SegmentSpec("Nodule 1", 1, (0.0, 1.0, 0.0))], coarse_node)
hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
folder = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "my work")
hierarchy.CreateItem(folder, user)
name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
before = user.GetSegmentation().GetConversionParameter(name)
reference_before = user.GetNodeReferenceID(user.GetReferenceImageGeometryReferenceRole())

added = importIntoSegmentation(work / "out", user, ct)

from lungai.io import read_segmentation
from lungai.segments import unpack_masks

written, specs = read_segmentation(work / "out" / "nodules.seg.nrrd")
segmentation = user.GetSegmentation()
final_id = segmentation.GetSegmentIdBySegmentName("Nodule 2")
print(json.dumps({
    "added": added,
    "names": [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())],
    "geometry_kept": segmentation.GetConversionParameter(name) == before,
    "reference_kept": user.GetNodeReferenceID(user.GetReferenceImageGeometryReferenceRole()) == reference_before,
    "place_kept": hierarchy.GetItemParent(hierarchy.GetItemByDataNode(user)) == folder,
    "ct_storage": ct.GetStorageNode() is not None,
    "final_voxels_on_ct": int(np.count_nonzero(unpack_masks(written.array, specs)["Nodule 1"])),
    "final_voxels_on_coarse": int(
        np.count_nonzero(slicer.util.arrayFromSegmentBinaryLabelmap(user, final_id, coarse_node))
    ),
}))
"""


def test_effect_adds_numbered_segments_in_the_users_geometry(tmp_path):
    paths = [str(REPO), str(REPO / "Testing"), str(REPO / "UGSNetSegmentation")]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env={"PYTHONPATH": ":".join(paths), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdict["added"] == ["Nodule 2", "Nodule 2 high confidence", "Nodule 2 low confidence"]
    assert verdict["names"] == ["Nodule 1", *verdict["added"]]
    assert verdict["geometry_kept"] and verdict["reference_kept"] and verdict["place_kept"]
    assert not verdict["ct_storage"], "exporting the CT attached a storage node to it"
    # nearest-neighbour resampling onto a grid with half the in-plane resolution keeps about a quarter
    assert 0.15 < verdict["final_voxels_on_coarse"] / verdict["final_voxels_on_ct"] < 0.4, verdict
