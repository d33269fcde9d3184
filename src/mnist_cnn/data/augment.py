"""Training-time distortions of handwritten digits, applied to whole batches on the training device.

Random affine maps (rotation, scale, shear, shift), elastic distortion (Simard, Steinkraus and Platt,
2003: a random displacement field smoothed by a Gaussian), and stroke thickness (a 3x3 dilation or
erosion), drawn per image from a generator seeded by (seed, epoch, batch): a run repeats, and resumes
mid-epoch, with the same distortions. One grid_sample per batch does the affine map and the elastic
field together; no per-image Python, no workers. Written here because torchvision's v2 transforms draw one
set of parameters per call (per batch) on tensors, or work image by image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from annotated_types import Interval
from torch.nn import functional as F


@dataclass(frozen=True)
class Distortions:
    """Each training image's distortion, drawn uniformly within these bounds; all zero (the default, and the
    lab's runs): none. experiment=handwriting sets them.

    Args:
        rotation: rotation, degrees either way
        scale: scale change, relative, either way
        shear: shear, degrees either way
        shift: shift, pixels each axis either way
        elastic_alpha: elastic distortion: the largest displacement, pixels (0: none)
        elastic_sigma: elastic distortion: the smoothing Gaussian's sigma, pixels
        thickness: probability of a thicker stroke, and the same of a thinner one
    """

    rotation: Annotated[float, Interval(ge=0, le=180)] = 0.0
    scale: Annotated[float, Interval(ge=0, lt=1)] = 0.0
    shear: Annotated[float, Interval(ge=0, lt=90)] = 0.0
    shift: Annotated[float, Interval(ge=0, le=14)] = 0.0
    elastic_alpha: Annotated[float, Interval(ge=0, le=14)] = 0.0
    elastic_sigma: Annotated[float, Interval(gt=0, le=9)] = 3.0
    thickness: Annotated[float, Interval(ge=0, le=0.5)] = 0.0

    @property
    def distorts(self) -> bool:
        """Whether any bound is above zero (elastic_sigma only shapes the elastic field)."""
        return any((self.rotation, self.scale, self.shear, self.shift, self.elastic_alpha, self.thickness))

    def __call__(self, x: torch.Tensor, background: float, seed: int) -> torch.Tensor:
        """x: (N, 1, H, W) images whose background level is `background` (after normalisation)."""
        n, _, h, w = x.shape
        g = torch.Generator(device=x.device).manual_seed(seed)

        def uniform(bound: float, *shape: int) -> torch.Tensor:
            return (torch.rand(n, *shape, generator=g, device=x.device) * 2 - 1) * bound

        angle, shear = torch.deg2rad(uniform(self.rotation)), torch.deg2rad(uniform(self.shear))
        scale = 1 + uniform(self.scale)
        cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        # output -> input coordinates (affine_grid's theta), in [-1, 1] units: rotate, shear, scale
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 1] = cos / scale, (cos * tan - sin) / scale
        theta[:, 1, 0], theta[:, 1, 1] = sin / scale, (sin * tan + cos) / scale
        theta[:, :, 2] = uniform(self.shift, 2) * 2 / torch.tensor([w, h], device=x.device)
        grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
        if self.elastic_alpha > 0:
            grid = grid + self.elastic_field(n, h, w, g, x.device)
        out = (
            F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + background
        )
        if self.thickness > 0:
            pick = torch.rand(n, 1, 1, 1, generator=g, device=x.device)
            thicker = F.max_pool2d(out, 3, stride=1, padding=1)
            thinner = (
                out - F.max_pool2d(-out, 3, stride=1, padding=1)
            ) / 2  # half an erosion: a full one erases thin strokes
            out = torch.where(pick < self.thickness, thicker, torch.where(pick > 1 - self.thickness, thinner, out))
        return out

    def elastic_field(self, n: int, h: int, w: int, g: torch.Generator, device) -> torch.Tensor:
        """(N, H, W, 2) displacements in grid units, largest about elastic_alpha pixels."""
        field = torch.rand(n, 2, h, w, generator=g, device=device) * 2 - 1
        radius = max(1, math.ceil(3 * self.elastic_sigma))
        taps = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
        kernel = torch.exp(-(taps**2) / (2 * self.elastic_sigma**2))
        kernel = (kernel / kernel.sum()).view(1, 1, 1, -1).repeat(2, 1, 1, 1)
        field = F.conv2d(F.pad(field, (radius, radius, 0, 0), mode="reflect"), kernel, groups=2)
        field = F.conv2d(F.pad(field, (0, 0, radius, radius), mode="reflect"), kernel.transpose(2, 3), groups=2)
        field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6) * self.elastic_alpha
        return field.permute(0, 2, 3, 1) * 2 / torch.tensor([w, h], device=device)
