"""A Segment Anything model split at the cache boundary: ``encode`` (expensive, once per slice)
and ``decode`` (cheap, once per prompt)."""

from typing import Optional, Tuple

import torch
from torch import nn

from SAMIHSLib.models.config import ModelConfig
from SAMIHSLib.models.mask_decoder import MaskDecoder
from SAMIHSLib.models.prompt_encoder import PromptEncoder

# SAM's ImageNet statistics on a 0-255 scale; LiteMedSAM takes plain [0, 1] input instead.
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


class SegmentAnythingModel(nn.Module):
    """Image encoder + prompt encoder + mask decoder, with the config that produced them."""

    def __init__(self, image_encoder: nn.Module, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder,
                 config: ModelConfig) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.config = config
        self.register_buffer("pixel_mean", torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def lowres_mask_size(self) -> int:
        """Side of the decoder's low-resolution mask grid (4x the embedding side)."""
        return self.prompt_encoder.image_embedding_size[0] * 4

    def encode(self, image01: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) intensities in [0, 1] -> (B, 256, S/4 or S/16, ...) image embedding."""
        return self.image_encoder(self._encoder_input(image01))

    def encode_front(self, image01: torch.Tensor, stages: int) -> torch.Tensor:
        """The image encoder's frozen front (patch embedding + the first ``stages`` stages): staged
        training caches it, and ``encode_back`` finishes the embedding from it."""
        return self._staged_encoder().forward_front(self._encoder_input(image01), stages)

    def encode_back(self, features: torch.Tensor, stages: int) -> torch.Tensor:
        """The rest of the image encoder after ``encode_front(..., stages)``."""
        return self._staged_encoder().forward_back(features.to(self.device), stages)

    def _encoder_input(self, image01: torch.Tensor) -> torch.Tensor:
        x = image01.to(self.device)
        if self.config.imagenet_normalization:
            x = (x * 255.0 - self.pixel_mean) / self.pixel_std
        return x

    def _staged_encoder(self) -> nn.Module:
        if not hasattr(self.image_encoder, "forward_front"):
            raise ValueError(f"The {self.config.backbone} image encoder cannot be split into a cached front and "
                             "a trained back (TinyViT backbones can).")
        return self.image_encoder

    def decode(self, embedding: torch.Tensor, points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
               boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
               multimask_output: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prompts in model-input coordinates -> (low-res mask logits, predicted IoU).

        ``points``: (coords (B, N, 2), labels (B, N) with 1 positive / 0 negative / -1 padding);
        ``boxes``: (B, 4) xyxy; ``mask_input``: (B, 1, L, L) logits from an earlier prediction.
        """
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        return self.mask_decoder(
            image_embeddings=embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
