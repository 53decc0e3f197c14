"""Active Learning Sampler logic: score a pool of CT volumes, rank slices to annotate, record annotated slices,
retrain on them. Qt-free: MRML nodes in, MRML nodes out, through ``LungAICommon.mrml`` and ``lungai.al``.

Two ways to run the long steps:
- blocking (scripts, tests, self-test): :meth:`run` (scoring), :meth:`retrain` call the module contract
  (:mod:`lungai.al.pipeline`) directly with progress and cancel;
- subprocess (the widget): :meth:`score_arguments` / :meth:`retrain_arguments` write the inputs to a folder and
  return the ``lungai al ...`` arguments; :meth:`import_scores` / :meth:`import_retrained` read the results back.
Nodes are created only at the end, so a cancelled run leaves the scene as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer

from lungai.errors import InputError
from lungai.io import write_table_csv, write_volume
from lungai.modules import descriptor
from lungai.progress import CancelToken, ProgressCallback
from LungAICommon import mrml

DEFAULT_MODEL = descriptor("al").default_model_id


def _pipeline():
    """lungai.al.pipeline (torch), imported when first used rather than when Slicer loads the module."""
    from lungai.al import pipeline

    return pipeline


ANNOTATED_ATTRIBUTE = "LungAI.ActiveLearning.AnnotatedSlices"
ENTROPY_REFERENCE = "LungAI.ActiveLearning.Entropy"
PARAMETER_TAG = "ActiveLearningSampler"
ENTROPY_COLOR_NODE = "vtkMRMLColorTableNodeRainbow"


@dataclass
class ScoreNodes:
    """What a scoring run put into the scene."""

    entropy: dict[str, object] = field(default_factory=dict)  # input node id -> entropy volume node
    profiles: dict[str, np.ndarray] = field(default_factory=dict)  # input node id -> (Z,) slice uncertainty
    volume_uncertainty: dict[str, float] = field(default_factory=dict)


class ActiveLearningSamplerLogic:
    """Score, rank, annotate, retrain. ``model_id`` is a registry id; retraining moves it to the new version."""

    def __init__(self, model_id: str = DEFAULT_MODEL, device: str = "cpu"):
        self.device = device
        self.parameter_node().SetParameter("ModelId", self.parameter_node().GetParameter("ModelId") or model_id)

    # --- parameters and bookkeeping (saved with the scene) -------------------------------------------------
    def parameter_node(self):
        """The module's singleton parameter node in the current scene (created on first use)."""
        node = slicer.mrmlScene.GetSingletonNode(PARAMETER_TAG, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(PARAMETER_TAG)
            node.SetName(PARAMETER_TAG)
            node = slicer.mrmlScene.AddNode(node)
        return node

    @property
    def model_id(self) -> str:
        return self.parameter_node().GetParameter("ModelId")

    def annotated_slices(self, volume_node) -> np.ndarray:
        """(Z,) bool: slices of ``volume_node`` the user marked as annotated (a node attribute, saved in the scene)."""
        flags = np.zeros(volume_node.GetImageData().GetDimensions()[2], bool)
        text = volume_node.GetAttribute(ANNOTATED_ATTRIBUTE) or ""
        indices = [int(v) for v in text.split(",") if v.strip()]
        flags[[i for i in indices if 0 <= i < len(flags)]] = True
        return flags

    def set_annotated(self, volume_node, slice_index: int, annotated: bool = True) -> None:
        flags = self.annotated_slices(volume_node)
        if not 0 <= slice_index < len(flags):
            raise InputError(f"slice {slice_index} is outside {volume_node.GetName()} ({len(flags)} slices)")
        flags[slice_index] = annotated
        volume_node.SetAttribute(ANNOTATED_ATTRIBUTE, ",".join(str(i) for i in np.flatnonzero(flags)))

    # --- scoring -------------------------------------------------------------------------------------------
    def run(
        self,
        volume_nodes,
        n_samples: int = 20,
        method: str = "batched",
        seed: int = 0,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> ScoreNodes:
        """Blocking MC-dropout scoring; entropy volume nodes are added only when every volume is done."""
        pipeline = _pipeline()
        model = pipeline.load(model_id=self.model_id, device=self.device)
        result = pipeline.run(
            self._volumes(volume_nodes),
            model,
            n_samples=n_samples,
            method=method,
            seed=seed,
            progress=progress,
            cancel=cancel,
        )
        scores = result.scores
        return self._show_scores(
            volume_nodes,
            {i: s.entropy for i, s in scores.items()},
            {i: s.profile for i, s in scores.items()},
            {i: s.volume_uncertainty for i, s in scores.items()},
        )

    def score_arguments(
        self, volume_nodes, work_dir: Path, n_samples: int = 20, method: str = "batched", seed: int = 0
    ) -> list[str]:
        """Write the pool to ``work_dir/input`` and return ``lungai`` arguments that score it into
        ``work_dir/scores`` (read back with :meth:`import_scores`)."""
        paths = [
            str(write_volume(v, Path(work_dir) / "input" / f"{node_id}.nrrd", overwrite=True))
            for node_id, v in self._volumes(volume_nodes).items()
        ]
        return [
            "al",
            "score",
            "--volume",
            *paths,
            "--model",
            self.model_id,
            "--samples",
            str(n_samples),
            "--method",
            method,
            "--seed",
            str(seed),
            "--out",
            str(Path(work_dir) / "scores"),
            "--overwrite",
        ]

    def import_scores(self, volume_nodes, work_dir: Path) -> ScoreNodes:
        pipeline = _pipeline()
        folder = Path(work_dir) / "scores"
        profiles, volume_scores = pipeline.read_scores(folder)
        saved = pipeline.read(folder)
        entropies = {node.GetID(): saved.volumes[node.GetID()].array for node in volume_nodes}
        return self._show_scores(volume_nodes, entropies, profiles, volume_scores)

    def _volumes(self, volume_nodes) -> dict:
        if not volume_nodes:
            raise InputError("select at least one CT volume for the pool")
        return {node.GetID(): mrml.volume_from_node(node) for node in volume_nodes}

    def _show_scores(self, volume_nodes, entropies, profiles, volume_scores) -> ScoreNodes:
        result = ScoreNodes()
        for node in volume_nodes:
            node_id = node.GetID()
            volume = mrml.volume_from_node(node)
            existing = node.GetNodeReference(ENTROPY_REFERENCE)
            entropy_node = mrml.volume_node_from_volume(
                volume.like(np.asarray(entropies[node_id], np.float32)), f"{node.GetName()} entropy", node=existing
            )
            entropy_node.CreateDefaultDisplayNodes()
            display = entropy_node.GetDisplayNode()
            display.SetAndObserveColorNodeID(ENTROPY_COLOR_NODE)
            display.AutoWindowLevelOff()
            display.SetWindowLevelMinMax(0.0, float(np.log(2)))
            node.SetNodeReferenceID(ENTROPY_REFERENCE, entropy_node.GetID())
            result.entropy[node_id] = entropy_node
            result.profiles[node_id] = np.asarray(profiles[node_id], float)
            result.volume_uncertainty[node_id] = float(volume_scores[node_id])
        return result

    # --- ranking and pictures ------------------------------------------------------------------------------
    def ranked_table(
        self, volume_nodes, scores: ScoreNodes, strategy: str = "uss", budget: int = 5, seed: int = 0, table_node=None
    ):
        """Table node of the slices (or volumes) to annotate next, highest uncertainty first."""
        names = {node.GetID(): node.GetName() for node in volume_nodes}
        rows = _pipeline().rank(
            strategy,
            scores.profiles,
            scores.volume_uncertainty,
            {node.GetID(): self.annotated_slices(node) for node in volume_nodes},
            budget,
            seed,
        )
        for row in rows:
            row["volume_node_id"] = row["volume"]
            row["volume"] = names[row["volume"]]
            row["uncertainty"] = float(row["uncertainty"]) if row["uncertainty"] != "" else float("nan")
        return mrml.table_node_from_rows(rows, f"Slices to annotate ({strategy.upper()})", node=table_node), rows

    def profile_chart(self, volume_nodes, scores: ScoreNodes, rows: list[dict]):
        """The paper's Fig. 2: each volume's slice-uncertainty profile, selected slices as markers."""
        node_ids = [node.GetID() for node in volume_nodes]
        longest = max(len(scores.profiles[i]) for i in node_ids)
        x = list(range(longest))
        series, markers = {}, {}
        for node in volume_nodes:
            profile = scores.profiles[node.GetID()]
            series[node.GetName()] = [float(profile[k]) if k < len(profile) else float("nan") for k in x]
            picks = [r["slice"] for r in rows if r["volume_node_id"] == node.GetID() and r["slice"] >= 0]
            if picks:
                markers[f"{node.GetName()} selected"] = (picks, [float(profile[k]) for k in picks])
        return mrml.plot_from_series(x, series, "Slice uncertainty profile", "slice index", "mean entropy", markers)

    def slice_center_ras(self, volume_node, slice_index: int) -> tuple[float, float, float]:
        """RAS position of the centre of axial slice ``slice_index`` (to jump the slice views there)."""
        volume = mrml.volume_from_node(volume_node)
        z, y, x = volume.shape
        ras = volume.ijk_to_ras() @ np.array([(x - 1) / 2, (y - 1) / 2, slice_index, 1.0])
        return tuple(float(v) for v in ras[:3])

    def jump_to_slice(self, volume_node, slice_index: int) -> tuple[float, float, float]:
        """Centre every slice view on the slice (what the widget's "Jump" button does)."""
        ras = self.slice_center_ras(volume_node, slice_index)
        slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, *ras, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        return ras

    # --- retraining ----------------------------------------------------------------------------------------
    def _labels(self, volume_nodes, segmentation_node, segment_name: str) -> dict:
        if segmentation_node is None:
            raise InputError("select the segmentation that holds your annotations")
        return {
            node.GetID(): mrml.segment_mask(segmentation_node, segment_name, node)
            for node in volume_nodes
            if self.annotated_slices(node).any()
        }

    def retrain(
        self,
        volume_nodes,
        segmentation_node,
        segment_name: str,
        out_path: Path,
        steps: int = 100,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> str:
        """Fine-tune on the annotated slices only (weighted soft Dice + weighted cross-entropy, as the bundled
        model was trained), save and register a new version, make it current.

        A cancel raises before anything is saved: the previous model version stays in use.
        """
        annotated = {node.GetID(): self.annotated_slices(node) for node in volume_nodes}
        if not any(flags.any() for flags in annotated.values()):
            raise InputError(
                "no slice is marked as annotated: annotate the selected slices in the Segment Editor "
                "and mark them before retraining"
            )
        volumes = self._volumes(volume_nodes)
        labels = self._labels(volume_nodes, segmentation_node, segment_name)
        pipeline = _pipeline()
        model = pipeline.load(model_id=self.model_id, device=self.device)
        result = pipeline.retrain(
            model.network,
            volumes,
            labels,
            annotated,
            pipeline.FitSettings(steps=steps, lr=3e-4, loss="dice+bce"),
            device=str(model.device),
            progress=progress,
            cancel=cancel,
        )
        new_id = pipeline.save_version(
            result.model,
            Path(out_path),
            base_id=self.model_id,
            register=True,
            training_data=f"{result.annotated_slices} annotated slices in Slicer",
        )
        self.parameter_node().SetParameter("ModelId", new_id)
        return new_id

    def retrain_arguments(
        self, volume_nodes, segmentation_node, segment_name: str, work_dir: Path, out_path: Path, steps: int = 100
    ) -> list[str]:
        """Write volumes, labelmaps and the annotated-slice list to ``work_dir``; ``lungai al retrain`` arguments."""
        work_dir = Path(work_dir)
        labels = self._labels(volume_nodes, segmentation_node, segment_name)
        rows = [
            {"volume": node.GetID(), "slice": int(k)}
            for node in volume_nodes
            for k in np.flatnonzero(self.annotated_slices(node))
        ]
        if not rows:
            raise InputError("no slice is marked as annotated: mark the slices you annotated before retraining")
        volume_paths, label_paths = [], []
        for node_id, volume in self._volumes([n for n in volume_nodes if n.GetID() in labels]).items():
            volume_paths.append(str(write_volume(volume, work_dir / "volumes" / f"{node_id}.nrrd", overwrite=True)))
            label_paths.append(
                str(
                    write_volume(
                        volume.like(labels[node_id].astype(np.uint8)),
                        work_dir / "labels" / f"{node_id}.nrrd",
                        overwrite=True,
                    )
                )
            )
        write_table_csv(work_dir / "annotated.csv", rows, overwrite=True)
        return [
            "al",
            "retrain",
            "--volume",
            *volume_paths,
            "--labels",
            *label_paths,
            "--annotated",
            str(work_dir / "annotated.csv"),
            "--model",
            self.model_id,
            "--steps",
            str(steps),
            "--out",
            str(out_path),
            "--register",
        ]

    def import_retrained(self, out_path: Path) -> str:
        """After a successful ``lungai al retrain --register``: make the version saved at ``out_path`` current
        (the registry holds a copy of it, found by its sha256)."""
        from lungai.registry import load_registry, sha256_of

        target = Path(out_path)
        digest = sha256_of(target) if target.is_file() else None
        matches = [e.id for e in load_registry() if e.sha256 == digest]
        if not matches:
            raise InputError(f"{out_path} is not in the model registry: the retrain did not finish")
        self.parameter_node().SetParameter("ModelId", matches[0])
        return matches[0]
