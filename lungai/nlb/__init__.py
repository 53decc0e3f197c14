"""Neoplasm presence classification and segmentation with specialised non-local blocks (seed 002)."""

from lungai.contract import ModuleDescriptor

DESCRIPTOR = ModuleDescriptor(
    name="nlb",
    title="NeoplasmNLB: neoplasm presence per CT slice and its segmentation",
    slicer_module="NeoplasmNLB",
    default_model_id="nlb_unet_demo",
    architectures=("nlb_unet",),
    run_command="classify",
    outputs=("slices.csv", "neoplasm.seg.nrrd", "probability.png", "most_likely_slice.png", "summary.json"),
    paper="seed 002",
)
