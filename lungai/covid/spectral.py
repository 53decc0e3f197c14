"""Spectral pooling operators of CHS-Net (seed 003, Sec. 3.1.1 Eq. 2 and Sec. 3.2).

Spectral pooling (Rippel et al. 2015, the paper's ref. [46]): DFT, keep the centred low
frequencies, inverse DFT. The spatial transforms run over the two spatial axes (the last two of an
``(N, C, H, W)`` tensor), one 2-D DFT per feature map, as Eq. 2 concatenates over depth.

Scaling: the forward DFT is normalised by ``1 / (number of samples)`` (``norm="forward"``) and the
inverse is unnormalised, so the DC coefficient equals the mean and every pooled map keeps the mean
of its input. Eq. 2's unitary ``1 / sqrt(wh)`` would scale a pooled map by ``sqrt(hw / HW)`` and a
global descriptor by ``sqrt(HW)``, so descriptors of different stages would differ in scale by the
map size alone; we keep the mean so that max- and spectral-pooled maps, and the descriptors of every
stage, share a scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_SPATIAL = (-2, -1)


def centred_spectrum(x: torch.Tensor, dims: Sequence[int] = _SPATIAL) -> torch.Tensor:
    """``fftshift(fftn(x) / n)`` over ``dims``: complex, DC at index ``size // 2`` of each of ``dims``."""
    dims = tuple(dims)
    return torch.fft.fftshift(torch.fft.fftn(x, dim=dims, norm="forward"), dim=dims)


def _centre_slices(size: tuple[int, int], keep: tuple[int, int]) -> tuple[slice, slice]:
    """Index of the centred ``keep`` block of a shifted spectrum of ``size`` (DC stays centred)."""
    (h, w), (kh, kw) = size, keep
    if not (0 < kh <= h and 0 < kw <= w):
        raise ValueError(f"cannot keep {keep} frequencies of a {size} spectrum")
    top, left = h // 2 - kh // 2, w // 2 - kw // 2
    return slice(top, top + kh), slice(left, left + kw)


def spectral_pool2d(x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Spectral pooling (CHS-Net Eq. 2) to ``out_size``: ``(N, C, H, W) -> (N, C, h, w)``.

    DFT, keep the centred ``h x w`` low frequencies, inverse DFT of that block, real part. The
    output keeps the input's mean (see module docstring).
    """
    rows, cols = _centre_slices(tuple(x.shape[-2:]), out_size)
    kept = centred_spectrum(x)[..., rows, cols]
    return torch.fft.ifft2(torch.fft.ifftshift(kept, dim=_SPATIAL), norm="forward").real


def spectral_lowpass2d(x: torch.Tensor, keep_fraction: float = 0.5) -> torch.Tensor:
    """ "Same"-padded spectral pooling: an ideal low-pass that keeps the size. ``(N, C, H, W) -> (N, C, H, W)``.

    Keeps the frequencies ``|k_y| < keep_fraction * H / 2`` and ``|k_x| < keep_fraction * W / 2``
    (the band :func:`spectral_pool2d` to ``keep_fraction`` of the size keeps, made symmetric so the
    result is real) and zeroes the rest. The paper says hybrid pooling may run with "same" padding
    inside the inception convolution (Sec. 3.1.1); a spectral pool that keeps the spatial size is
    this band limitation. Computed with the real FFT (a quarter of the complex FFT's cost).
    """
    h, w = x.shape[-2:]
    spectrum = torch.fft.rfft2(x, norm="forward")
    rows = torch.fft.fftfreq(h, device=x.device).abs() < keep_fraction / 2
    cols = torch.fft.rfftfreq(w, device=x.device) < keep_fraction / 2
    band = (rows[:, None] & cols[None, :]).to(spectrum.real.dtype)
    return torch.fft.irfft2(spectrum * band, s=(h, w), norm="forward")


def global_spectral_pool(x: torch.Tensor, dims: Sequence[int] = _SPATIAL, band: int = 3) -> torch.Tensor:
    """Global spectral pooling (Sec. 3.2, :math:`P_{gsp}`) over ``dims``, which shrink to size 1.

    Over the spatial axes ``(-2, -1)`` it gives the depth descriptor's ``(N, C, 1, 1)`` input
    (Eq. 8); over the channel axis ``(1,)`` the one-channel map of the spatial descriptor (Eq. 11).

    Spectral pooling to size 1 keeps only the DC coefficient, which is the mean: that would be
    global average pooling, the operation the paper replaces because it is "biased towards extreme
    features". So we spectrally pool to the centred ``band`` lowest frequencies of each axis in
    ``dims`` (clipped to the axis length) and make that block global by its energy
    ``sqrt(sum |X_k|^2)``. By Parseval this is the root-mean-square of the input low-pass filtered
    to that band: it grows with the mean *and* with coarse structure (two maps with the same mean
    differ), it ignores fine detail and is not pulled by single extreme pixels. ``band=1`` gives
    ``|mean|``. Differentiable (the gradient of the energy is defined wherever it is non-zero).
    """
    dims = tuple(d % x.dim() for d in dims)
    kept = centred_spectrum(x, dims)
    for d in dims:
        size = x.shape[d]
        keep = min(band, size)
        kept = kept.narrow(d, size // 2 - keep // 2, keep)
    energy = (kept.real.pow(2) + kept.imag.pow(2)).sum(dim=dims, keepdim=True)
    return energy.clamp_min(1e-12).sqrt()
