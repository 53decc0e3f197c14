"""The plain baseline of issue 13 beside the NLB classifier: MONAI's 2-D ``resnet18`` (one input channel, one
neoplasm logit) on the same IQ-OTH/NCCD training snapshots, framed at 192 px as the bundled model sees them, with the
same augmentation (:data:`lungai.nlb.training.AUGMENTATION`), Adam and the shared trainer's cosine schedule, keeping
the last epoch like the bundled recipe; scored on the same held-out fold 0 (precision, recall, F1 at 0.5).

Only the real snapshots train it: a classifier has no use for the bundled recipe's inserted-nodule masks.
``--epochs`` takes several budgets, one run each: the issue's 5 epochs and the bundled model's 24.

Regenerate (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/baseline.py --iqoth ../shared/data/iqoth_nccd \\
        --lidc ../shared/data/lidc_multireader.npz --epochs 5 24 --out bench/nlb
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from lungai.augmentation import AugmentedDataset
from lungai.io import write_table_csv
from lungai.nlb.data import frame_snapshot
from lungai.nlb.evaluation import classification_report
from lungai.nlb.training import AUGMENTATION, NLBData, make_split
from lungai.training import TrainConfig, seed_everything, train


class Snapshots(Dataset):
    """Framed snapshots as dict samples: ``image`` (1, S, S) in [0, 1], ``label`` () float."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


class ClassifierTask:
    """:class:`lungai.training.TrainTask`: binary cross-entropy of one logit per image."""

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(batch["image"])[:, 0], batch["label"])

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss(model, batch)

    def validation_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return {"loss": float(self.loss(model, batch))}


def resnet18() -> nn.Module:
    from monai.networks.nets import resnet18 as monai_resnet18

    # The usual ResNet-18 stem (7 x 7 convolution of stride 2, then max-pooling); MONAI's default stride 1 costs 4 x.
    return monai_resnet18(spatial_dims=2, n_input_channels=1, num_classes=1, conv1_t_stride=2)


def framed(data: NLBData, indices) -> Snapshots:
    images = torch.stack([frame_snapshot(data.units[i]) for i in indices])
    return Snapshots(images, torch.as_tensor(data.labels[indices], dtype=torch.float32))


@torch.no_grad()
def probabilities(model: nn.Module, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    model.eval()
    return torch.cat([model(images[i : i + batch_size])[:, 0].sigmoid() for i in range(0, len(images), batch_size)])


def run(data: NLBData, split, epochs: int, args: argparse.Namespace) -> dict:
    train_set, test_set = framed(data, split.train), framed(data, split.test)
    seed_everything(args.seed)
    network = resnet18()
    load = os.getloadavg()[0]
    started = time.perf_counter()
    train(
        network,
        ClassifierTask(),
        AugmentedDataset(train_set, mask_keys=(), settings=AUGMENTATION, seed=args.seed),
        None,
        TrainConfig(
            epochs=epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            scheduler="cosine",
            min_lr=args.lr / 50,
            seed=args.seed,
            device="cpu",
        ),
        model_name="monai_resnet18",
        model_config={"spatial_dims": 2},
    )
    seconds = time.perf_counter() - started
    report = classification_report(probabilities(network, test_set.images).numpy(), test_set.labels.numpy())
    return {
        "model": "MONAI resnet18 (2-D, 1 channel)",
        "epochs": epochs,
        "parameters": sum(p.numel() for p in network.parameters()),
        "training_snapshots": len(train_set),
        "train_s": round(seconds),
        "threads": torch.get_num_threads(),
        "load_average_at_start": round(load, 1),
        **{k: round(report[k], 4) for k in ("precision", "recall", "f1", "accuracy")},
        "confusion_matrix": report["confusion_matrix"],
        "held_out_snapshots": report["n"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iqoth", required=True, help="iqoth_nccd folder")
    parser.add_argument("--lidc", required=True, help="multi-reader .npz (only its patients enter the shared split)")
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 24])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="folder for baseline.csv")
    args = parser.parse_args()
    data = NLBData.load(args.iqoth, args.lidc)
    split = make_split(data.categories, data.nodule_patients, 5, 0, args.seed)
    rows = []
    for epochs in args.epochs:
        rows.append(run(data, split, epochs, args))
        print(rows[-1], flush=True)
    write_table_csv(Path(args.out) / "baseline.csv", rows)


if __name__ == "__main__":
    main()
