"""Self-reenactment evaluation (Zakharov et al. 2019, Sec. 5.1): metrics, baselines, protocol.

- ``metrics``: SSIM, PSNR, landmark error, cosine similarity, Frechet distance.
- ``identity``: CSIM's face descriptor (dlib ResNet, independent of the training losses).
- ``baselines``: copy (nearest few-shot frame) and piecewise-affine warp.
- ``protocol``: clips -> few-shot / evaluated frames in the model's crop space.
- ``cli``: ``python -m talking_heads evaluate``.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m talking_heads evaluate`` (imports the heavy parts lazily)."""
    from talking_heads.evaluation.cli import main as cli_main

    return cli_main(argv)
