"""Active learning for segmentation by uncertainty slice sampling (USS; Chlebus et al., IEEE Access 2022, seed 004).

MC-dropout predictive entropy (:mod:`.uncertainty`), the four query strategies USS, UVS, RVS, RSS
(:mod:`.strategies`), the weighted soft Dice loss for partially annotated volumes (:mod:`.losses`), training
on annotated slices (:mod:`.training`) and the simulated active-learning comparison (:mod:`.simulation`).
"""

from lungai.contract import ModuleDescriptor

DESCRIPTOR = ModuleDescriptor(
    name="al",
    title="Active learning: MC-dropout uncertainty, slice ranking, retraining",
    slicer_module="ActiveLearningSampler",
    default_model_id="al_unet_lungs",
    architectures=("al_unet",),
    run_command="score",
    outputs=("{name}_entropy.nrrd", "profiles.csv", "volumes.csv", "profiles.png"),
    paper="seed 004",
)
