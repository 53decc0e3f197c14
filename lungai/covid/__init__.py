"""COVIDHierarchical backend: CHS-Net (seed 003), cascaded RAIU-Nets for lungs then COVID-19 infection."""

from lungai.contract import ModuleDescriptor

DESCRIPTOR = ModuleDescriptor(
    name="covid",
    title="CHS-Net: lungs, then COVID-19 infection, and the infection burden",
    slicer_module="COVIDHierarchical",
    default_model_id="chsnet-covid",
    architectures=("chsnet", "raiunet"),
    run_command="segment",
    outputs=("segmentation.seg.nrrd", "burden.csv"),
    paper="seed 003",
)
