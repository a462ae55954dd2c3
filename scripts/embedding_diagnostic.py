"""Does the embedder tell people apart, and does G listen to it? (model-card diagnostic)

    python scripts/embedding_diagnostic.py --data PREPROCESSED [--checkpoint checkpoints/cpu]
                                           [--clips 9] [--frames 8] [--out FILE.json]

For the first ``--clips`` clips of each split in a ``preprocess`` output folder, embeds
``--frames`` frames spread over each clip (one embedding per frame, E(x, y)) and reports:

- ``cos_same_clip`` / ``cos_other_clip``: mean cosine similarity of two frames' embeddings from
  the same clip and from different clips (a collapsed embedder gives ~1 for both);
- ``within_clip_var`` / ``between_clip_var``: the mean squared distance of a frame's embedding
  to its clip's mean, and of the clip means to their overall mean;
- ``ff_l1_between_clips``: mean absolute difference (on [-1, 1]) between FF renders of the same
  landmark image with psi-hat = P e of two different clips, next to ``gt_l1_between_clips``, the
  same distance between the clips' real frames (a generator that ignores e gives ~0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talking_heads.data.dataset import EpisodeDataset  # noqa: E402
from talking_heads.models import Sources, TalkingHeadModel  # noqa: E402


def clip_frames(dataset: EpisodeDataset, video_index: int, count: int):
    """``count`` frames spread over a clip, as training sees them (no augmentation): images
    and landmark images, (count, 3, S, S) each."""
    clip = dataset.clip(video_index)
    pairs = [dataset.sample(clip, int(index), None)
             for index in np.linspace(0, len(clip.frames) - 1, count).astype(int)]
    return (torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]),
            torch.stack([p[2] for p in pairs]))


def off_diagonal_mean(matrix: torch.Tensor) -> float:
    return matrix[~torch.eye(len(matrix), dtype=torch.bool)].mean().item()


@torch.inference_mode()
def diagnose(model: TalkingHeadModel, dataset: EpisodeDataset, clips: int, count: int) -> dict:
    clip_ids = dataset.clip_ids[:clips]
    data = [clip_frames(dataset, index, count) for index in range(len(clip_ids))]
    embeddings = torch.stack([model.embedder(x, y) for x, y, _ in data])  # (C, F, N)
    unit = torch.nn.functional.normalize(embeddings.flatten(0, 1), dim=-1)
    cosine = unit @ unit.T
    label = torch.arange(len(clip_ids)).repeat_interleave(count)
    same = (label[:, None] == label[None]) & ~torch.eye(len(label), dtype=torch.bool)
    means = embeddings.mean(dim=1)  # (C, N)
    # One landmark image, rendered with every clip's psi-hat (the warp design samples the
    # first clip's first frame for all of them, so only psi-hat differs).
    x0, target, points = data[0][0][:1], data[0][1][:1], data[0][2][:1]
    sources = Sources(x0[:, None], target[:, None], points[:, None])
    renders = torch.cat([model.generator(target, model.generator.project(e[None]), points, sources)
                         for e in means])
    real = torch.stack([x[0] for x, _, _ in data])
    return {
        "clips": clip_ids,
        "frames_per_clip": count,
        "cos_same_clip": round(cosine[same].mean().item(), 4),
        "cos_other_clip": round(cosine[label[:, None] != label[None]].mean().item(), 4),
        "within_clip_var": round((embeddings - means[:, None]).pow(2).sum(-1).mean().item(), 4),
        "between_clip_var": round((means - means.mean(0)).pow(2).sum(-1).mean().item(), 4),
        "ff_l1_between_clips": round(off_diagonal_mean(
            (renders[:, None] - renders[None]).abs().mean(dim=(2, 3, 4))), 4),
        "gt_l1_between_clips": round(off_diagonal_mean(
            (real[:, None] - real[None]).abs().mean(dim=(2, 3, 4))), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a preprocess output folder")
    parser.add_argument("--checkpoint", default="checkpoints/cpu")
    parser.add_argument("--clips", type=int, default=9)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TalkingHeadModel.from_pretrained(args.checkpoint).eval()
    result = {"checkpoint": str(args.checkpoint)}
    for split in ("dev", "train"):
        dataset = EpisodeDataset(args.data, split, k=1, image_size=model.config.image_size)
        result[split] = diagnose(model, dataset, args.clips, args.frames)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
