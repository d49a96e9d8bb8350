"""The original AST's adaptation of positional embeddings from one patch grid to another.

Written by hand because transformers' AST has no positional-embedding interpolation.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def adapt_position_embeddings(
    pos_embed: torch.Tensor, source_grid: tuple[int, int], target_grid: tuple[int, int]
) -> torch.Tensor:
    """Adapt ``[1, 2 + f*t, D]`` positional embeddings from one patch grid to another, as the original does.

    The two leading rows (cls and distillation token) are kept. The grid is handled time first, then
    frequency: each axis is cut from the centre (offset ``src // 2 - n // 2``) when it shrinks or stays, and
    bilinearly resized (``align_corners=False``) when it grows. Tokens are frequency-major
    (token = f * t_dim + t).
    """
    f_src, t_src = source_grid
    f_dim, t_dim = target_grid
    hidden = pos_embed.shape[-1]
    if pos_embed.dim() != 3 or pos_embed.shape[1] != f_src * t_src + 2:
        raise ValueError(
            f"positional embeddings of shape {tuple(pos_embed.shape)} do not fit a {f_src}x{t_src} patch "
            f"grid (expected [1, {f_src * t_src + 2}, D])"
        )
    grid = pos_embed[:, 2:].reshape(1, f_src, t_src, hidden).permute(0, 3, 1, 2)
    if t_dim <= t_src:
        start = t_src // 2 - t_dim // 2
        grid = grid[:, :, :, start : start + t_dim]
    else:
        grid = F.interpolate(grid, size=(f_src, t_dim), mode="bilinear", align_corners=False)
    if f_dim <= f_src:
        start = f_src // 2 - f_dim // 2
        grid = grid[:, :, start : start + f_dim, :]
    else:
        grid = F.interpolate(grid, size=(f_dim, t_dim), mode="bilinear", align_corners=False)
    return torch.cat([pos_embed[:, :2], grid.flatten(2).transpose(1, 2)], dim=1).contiguous()
