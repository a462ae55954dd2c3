"""Few-shot neural talking heads (Zakharov et al., ICCV 2019, arXiv 1905.08233).

Package layout (networks know nothing of files; pipelines turn files into files):

- ``talking_heads.landmarks``: 68-point detection, face crops, landmark images, relative motion.
- ``talking_heads.models``: Embedder E, Generator G, ProjectionDiscriminator D, TalkingHeadModel.
- ``talking_heads.losses`` / ``talking_heads.perceptual``: the paper's losses and feature nets.
- ``talking_heads.data``: preprocessing of talking-face clips and K+1-frame episodes.
- ``talking_heads.training``: meta-learning and few-shot fine-tuning.
- ``talking_heads.avatar`` / ``talking_heads.pipeline``: adapted people and photos -> mp4.
"""

__version__ = "0.1.0"
