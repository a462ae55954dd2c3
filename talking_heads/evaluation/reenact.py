"""The model under evaluation: few-shot adaptation on T crops, then rendering from landmarks.

- FF: e_new = mean_t E(x(t), y(t)), psi-hat = P e_new, x-hat = G(y, psi-hat) (paper Sec. 3.3).
- FT: psi' and a private copy of G (and of D when the checkpoint ships one) trained on the T
  crops with ``training.finetune.run_finetune``; the loaded model is never modified.

Both take the few-shot frames' *crops* (the evaluation's crop space), not photos, so the model
sees exactly the crops the baselines use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from talking_heads.images import image_to_tensor, tensor_to_image
from talking_heads.models import ProjectionDiscriminator, Sources, TalkingHeadModel
from talking_heads.precision import inference_autocast

# (landmark images uint8 (B, S, S, 3), points (B, 68, 2) in crop px) -> images (B, S, S, 3)
Renderer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Adaptation:
    """A renderer for one person plus what the adaptation did (for the JSON report)."""

    render: Renderer
    mode: str
    seconds: float
    steps: int = 0
    content_only: bool = False


class ModelReenactor:
    """Adapts ``model`` to T crops in mode "ff" or "ft" and renders batches of landmark images."""

    def __init__(self, model: TalkingHeadModel,
                 discriminator: ProjectionDiscriminator | None = None, ft_steps: int = 100,
                 ft_config=None, content: torch.nn.Module | None = None,
                 batch_size: int = 8, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.discriminator = discriminator
        self.ft_steps = ft_steps
        self.ft_config = ft_config
        self.content = content  # None: the paper's L_CNT (VGG16 + FaceNet)
        self.batch_size = batch_size

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    def _renderer(self, generate: Callable[..., torch.Tensor],
                  sources: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> Renderer:
        """``sources``: the T shots' crops, landmark images (T, 3, S, S) and points (T, 68, 2),
        shared by every rendered frame (the warp design samples the nearest)."""
        def render(landmark_images: np.ndarray, points: np.ndarray) -> np.ndarray:
            outputs = []
            with torch.inference_mode():
                for start in range(0, len(landmark_images), self.batch_size):
                    y = image_to_tensor(landmark_images[start:start + self.batch_size])
                    p = torch.as_tensor(np.asarray(points[start:start + self.batch_size],
                                                   np.float32), device=self.device)
                    batch = Sources.shared(*sources, batch=len(y))
                    with inference_autocast(self.device):  # as the app renders
                        outputs.append(tensor_to_image(generate(y.to(self.device), p, batch)))
            return np.concatenate(outputs)  # (B, S, S, 3)
        return render

    def adapt(self, images: np.ndarray, landmark_images: np.ndarray, mode: str,
              points: np.ndarray) -> Adaptation:
        """``images``/``landmark_images``: uint8 (T, S, S, 3) crops x(t) and their y(t);
        ``points`` (T, 68, 2) their landmarks in crop pixels (the warp design's sources)."""
        import time

        if images.shape != landmark_images.shape or images.shape[1] != self.image_size:
            raise ValueError(f"expected (T, {self.image_size}, {self.image_size}, 3) crops, got "
                             f"{images.shape} and {landmark_images.shape}")
        start = time.perf_counter()
        x = image_to_tensor(images).to(self.device)           # (T, 3, S, S)
        y = image_to_tensor(landmark_images).to(self.device)  # (T, 3, S, S)
        p = torch.as_tensor(np.asarray(points, np.float32), device=self.device)  # (T, 68, 2)
        sources = (x, y, p)
        if mode == "ff":
            with torch.inference_mode():
                e_new = self.model.embed(x[None], y[None])   # (1, N)
                psi_hat = self.model.generator.project(e_new)  # (1, P)
            generator = self.model.generator

            def generate(ys, target_points, batch_sources):
                return generator(ys, psi_hat.expand(ys.shape[0], -1), target_points,
                                 batch_sources)
            return Adaptation(self._renderer(generate, sources), mode,
                              time.perf_counter() - start)
        if mode == "ft":
            from talking_heads.training.finetune import run_finetune

            result = run_finetune(self.model, x, y, self.ft_steps,
                                  discriminator=self.discriminator, config=self.ft_config,
                                  content=self.content, points=p)
            return Adaptation(self._renderer(result.generator, sources), mode,
                              time.perf_counter() - start, steps=result.steps,
                              content_only=result.content_only)
        raise ValueError(f"unknown mode {mode!r}; choose 'ff' or 'ft'")
