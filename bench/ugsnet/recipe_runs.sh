#!/usr/bin/env bash
# Issue 13 side-by-side: UGS-Net and MONAI UNet, one recipe and budget, held-out patient folds 0 and 1.
# Run from the repository root with the shared data beside it; one thread per run, two runs at a time (2 cores):
# the two UGS-Net folds together (~31 min), then the two MONAI UNet folds (~6 min).
# Fold 0's UGS-Net is the bundled model (registered into Resources/Models as ugsnet-lidc-w8).
set -euo pipefail
DATA=${DATA:-../shared/data/lidc_multireader.npz}
RUNS=${RUNS:-bench/ugsnet/recipe_runs}
RECIPE="--epochs 30 --batch-size 16 --lr 1e-3 --optimizer adam --scheduler cosine --fusion dicebce --final-target label1 --augmentation dihedral --seed 0"
export OMP_NUM_THREADS=1
LUNGAI_USER_MODELS=Resources/Models python -m lungai ugsnet train --data "$DATA" --fold 0 --architecture ugsnet \
    --features 16 32 64 128 256 $RECIPE --out "$RUNS/ugsnet_fold0" --register ugsnet-lidc-w8 &
first=$!
python -m lungai ugsnet train --data "$DATA" --fold 1 --architecture ugsnet --features 16 32 64 128 256 $RECIPE \
    --out "$RUNS/ugsnet_fold1" &
second=$!
wait "$first"  # each wait returns its run's exit status, so set -e stops on a failed run
wait "$second"
for fold in 0 1; do
    python -m lungai ugsnet train --data "$DATA" --fold $fold --architecture monai_unet --features 16 32 64 128 256 \
        $RECIPE --out "$RUNS/monai_unet_fold$fold" &
    pids[$fold]=$!
done
wait "${pids[0]}"
wait "${pids[1]}"
