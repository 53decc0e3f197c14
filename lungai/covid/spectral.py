"""Spectral pooling operators of CHS-Net (seed 003, Sec. 3.1.1 Eq. 2 and Sec. 3.2).

All transforms run over the two spatial axes only (the last two of an ``(N, C, H, W)`` tensor),
one 2-D DFT per feature map, as Eq. 2 concatenates over depth. The spectrum is centred
(``fftshift``) so that "keep the low frequencies" is a centred crop.

Scaling: the forward DFT is normalised by ``1 / (H W)`` (``norm="forward"``) and the inverse is
unnormalised, so the DC coefficient equals the map's mean and every pooled map keeps the mean of
its input. Eq. 2's unitary ``1 / sqrt(wh)`` would instead scale the pooled map by
``sqrt(hw / HW)``; we keep the mean so that max- and spectral-pooled maps share a scale before
the hybrid pooling's 1x1 fusion.
"""

from __future__ import annotations

import torch

_SPATIAL = (-2, -1)


def centred_spectrum(x: torch.Tensor) -> torch.Tensor:
    """``fftshift(fft2(x) / (H W))``: complex ``(..., H, W)`` with DC at ``(H // 2, W // 2)``."""
    return torch.fft.fftshift(torch.fft.fft2(x, norm="forward"), dim=_SPATIAL)


def _centre_slices(size: tuple[int, int], keep: tuple[int, int]) -> tuple[slice, slice]:
    """Index of the centred ``keep`` block of a shifted spectrum of ``size`` (DC stays centred)."""
    (h, w), (kh, kw) = size, keep
    if not (0 < kh <= h and 0 < kw <= w):
        raise ValueError(f"cannot keep {keep} frequencies of a {size} spectrum")
    top, left = h // 2 - kh // 2, w // 2 - kw // 2
    return slice(top, top + kh), slice(left, left + kw)


def spectral_pool2d(x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Spectral pooling (Rippel et al. 2015; CHS-Net Eq. 2) to ``out_size``.

    ``(N, C, H, W) -> (N, C, h, w)``: DFT, keep the centred ``h x w`` low frequencies, inverse DFT
    of that block, real part. The output keeps the input's mean (see module docstring).
    """
    rows, cols = _centre_slices(tuple(x.shape[-2:]), out_size)
    kept = centred_spectrum(x)[..., rows, cols]
    return torch.fft.ifft2(torch.fft.ifftshift(kept, dim=_SPATIAL), norm="forward").real


def spectral_lowpass2d(x: torch.Tensor, keep_fraction: float = 0.5) -> torch.Tensor:
    """ "Same"-padded spectral pooling: the ideal low-pass of :func:`spectral_pool2d`, size kept.

    ``(N, C, H, W) -> (N, C, H, W)``. Frequencies outside the centred
    ``round(keep_fraction H) x round(keep_fraction W)`` block are zeroed. The paper says hybrid
    pooling may run with "same" padding inside the inception convolution (Sec. 3.1.1); a spectral
    pool that keeps the spatial size is exactly this band limitation.
    """
    h, w = x.shape[-2:]
    keep = (max(1, round(h * keep_fraction)), max(1, round(w * keep_fraction)))
    rows, cols = _centre_slices((h, w), keep)
    spectrum = centred_spectrum(x)
    band = torch.zeros_like(spectrum)
    band[..., rows, cols] = spectrum[..., rows, cols]
    return torch.fft.ifft2(torch.fft.ifftshift(band, dim=_SPATIAL), norm="forward").real


def global_spectral_pool2d(x: torch.Tensor, band: int = 3) -> torch.Tensor:
    """Global spectral pooling of the SSD attention (Sec. 3.2): ``(N, C, H, W) -> (N, C, 1, 1)``.

    The paper does not say what "global spectral pooling" keeps. Keeping only the DC term would
    be global average pooling (the DC coefficient is the mean), so we keep the centred
    ``band x band`` low-frequency block (clipped to the map size) and pool it to one number per
    channel by its energy, ``sqrt(sum |X_uv|^2)``. By Parseval this is the root-mean-square of the
    map low-pass filtered to that band: it grows with the mean *and* with coarse spatial structure,
    and is not dominated by single extreme pixels (the bias of max pooling the paper criticises).
    ``band=1`` gives ``|mean|``.
    """
    h, w = x.shape[-2:]
    rows, cols = _centre_slices((h, w), (min(band, h), min(band, w)))
    kept = centred_spectrum(x)[..., rows, cols]
    return kept.abs().pow(2).sum(dim=_SPATIAL, keepdim=True).sqrt()
