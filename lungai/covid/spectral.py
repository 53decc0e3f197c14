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

import functools
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
    output keeps the input's mean (see module docstring). The transform is separable, so it runs as
    ``Re(A X B^T)`` with each axis' pooling as a small matrix (:func:`_pool_matrix`): two real
    matrix products instead of a complex 2-D FFT, its shifts and its inverse (the same numbers to
    float rounding, about 3x faster on a CPU).
    """
    (h, w), (big_h, big_w) = out_size, x.shape[-2:]
    _centre_slices((big_h, big_w), (h, w))  # validates the sizes
    rows = _constant(_pool_matrix, big_h, h, dtype=x.dtype, device=x.device)  # (2h, H): [Re A; Im A]
    cols = _constant(_pool_matrix, big_w, w, dtype=x.dtype, device=x.device)  # (2w, W): [Re B; Im B]
    y = torch.matmul(rows, x)  # (..., 2h, W)
    # Re(A X B^T) = Re A X Re B^T - Im A X Im B^T
    return torch.matmul(y[..., :h, :], cols[:w].T) - torch.matmul(y[..., h:, :], cols[w:].T)


def spectral_lowpass2d(x: torch.Tensor, keep_fraction: float = 0.5) -> torch.Tensor:
    """ "Same"-padded spectral pooling: an ideal low-pass that keeps the size. ``(N, C, H, W) -> (N, C, H, W)``.

    Keeps the frequencies ``|k_y| < keep_fraction * H / 2`` and ``|k_x| < keep_fraction * W / 2``
    (the band :func:`spectral_pool2d` to ``keep_fraction`` of the size keeps, made symmetric so the
    result is real) and zeroes the rest. The paper says hybrid pooling may run with "same" padding
    inside the inception convolution (Sec. 3.1.1); a spectral pool that keeps the spatial size is
    this band limitation. The band is separable: a real FFT along the rows keeps only the low
    columns, the row low-pass of those runs as one real matrix (:func:`_lowpass_matrix`), and the
    inverse real FFT restores the size (the same numbers as the 2-D transform to float rounding).
    """
    h, w = x.shape[-2:]
    cols = int((torch.fft.rfftfreq(w, dtype=torch.float64) < keep_fraction / 2).sum())
    spectrum = torch.view_as_real(torch.fft.rfft(x, dim=-1, norm="forward")[..., :cols])  # (..., h, cols, 2)
    rows = _constant(_lowpass_matrix, h, keep_fraction, dtype=x.dtype, device=x.device)
    filtered = torch.matmul(rows, spectrum.reshape(*spectrum.shape[:-2], 2 * cols))
    return torch.fft.irfft(torch.view_as_complex(filtered.view(spectrum.shape)), n=w, dim=-1, norm="forward")


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
    The ``band`` coefficients of each axis are computed directly, as rows of the centred DFT matrix
    (:func:`_band_dft`), rather than as the full spectrum to be cut.
    """
    dims = tuple(sorted((d % x.dim() for d in dims), reverse=True))
    kept = x
    for d in dims:
        size = x.shape[d]
        keep = min(band, size)
        moved = kept.movedim(d, -1)
        if moved.is_complex():
            dft = _constant(_band_dft, size, keep, dtype=moved.dtype, device=x.device)
            moved = torch.matmul(moved, dft.T)
        else:  # rows of the real matrix alternate real and imaginary parts: (..., keep, 2) is the complex view
            dft = _constant(_band_dft_real, size, keep, dtype=moved.dtype, device=x.device)
            moved = torch.view_as_complex(torch.matmul(moved, dft.T).unflatten(-1, (keep, 2)))
        kept = moved.movedim(-1, d)
    energy = (kept.real.pow(2) + kept.imag.pow(2)).sum(dim=dims, keepdim=True)
    return energy.clamp_min(1e-12).sqrt()


# --- each axis' transform as a matrix (built once per size in float64 from the FFT definitions above) -------------


def _pool_matrix(size: int, keep: int) -> torch.Tensor:
    """Spectral pooling of one axis from ``size`` to ``keep`` samples as ``(2 keep, size)``: real part rows,
    then imaginary part rows of the complex matrix ``A`` with ``pool(v) = A v``."""
    (kept, _) = _centre_slices((size, 1), (keep, 1))
    spectrum = centred_spectrum(torch.eye(size, dtype=torch.float64), dims=(0,))[kept]
    matrix = torch.fft.ifft(torch.fft.ifftshift(spectrum, dim=0), dim=0, norm="forward")
    return torch.cat([matrix.real, matrix.imag])


def _lowpass_matrix(size: int, keep_fraction: float) -> torch.Tensor:
    """The ideal low-pass of one axis (frequencies ``|k| < keep_fraction * size / 2``) as a real ``(size, size)``
    matrix."""
    band = torch.fft.fftfreq(size, dtype=torch.float64).abs() < keep_fraction / 2
    spectrum = torch.fft.fft(torch.eye(size, dtype=torch.float64), dim=0) * band[:, None]
    return torch.fft.ifft(spectrum, dim=0).real


def _band_dft(size: int, keep: int) -> torch.Tensor:
    """The ``keep`` centred rows of the mean-normalised, shifted DFT matrix of ``size`` samples (complex)."""
    return centred_spectrum(torch.eye(size, dtype=torch.float64), dims=(0,))[size // 2 - keep // 2 :][:keep]


def _band_dft_real(size: int, keep: int) -> torch.Tensor:
    """:func:`_band_dft` as a real ``(2 keep, size)`` matrix whose rows alternate real and imaginary parts."""
    return torch.view_as_real(_band_dft(size, keep)).permute(0, 2, 1).reshape(2 * keep, size)


@functools.lru_cache(maxsize=256)
def _constant(build, *args, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``build(*args)`` in ``dtype`` on ``device``, built once; an ordinary tensor even when first asked for
    under ``torch.inference_mode`` (training may use it afterwards)."""
    with torch.inference_mode(False), torch.no_grad():
        return build(*args).to(device=device, dtype=dtype).contiguous()
