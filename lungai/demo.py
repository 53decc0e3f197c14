"""``lungai demo``: every available module on bundled data, gathered in one ``index.html``.

The foundation's own section shows the bundled chest CT with its lung segmentation (written
back as ``.seg.nrrd``). Module sections come from ``lungai.<module>.demo`` packages listed in
:data:`lungai.modules.MODULES`, each defining ``run_demo(out_dir, *, device, progress, cancel) -> DemoSection``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lungai import modules
from lungai.io import read_table_csv, write_segmentation, write_table_csv, write_volume
from lungai.outputs import staged_folder
from lungai.plotting import radiological_view, save_overlay_png
from lungai.progress import CancelToken, ProgressCallback, check_cancel, report, subrange
from lungai.sample_data import ATTRIBUTION, chest_ct, chest_lungs


@dataclass
class DemoSection:
    """One module's part of the report; all paths lie inside the demo's output folder."""

    title: str
    text: str
    images: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    reading: str = ""  # what a clinician should and should not read into the result, shown under it


def chest_ct_section(out_dir: Path) -> DemoSection:
    """The bundled chest CT and its right/left lungs, written out and pictured."""
    ct = chest_ct()
    lungs, specs = chest_lungs()
    folder = out_dir / "chest_ct"
    files = [
        write_volume(ct, folder / "chest_ct.nrrd", overwrite=True),
        write_segmentation(folder / "chest_lungs.seg.nrrd", lungs, specs, overwrite=True),
    ]
    rows = [
        {
            "segment": spec.name,
            "voxels": int(np.count_nonzero(lungs.array == spec.label)),
            "volume_ml": round(np.count_nonzero(lungs.array == spec.label) * ct.voxel_volume_mm3 / 1000.0, 1),
        }
        for spec in specs
    ]
    table = write_table_csv(folder / "lung_volumes.csv", rows, overwrite=True)
    middle = int(np.argmax([np.count_nonzero(s) for s in lungs.array]))
    row = int(np.argmax(np.count_nonzero(lungs.array, axis=(0, 2))))
    images = []
    for plane, index, aspect in (("axial", middle, 1.0), ("coronal", row, ct.spacing[2] / ct.spacing[0])):
        view = lambda array, plane=plane, index=index: radiological_view(array, ct.direction, plane, index)  # noqa: E731
        images.append(
            save_overlay_png(
                folder / f"{plane}.png",
                view(ct.array),
                [(view(lungs.array) == s.label, s.color) for s in specs],
                title=f"{plane.capitalize()} slice {index}: right lung green, left lung blue",
                pixel_aspect=aspect,
            )
        )
    return DemoSection(
        "Chest CT with lung segmentation",
        reading=(
            "The reference lung segmentation shipped with the scan, the yardstick the lung outputs below are measured "
            "against. This scan shows no COVID-19 and no known neoplasm."
        ),
        text=f"{ATTRIBUTION} {ct.shape[2]} x {ct.shape[1]} x {ct.shape[0]} voxels of "
        f"{ct.spacing[0]:.2f} x {ct.spacing[1]:.2f} x {ct.spacing[2]:.2f} mm.",
        images=images,
        files=files,
        tables=[table],
    )


def _table_html(path: Path) -> str:
    rows = read_table_csv(path)
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>" for row in rows)
    return f"<table><caption>{html.escape(path.name)}</caption><tr>{head}</tr>{body}</table>"


def write_index(out_dir: Path, sections: list[DemoSection]) -> Path:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>SlicerLungAI demo</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:0 8px}"
        "img{max-width:100%;margin:4px;vertical-align:top}"
        ".scroll{max-width:100%;overflow-x:auto}table{border-collapse:collapse;margin:8px 0;font-size:13px}"
        "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}th{background:#eee}"
        "caption{text-align:left;font-weight:bold}"
        ".reading{border-left:4px solid #c60;background:#fff4e8;padding:6px 10px}</style>",
        "</head><body><h1>SlicerLungAI demo</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2><p>{html.escape(section.text)}</p>")
        parts += [
            f"<img src='{p.relative_to(out_dir).as_posix()}' alt='{html.escape(p.stem)}'>" for p in section.images
        ]
        parts += [f"<div class='scroll'>{_table_html(p)}</div>" for p in section.tables]
        if section.reading:
            parts.append(f"<p class='reading'><b>Reading this result:</b> {html.escape(section.reading)}</p>")
        if section.files:
            links = ", ".join(
                f"<a href='{p.relative_to(out_dir).as_posix()}'>{html.escape(p.name)}</a>" for p in section.files
            )
            parts.append(f"<p>Files: {links}</p>")
    parts.append("</body></html>")
    index = out_dir / "index.html"
    index.write_text("\n".join(parts))
    return index


def run_demo(
    out_dir: Path,
    *,
    device: str = "auto",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """Run the foundation section and every available module's demo; returns ``index.html``.

    Everything is written into a hidden sibling folder first and moved into ``out_dir`` at the end, so an
    interrupted or failed demo leaves nothing behind.
    """
    out_dir = Path(out_dir)
    sections_from = modules.available("demo")
    steps = 1 + len(sections_from)
    with staged_folder(out_dir, overwrite, expected=["index.html"]) as work:
        report(progress, 0.0, "chest CT")
        sections = [chest_ct_section(work)]
        for index, module in enumerate(sections_from, start=1):
            check_cancel(cancel)
            name = module.__name__.split(".")[1]
            sections.append(
                module.run_demo(
                    work, device=device, progress=subrange(progress, index / steps, (index + 1) / steps), cancel=cancel
                )
            )
            report(progress, (index + 1) / steps, f"{name} done")
        write_index(work, sections)
        report(progress, 1.0, "report written")
    return out_dir / "index.html"
