"""UGS-Net: uncertainty-guided lung nodule segmentation with the Multi-Confidence Mask.

Implements Yang, Wang et al., "Lung Nodule Segmentation and Low-Confidence Region Prediction with an
Uncertainty-Aware Attention Mechanism" (journal version, seed 001; seed 000, an earlier version of the same
paper, where the journal is silent). UGS-Net-V1 is the authors' MICCAI 2022 model, known from its public code.
Submodules:

- ``preprocess``: HU window, crop + resample to the network input (64 x 64 at 0.55 mm).
- ``data``: the multi-reader LIDC crops, patient folds, torch datasets.
- ``blocks`` / ``networks``: Attention U-Net feature extractor, Uncertainty-Aware Module,
  Intersection-Union Constraining Module, baselines; registered architectures.
- ``losses``: MCM loss and Multiple Annotation Fusion Loss.
- ``inference`` / ``evaluation``: predictions and metrics on crops.
- ``pipeline``: the module contract (load, run on a CT with nodule points, write, read, train, evaluate).
- ``task`` / ``training``: the four comparison models on lungai's trainer.
- ``cli`` / ``demo``: ``lungai ugsnet train | evaluate | segment`` and the demo section.
- ``sample``: the bundled 16-crop sample.
- ``pylidc_source``: the same samples from LIDC-IDRI DICOMs through pylidc.
"""

from lungai.contract import ModuleDescriptor

DESCRIPTOR = ModuleDescriptor(
    name="ugsnet",
    title="UGS-Net nodule segmentation with the Multi-Confidence Mask",
    slicer_module="UGSNetSegmentation",
    default_model_id="ugsnet-lidc-w8",
    architectures=("ugsnet", "ugsnet_v1", "ugsnet_unet", "ugsnet_attention_unet"),
    run_command="segment",
    outputs=("nodules.seg.nrrd", "nodules.csv", "nodule_{n}.png"),
    paper="seed 001 (journal) and seed 000 (MICCAI 2022)",
)
