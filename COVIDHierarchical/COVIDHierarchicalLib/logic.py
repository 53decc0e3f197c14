"""Logic of COVID Hierarchical: CHS-Net on a volume node, results as segments and a table.

Qt-free (slicer MRML, numpy, lungai), so pytest runs it on slicer-core. Two paths, one result:

- blocking: :meth:`COVIDHierarchicalLogic.run` calls the module contract (:mod:`lungai.covid.pipeline`)
  directly (scripts, tests, self-test);
- subprocess (the widget, GUI stays responsive): :meth:`cli_arguments` for ``lungai covid segment``
  on a volume written by :meth:`export_volume`, then :meth:`import_results` reads its files (``pipeline.read``).

Nodes are created only once the whole volume is done, so a cancelled run leaves the scene
unchanged. Existing nodes are replaced only when passed in with ``overwrite=True`` (the widget
asks the user first).
"""

from __future__ import annotations

from pathlib import Path

from lungai.errors import LungAIError
from lungai.io import write_volume
from lungai.progress import CancelToken, ProgressCallback
from LungAICommon.mrml import segmentation_node_from_masks, table_node_from_rows, volume_from_node


def _pipeline():
    """lungai.covid.pipeline (torch), imported when first used rather than when Slicer loads the module."""
    from lungai.covid import pipeline

    return pipeline


class COVIDHierarchicalLogic:
    """Run CHS-Net and turn its result into a segmentation node and a burden table node."""

    def run(
        self,
        volume_node,
        *,
        weights: str | None = None,
        model_id: str | None = None,
        device: str = "auto",
        segmentation_node=None,
        table_node=None,
        overwrite: bool = False,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ):
        """Blocking run on ``volume_node``; returns (segmentation node, table node)."""
        self._check_replace(segmentation_node, table_node, overwrite)
        pipeline = _pipeline()
        model = pipeline.load(weights, model_id, device)
        result = pipeline.run(volume_from_node(volume_node), model, progress=progress, cancel=cancel)
        return self.create_nodes(
            result.burden.masks, result.burden.table, volume_node, segmentation_node, table_node, overwrite
        )

    @staticmethod
    def _check_replace(segmentation_node, table_node, overwrite: bool) -> None:
        replaced = [n.GetName() for n in (segmentation_node, table_node) if n is not None]
        if replaced and not overwrite:
            raise LungAIError(f"{', '.join(replaced)} would be replaced; confirm overwriting or choose new outputs.")

    def create_nodes(
        self, masks: dict, rows: list[dict], volume_node, segmentation_node=None, table_node=None, overwrite=False
    ):
        """Segments "Right lung", "Left lung", "Infection" and the burden table, beside ``volume_node``."""
        self._check_replace(segmentation_node, table_node, overwrite)
        base = volume_node.GetName()
        segments = _pipeline().SEGMENTS
        segmentation = segmentation_node_from_masks(
            [masks[s.name] for s in segments],
            list(segments),
            volume_node,
            f"{base} CHS-Net",
            node=segmentation_node,
        )
        table = table_node_from_rows(rows, f"{base} infection burden", node=table_node)
        return segmentation, table

    @staticmethod
    def export_volume(volume_node, path: str | Path) -> Path:
        """Write the volume for the subprocess path (``.nrrd``, geometry kept)."""
        return write_volume(volume_from_node(volume_node), path, overwrite=True)

    @staticmethod
    def cli_arguments(
        volume_path: str | Path,
        out_dir: str | Path,
        *,
        weights: str | None = None,
        model_id: str | None = None,
        device: str = "auto",
    ) -> list[str]:
        """Arguments of ``python -m lungai --progress lines`` for the subprocess path."""
        arguments = ["--device", device, "covid", "segment", "--volume", str(volume_path), "--out", str(out_dir)]
        if weights:
            return arguments + ["--weights", str(weights)]
        return arguments + (["--model", model_id] if model_id else [])

    def import_results(
        self, out_dir: str | Path, volume_node, segmentation_node=None, table_node=None, overwrite: bool = False
    ):
        """Nodes from the files ``lungai covid segment`` wrote into ``out_dir``."""
        pipeline = _pipeline()
        saved = pipeline.read(out_dir)
        shape = saved.volumes["segmentation"].array.shape[-3:]
        expected = tuple(reversed(volume_node.GetImageData().GetDimensions()))
        if shape != expected:
            raise LungAIError(f"The result in {out_dir} is {shape}, but the volume is {expected}.")
        rows = [{key: _number(value) for key, value in row.items()} for row in saved.tables[pipeline.OUTPUT_NAMES[1]]]
        return self.create_nodes(saved.masks, rows, volume_node, segmentation_node, table_node, overwrite)


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text
