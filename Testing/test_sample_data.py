"""The bundled module samples hold what their READMEs promise: real HU, known intercepts, held-out patients."""

from __future__ import annotations

import numpy as np


def test_ugsnet_sample_crops_are_in_hounsfield_units_with_known_intercepts():
    from lungai.ugsnet.sample import load_sample

    arrays = load_sample()
    assert len(arrays["image_hu"]) == 16 and len(set(arrays["patient_id"].tolist())) == 16
    assert arrays["intercept_known"].all()
    for image, masks in zip(arrays["image_hu"], arrays["masks"]):
        assert image.min() >= -1100  # nothing below air
        nodule = masks.any(axis=0)
        around = ~nodule
        assert np.percentile(image[around], 10) < -600  # lung around the nodule, not shifted by +1024
