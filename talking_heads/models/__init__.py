"""Networks of Zakharov et al. 2019: Embedder E, Generator G, ProjectionDiscriminator D."""

from talking_heads.models.discriminator import DiscriminatorOutput, ProjectionDiscriminator
from talking_heads.models.embedder import Embedder
from talking_heads.models.finetune import AdaptedGenerator, FinetuneDiscriminator
from talking_heads.models.generator import Generator
from talking_heads.models.talking_head import TalkingHeadModel
from talking_heads.models.warp import Sources, WarpGenerator, build_generator

__all__ = ["AdaptedGenerator", "DiscriminatorOutput", "Embedder", "FinetuneDiscriminator",
           "Generator", "ProjectionDiscriminator", "Sources", "TalkingHeadModel", "WarpGenerator",
           "build_generator"]
