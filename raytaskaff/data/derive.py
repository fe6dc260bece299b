"""Labels derived from rendered images with Taskonomy's own recipes.

edge_texture and keypoints2d follow EPFL-VILAB/omnidata's annotator exactly (reference section 9):
Canny without non-maximum suppression at sigma = 3, and the SURF determinant of Hessian, max over
sigma in linspace(1, 30, 10), both defined on 512 x 512 images. At another resolution R the sigmas
are scaled by R / 512 and the edge magnitude by R / 512 (a gradient per pixel shrinks as pixels
grow), so the stored values keep the units of the 512 px recipe; the box-filter Hessian of SURF
is normalised by its box area, so its response grows as (512 / R)^2 and is scaled back. Compute at R >= 128 and area-downsample: at low resolution the
recipe's statistics change (reference section 9.6).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import hessian_matrix_det
from skimage.filters import sobel
from skimage.transform import integral_image

try:  # the kernel behind hessian_matrix_det(approximate=True), which rebuilds the integral image per call
    from skimage.feature._hessian_det_appx import _hessian_matrix_det
except ImportError:  # pragma: no cover - other scikit-image layouts
    _hessian_matrix_det = None

TASKONOMY_RESOLUTION = 512
EDGE_SIGMA = 3.0
KEYPOINT_SIGMAS = np.linspace(1, 30, 10)


def luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W) ITU-R 601-2 luma in [0, 1] of uint8 RGB, rounded as Pillow's convert('L') does."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.float64) / 255.0


def _to_uint16(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 65535).astype(np.uint16)


def edge_texture(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint16 texture edges: Sobel magnitude of the bleed-compensated Gaussian blur.

    gray: (R, R) float luma in [0, 1]. Equals the 512 px recipe when R = 512.
    """
    scale = gray.shape[0] / TASKONOMY_RESOLUTION
    sigma = EDGE_SIGMA * scale
    ones = np.ones_like(gray)
    blurred = ndimage.gaussian_filter(gray, sigma, mode="constant") / ndimage.gaussian_filter(ones, sigma, mode="constant")
    return _to_uint16(sobel(blurred, mask=ones.astype(bool)) * scale)


def keypoints2d(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint16 2D keypoint response: max over scales of the SURF Hessian determinant.

    Sigmas below 1 px are raised to 1: skimage's box filters need at least a 3 px kernel.
    """
    scale = gray.shape[0] / TASKONOMY_RESOLUTION
    response = np.zeros_like(gray)
    integral = integral_image(gray) if _hessian_matrix_det is not None else None
    for sigma in KEYPOINT_SIGMAS:
        sigma = max(1.0, sigma * scale)
        if integral is not None:
            det = np.asarray(_hessian_matrix_det(integral, sigma))
        else:
            det = hessian_matrix_det(gray, sigma=sigma, approximate=True)
        np.maximum(response, det, out=response)
    return _to_uint16(response * scale**2)
