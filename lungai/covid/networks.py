"""Architectures of the COVIDHierarchical module, registered for checkpoints.

- ``raiunet``: one RAIU-Net (:class:`lungai.covid.raiunet.RAIUNet`), with the ablation switches
  ``rib``, ``hybrid_pool`` and ``ssd`` (all off = the baseline U-Net "BU" of Tables 4-5) and an
  optional decoder ``dropout``.
- ``chsnet``: the cascade (:class:`lungai.covid.raiunet.CHSNet`), lungs then infection.
"""

from __future__ import annotations

from lungai.architectures import register_architecture
from lungai.covid.raiunet import CHSNet, RAIUNet


@register_architecture("raiunet")
def build_raiunet(**config) -> RAIUNet:
    return RAIUNet(**config)


@register_architecture("chsnet")
def build_chsnet(**config) -> CHSNet:
    return CHSNet(**config)
