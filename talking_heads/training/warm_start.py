"""Start a meta-learning run from another model's weights (``TrainConfig.init_from``).

The warp preset shares the ``cpu`` preset's widths, so a meta-trained ``cpu`` checkpoint gives
it a trained E, AdaIN decoder, projection P and V on day one. Tensors are copied where names and
shapes agree. Where only the input channels grew (G's first encoder block reads 9 channels in
the warp design, 3 in the paper's, with y(t) first), the old weights fill the first channels and
the new ones start at zero, so the block initially computes what it did before. Everything else
(the warp heads, W, spectral-norm power-iteration vectors of resized layers) keeps its fresh
initialisation; W is re-initialised from E's embeddings of each training video by the caller.
Only safetensors are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from talking_heads.models.talking_head import WEIGHTS_NAME
from talking_heads.training.checkpoint import DISCRIMINATOR_NAME


@dataclass
class WarmStartReport:
    copied: list[str] = field(default_factory=list)   # same name and shape
    widened: list[str] = field(default_factory=list)  # input channels zero-padded
    fresh: list[str] = field(default_factory=list)    # kept their initialisation


def _widen(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor | None:
    """Old conv weight (O, I, k, k) into a wider-input (O, I', k, k), I' > I; else None."""
    if (old.dim() != 4 or new.dim() != 4 or old.shape[0] != new.shape[0]
            or old.shape[2:] != new.shape[2:] or old.shape[1] >= new.shape[1]):
        return None
    out = torch.zeros_like(new)
    out[:, : old.shape[1]] = old
    return out


def load_matching(module: nn.Module, state: dict[str, torch.Tensor],
                  report: WarmStartReport, prefix: str = "") -> None:
    """Copy ``state`` into ``module`` where names match (see the module docstring)."""
    own = module.state_dict()
    merged = {}
    for name, tensor in own.items():
        old = state.get(name)
        if old is not None and old.shape == tensor.shape:
            merged[name] = old.to(tensor.dtype)
            report.copied.append(prefix + name)
        elif old is not None and name.endswith(".original") and _widen(old, tensor) is not None:
            merged[name] = _widen(old, tensor)
            report.widened.append(prefix + name)
        else:
            merged[name] = tensor
            report.fresh.append(prefix + name)
    module.load_state_dict(merged, strict=True)


def warm_start(model: nn.Module, discriminator: nn.Module, directory: str | Path) -> WarmStartReport:
    """Initialise E and G (``model``) and V, w0, b (``discriminator``) from a model folder."""
    directory = Path(directory)
    report = WarmStartReport()
    with torch.no_grad():
        load_matching(model, load_file(str(directory / WEIGHTS_NAME)), report)
        disc_file = directory / DISCRIMINATOR_NAME
        if disc_file.is_file():
            load_matching(discriminator, load_file(str(disc_file)), report, "discriminator.")
    return report
