"""Training CHS-Net with the shared recipe (issue 13): lungs, then infection pre-trained on pseudo labels.

Protocol (seed 003 Sec. 4.2 scaled to one CPU thread; every number is a :class:`Recipe` field):

- Loss 0.5 BCE + 0.5 Dice (Eq. 15), Adam (the paper names SGD "with Adam as learning-rate
  optimiser"; we use Adam), a linear warm-up then cosine decay (:mod:`lungai.training`), budgets in
  epochs. Augmentation (:mod:`lungai.augmentation`, MONAI): left-right flips, rotation and scaling,
  gamma and intensity jitter for the slice-to-slice window differences of 8-bit slices. No
  up-down flip: the anterior-posterior direction is not symmetric.
- Stage 1 (lungs) trains at ``lung_size`` (128: the chest CT it learns real lungs from is 128 px)
  on the chest CT's training slices (k = 0-21, real labels) plus image-derived lung labels joined
  with each slice's own infection label (:func:`lungai.covid.data.with_derived_lungs`) of the
  doctor-labelled training slices and of a subsample of the pseudo-labelled slices.
- Stage 2 (infection) trains at ``size`` in two phases, the Semi-Inf-Net recipe (pseudo labels
  first, doctor labels last): ``pretrain_epochs`` on the pseudo-labelled slices
  (``covid_pseudo_infnet``, every ``pseudo_stride``-th slice of each case) mixed with the doctor
  training slices, then ``finetune_epochs`` on the doctor training slices alone at ``finetune_lr``.
  Hierarchical modes (``mask``, ``channel``) see every slice as the *trained* stage 1 makes it at
  inference (box around its predicted lungs, its lung map); ``direct`` sees the whole slice and
  has no lung stage. Hierarchical and direct get the same infection epochs, steps and data.
- The bundled mode is ``channel`` (stage 2 sees the lung map as a second channel and may answer
  outside it): the lung stage learns partly from image-derived lung labels, and with ``mask`` any
  infection it misses at the lung border (dense consolidation looks like the chest wall) is lost
  for good. ``mask`` remains an option (not measured at this budget).
- ``members`` > 1 (our addition; the paper trains one network per stage) trains the infection stage that many
  times, one after another, on the same lung stage and data with seeds ``seed``, ``seed + 1``, ...; the model
  averages their probabilities (:class:`lungai.ensemble.ProbabilityMean`). Member ``k`` is exactly the network of a
  run with ``seed + k`` reusing that lung stage.
- No early stopping: the doctor-labelled slices are too few to spare a validation split, and the
  held-out ones are the test set (they never steer training).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from lungai.augmentation import AugmentedDataset, AugmentSettings
from lungai.covid.cascade import Cascade
from lungai.covid.data import LabelledSlice, case_of, chest_ct_lung_slices, with_derived_lungs
from lungai.covid.grid import GridBox
from lungai.covid.losses import bce_dice_loss
from lungai.covid.raiunet import LUNG_INPUTS, RAIUNet, growing_widths, stage2_input
from lungai.ensemble import ProbabilityMean
from lungai.errors import LungAIError
from lungai.metrics import validation_dice
from lungai.progress import CancelToken, ProgressCallback, subrange
from lungai.training import TrainConfig, seed_everything, train

VARIANTS: dict[str, dict[str, bool]] = {
    "BU": dict(rib=False, hybrid_pool=False, ssd=False),
    "BU+RIB": dict(rib=True, hybrid_pool=False, ssd=False),
    "BU+RIB+HP": dict(rib=True, hybrid_pool=True, ssd=False),
    "RAIU-Net": dict(rib=True, hybrid_pool=True, ssd=True),
}
MODES = (*LUNG_INPUTS, "direct")
CPU_WIDTHS = growing_widths(16)  # our choice for one CPU thread: the paper's 50 % growth from 16 (0.47 M)
LUNG_WIDTHS = growing_widths(8)  # our choice: lungs are a large, high-contrast target (0.12 M)
AUGMENTATION = AugmentSettings(flip_axes=(1,), gamma_prob=0.3, gamma=(0.7, 1.4))


class SliceArrays(Dataset):
    """Grid-sized slices as dict samples: ``image`` ``(1, S, S)`` plus one ``(1, S, S)`` map per key."""

    def __init__(self, images: np.ndarray, maps: dict[str, np.ndarray]) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
        self.maps = {k: torch.from_numpy(np.asarray(v) > 0.5)[:, None] for k, v in maps.items()}  # bool: 1/4 memory

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], **{k: v[index].float() for k, v in self.maps.items()}}


@dataclass
class SegmentationTask:
    """Trainer task for one stage: ``target`` map; stage 2 builds its input from ``lung_map``."""

    target: str
    lung_input: str | None = None

    def inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.lung_input is None:
            return batch["image"]
        return stage2_input(batch["image"], batch["lung_map"], self.lung_input)

    def training_step(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return bce_dice_loss(model(self.inputs(batch)), batch[self.target])

    def validation_step(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        logits, target = model(self.inputs(batch)), batch[self.target]
        return {"dice": validation_dice(logits, target), "loss": float(bce_dice_loss(logits, target))}


@dataclass
class Recipe:
    """Everything that decides a CHS-Net training run (recorded in the checkpoint header)."""

    mode: str = "channel"  # channel | mask (hierarchical) | direct: see the module docstring
    variant: str = "RAIU-Net"
    size: int = 128  # infection grid (bench/covid/cost.md: why not 256 on one shared CPU thread)
    lung_size: int = 128
    widths: tuple[int, ...] = CPU_WIDTHS
    lung_widths: tuple[int, ...] = LUNG_WIDTHS
    lung_epochs: int = 3
    pretrain_epochs: int = 4
    pretrain_steps: int | None = 30  # batches per pre-training epoch (None: the whole set)
    finetune_epochs: int = 8
    pseudo_stride: int = 4  # 1 in k pseudo-labelled slices of a case (neighbours are near copies)
    lung_pseudo_stride: int = 64  # pseudo-labelled slices that also train the lung stage (derived lungs)
    doctor_repeats: int = 4  # doctor slices repeated in the pre-training mix
    batch_size: int = 4
    lr: float = 1e-3
    finetune_lr: float = 3e-4
    warmup_epochs: int = 1
    tta: bool = False  # the model averages its infection probability over left-right flips at inference
    ema: float | None = None  # every stage keeps an exponential moving average of its weights (lungai.training)
    seed: int = 0
    members: int = 1  # infection networks, seeds seed, seed + 1, ... on one lung stage; probabilities averaged
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise LungAIError(f"mode must be one of {MODES}, not {self.mode!r}.")
        if self.variant not in VARIANTS:
            raise LungAIError(f"variant must be one of {sorted(VARIANTS)}, not {self.variant!r}.")
        if self.members < 1:
            raise LungAIError(f"members must be at least 1 (infection networks to train), not {self.members}.")
        for name in ("size", "lung_size"):
            if getattr(self, name) % 16:
                raise LungAIError(f"{name} must be a multiple of 16 (four halvings), not {getattr(self, name)}.")
        self.widths = tuple(int(w) for w in self.widths)
        self.lung_widths = tuple(int(w) for w in self.lung_widths)

    def network_config(self, in_channels: int = 1, lung: bool = False) -> dict:
        widths = self.lung_widths if lung else self.widths
        return dict(in_channels=in_channels, widths=list(widths), **VARIANTS[self.variant])


@dataclass
class TrainedCHSNet:
    """The trained stages (``lung`` None in direct mode), their configs and what went into them."""

    recipe: Recipe
    lung: RAIUNet | None
    lung_config: dict | None
    infection: RAIUNet | ProbabilityMean
    infection_config: dict
    training_data: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def cascade(self, device: str = "cpu") -> Cascade:
        lung_input = None if self.recipe.mode == "direct" else self.recipe.mode
        return Cascade(
            self.infection,
            lung=self.lung,
            lung_input=lung_input,
            size=self.recipe.size,
            lung_size=self.recipe.lung_size,
            device=device,
            tta=self.recipe.tta,
        )


def every_kth_of_each_case(slices: list[LabelledSlice], k: int) -> list[LabelledSlice]:
    """Every ``k``-th slice of each case, in the given order (a case's slices are near copies of their neighbours)."""
    seen: dict[str, int] = {}
    kept = []
    for s in slices:
        position = seen.get(case_of(s.name), 0)
        seen[case_of(s.name)] = position + 1
        if position % k == 0:
            kept.append(s)
    return kept


def lung_dataset(slices: list[LabelledSlice], size: int) -> SliceArrays:
    """Whole slices on the grid with their ``lung`` labels (real or derived)."""
    boxes = [GridBox.whole(s.image.shape) for s in slices]
    images = np.stack([b.extract(s.image, size) for b, s in zip(boxes, slices)])
    lungs = np.stack([b.extract(s.lung.astype(np.float32), size, order=0) for b, s in zip(boxes, slices)]) > 0.5
    return SliceArrays(images, {"lung": lungs})


def infection_dataset(slices: list[LabelledSlice], cascade: Cascade) -> SliceArrays:
    """Slices as stage 2 sees them through ``cascade`` (hierarchical: its lung stage must be trained).

    Hierarchical: slices where stage 1 finds no lung are skipped (stage 2 never runs on them).
    """
    size = cascade.size
    images, lung_maps, targets = [], [], []
    for start in range(0, len(slices), 32):
        chunk = slices[start : start + 32]
        masks = (
            [p > 0.5 for p in cascade.lung_probabilities([s.image for s in chunk])]
            if cascade.hierarchical
            else [None] * len(chunk)
        )
        for s, mask in zip(chunk, masks):
            prepared = cascade.stage2_grid(s.image, mask)
            if prepared is None:
                continue
            box, _ = prepared
            images.append(box.extract(s.image, size))
            lung_maps.append(
                box.extract(mask.astype(np.float32), size, order=0) > 0.5
                if mask is not None
                else np.ones((size, size), bool)
            )
            targets.append(box.extract(s.infection.astype(np.float32), size, order=0) > 0.5)
    if not images:
        raise LungAIError("The lung stage finds no lungs in any training slice; train it longer or check the data.")
    return SliceArrays(np.stack(images), {"infection": np.stack(targets), "lung_map": np.stack(lung_maps)})


def train_network(
    dataset: Dataset,
    task: SegmentationTask,
    config: dict,
    recipe: Recipe,
    *,
    epochs: int,
    lr: float,
    out_dir: Path,
    training_data: str,
    mask_keys: tuple[str, ...],
    initial: RAIUNet | None = None,
    max_steps: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> RAIUNet:
    """Train one RAIU-Net (from ``initial``'s weights if given) with the shared trainer; returned in eval mode."""
    seed_everything(recipe.seed)
    model = RAIUNet(**config)
    if initial is not None:
        model.load_state_dict(initial.state_dict())
    train_config = TrainConfig(
        epochs=epochs,
        batch_size=recipe.batch_size,
        lr=lr,
        scheduler="cosine",
        warmup_epochs=min(recipe.warmup_epochs, max(0, epochs - 1)),
        min_lr=lr / 20,
        seed=recipe.seed,
        device=recipe.device,
        ema_decay=recipe.ema,
        out_dir=str(out_dir),
        max_steps_per_epoch=max_steps,
    )
    augmented = AugmentedDataset(dataset, mask_keys=mask_keys, settings=AUGMENTATION, seed=recipe.seed)
    train(
        model,
        task,
        augmented,
        None,
        train_config,
        model_name="raiunet",
        model_config=config,
        training_data=training_data,
        progress=progress,
        cancel=cancel,
    )
    return model.eval()


def train_chsnet(
    recipe: Recipe,
    doctor: list[LabelledSlice],
    pseudo: list[LabelledSlice],
    out: Path,
    *,
    doctor_source: str,
    pseudo_source: str,
    lung: tuple[RAIUNet, dict, str] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> TrainedCHSNet:
    """Train CHS-Net (or the direct network) on doctor-labelled ``doctor`` and pseudo-labelled ``pseudo`` slices.

    ``lung`` reuses a trained lung stage ``(network, config, training_data)`` instead of training one.
    ``*_source`` name the data (no local paths) for the checkpoint headers.
    """
    out = Path(out)
    seconds: dict[str, float] = {}
    data: dict[str, str] = {}
    lung_net, lung_config = None, None
    if recipe.mode != "direct":
        started = time.perf_counter()
        if lung is None:
            lung_slices = (
                chest_ct_lung_slices("train")
                + with_derived_lungs(doctor)
                + with_derived_lungs(every_kth_of_each_case(pseudo, recipe.lung_pseudo_stride))
            )
            lung_config = recipe.network_config(lung=True)
            data["lung"] = (
                f"CTChest4 (slicerio) slices 0-21 with real lungs; derived lungs joined with the infection labels of "
                f"{len(doctor)} {doctor_source} "
                f"slices and of 1 in {recipe.lung_pseudo_stride} {pseudo_source} slices"
            )
            lung_net = train_network(
                lung_dataset(lung_slices, recipe.lung_size),
                SegmentationTask("lung"),
                lung_config,
                recipe,
                epochs=recipe.lung_epochs,
                lr=recipe.lr,
                out_dir=out / "lung",
                training_data=data["lung"],
                mask_keys=("lung",),
                progress=subrange(progress, 0.0, 0.15),
                cancel=cancel,
            )
        else:
            lung_net, lung_config, data["lung"] = lung
        seconds["lung"] = time.perf_counter() - started
    lung_input = None if recipe.mode == "direct" else recipe.mode
    probe = Cascade(None, lung=lung_net, lung_input=lung_input, size=recipe.size, lung_size=recipe.lung_size)
    infection_config = recipe.network_config(in_channels=2 if recipe.mode == "channel" else 1)
    started = time.perf_counter()
    doctor_set = infection_dataset(doctor, probe)
    pseudo_set = None
    if recipe.pretrain_epochs > 0 and pseudo:
        pseudo_subset = every_kth_of_each_case(pseudo, recipe.pseudo_stride)
        pseudo_set = infection_dataset(pseudo_subset, probe)
        data["infection_pretraining"] = (
            f"{len(pseudo_subset)} {pseudo_source} slices (1 in {recipe.pseudo_stride}, Semi-Inf-Net pseudo labels) "
            f"+ {len(doctor)} {doctor_source} slices x {recipe.doctor_repeats}"
        )
    data["infection_finetuning"] = f"{len(doctor)} {doctor_source} slices (doctor labels)"
    seconds["infection_data"] = time.perf_counter() - started
    members = []
    share = 0.85 / recipe.members
    for k in range(recipe.members):
        network, member_seconds = train_infection(
            replace(recipe, seed=recipe.seed + k),
            infection_config,
            doctor_set,
            pseudo_set,
            out if k == 0 else out / f"member{k}",
            training_data=data,
            progress=subrange(progress, 0.15 + k * share, 0.15 + (k + 1) * share),
            cancel=cancel,
        )
        members.append(network)
        for phase, value in member_seconds.items():
            seconds[phase] = seconds.get(phase, 0.0) + value
    infection = members[0] if len(members) == 1 else ProbabilityMean(members).eval()
    if len(members) > 1:
        data["infection_members"] = f"{len(members)} networks, seeds {recipe.seed}-{recipe.seed + len(members) - 1}"
    return TrainedCHSNet(recipe, lung_net, lung_config, infection, infection_config, data, seconds)


def train_infection(
    recipe: Recipe,
    config: dict,
    doctor_set: SliceArrays,
    pseudo_set: SliceArrays | None,
    out: Path,
    *,
    training_data: dict[str, str],
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[RAIUNet, dict[str, float]]:
    """One infection RAIU-Net, seeded by ``recipe.seed``: pre-trained on the pseudo-labelled slices mixed with the
    doctor slices x ``doctor_repeats`` (if ``pseudo_set``), then fine-tuned on the doctor slices; with its seconds
    per phase. ``training_data`` holds the checkpoint texts of both phases."""
    task = SegmentationTask("infection", None if recipe.mode == "direct" else recipe.mode)
    mask_keys = ("infection", "lung_map")
    started = time.perf_counter()
    infection = None
    if pseudo_set is not None:
        infection = train_network(
            ConcatDataset([pseudo_set] + [doctor_set] * recipe.doctor_repeats),
            task,
            config,
            recipe,
            epochs=recipe.pretrain_epochs,
            lr=recipe.lr,
            out_dir=out / "pretrain",
            training_data=training_data["infection_pretraining"],
            mask_keys=mask_keys,
            max_steps=recipe.pretrain_steps,
            progress=subrange(progress, 0.0, 0.7),
            cancel=cancel,
        )
    seconds = {"pretrain": time.perf_counter() - started}
    started = time.perf_counter()
    infection = train_network(
        doctor_set,
        task,
        config,
        recipe,
        epochs=recipe.finetune_epochs,
        lr=recipe.finetune_lr if infection is not None else recipe.lr,
        out_dir=out / "finetune",
        training_data=training_data["infection_finetuning"],
        mask_keys=mask_keys,
        initial=infection,
        progress=subrange(progress, 0.7, 1.0),
        cancel=cancel,
    )
    seconds["finetune"] = time.perf_counter() - started
    return infection, seconds


def recipe_record(recipe: Recipe) -> dict:
    """The recipe as JSON-ready values (for headers and bench files)."""
    record = asdict(recipe)
    record["widths"], record["lung_widths"] = list(recipe.widths), list(recipe.lung_widths)
    return record
