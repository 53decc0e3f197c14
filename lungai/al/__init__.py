"""Active learning for segmentation by uncertainty slice sampling (USS; Chlebus et al., IEEE Access 2022, seed 004).

MC-dropout predictive entropy (:mod:`.uncertainty`), the four query strategies USS, UVS, RVS, RSS
(:mod:`.strategies`), the weighted soft Dice loss for partially annotated volumes (:mod:`.losses`), training
on annotated slices (:mod:`.training`) and the simulated active-learning comparison (:mod:`.simulation`).
"""
