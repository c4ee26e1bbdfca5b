"""Exporting a (fine-tuned) model to ONNX: an encoder graph and a prompt-encoder + decoder graph
with a dynamic number of points (boxes enter as two corner points labelled 2 and 3, as in
segment-anything's ONNX export), mask input and a has-mask flag. The decoder graph uses the
few-token form of the cross-attentions (``few_token_attention``): the same masks, fewer FLOPs."""

import copy
import hashlib
from pathlib import Path
from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

from SAMIHSLib.models.adapters import PRAdapter
from SAMIHSLib.models.checkpoint import weights_identity
from SAMIHSLib.models.sam import SegmentAnythingModel
from SAMIHSLib.models.tiny_vit import TinyViT
from SAMIHSLib.engines.few_token_attention import with_few_token_attention
from SAMIHSLib.engines.onnx_graphs import EXPORT_VERSION

OPSET = 17


def fold_adapters(model: SegmentAnythingModel) -> SegmentAnythingModel:
    """A copy whose TinyViT PR adapters are folded into the linear layers they feed (exact: each
    adapter is affine and sits right before ``attn.qkv`` / ``mlp.fc1``). ViT-B keeps its
    adapters as graph operations: window padding sits between its attention adapter and qkv."""
    folded = copy.deepcopy(model).eval()
    if isinstance(folded.image_encoder, TinyViT):
        for layer in folded.image_encoder.layers[1:]:
            for block in layer.blocks:
                for adapter_name, linear in (("attn_adapter", block.attn.qkv), ("mlp_adapter", block.mlp.fc1)):
                    adapter = getattr(block, adapter_name)
                    if isinstance(adapter, PRAdapter):
                        adapter.fold_into_linear(linear)
                        setattr(block, adapter_name, nn.Identity())
    return folded


def model_fingerprint(model: SegmentAnythingModel) -> str:
    """Identity of a model's weights + config + exporter: the key of cached graphs."""
    digest = hashlib.sha256(weights_identity(model).encode())
    digest.update(f"export{EXPORT_VERSION}|torch{torch.__version__}".encode())
    return digest.hexdigest()[:24]


class EncoderGraph(nn.Module):
    def __init__(self, model: SegmentAnythingModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image01: torch.Tensor) -> torch.Tensor:
        return self.model.encode(image01)


class DecoderGraph(nn.Module):
    """Prompt encoder + mask decoder written without data-dependent Python branches; it returns
    the single-mask output only, read as a 1x1 convolution (``mask_as_convolution``, the default)
    or as ``predict_masks`` reads every mask (the reference the benchmark and test compare with)."""

    def __init__(self, model: SegmentAnythingModel, mask_as_convolution: bool = True) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.mask_as_convolution = mask_as_convolution  # False: predict_masks' product (the reference)

    def forward(self, embedding: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        pe = self.prompt_encoder
        sparse = pe.pe_layer.forward_with_coords(point_coords + 0.5, pe.input_image_size)
        labels = point_labels.unsqueeze(-1)
        sparse = sparse * (labels != -1) + pe.not_a_point_embed.weight * (labels == -1)
        for index in range(4):
            sparse = sparse + pe.point_embeddings[index].weight * (labels == index)
        dense = has_mask_input * pe.mask_downscaling(mask_input) + \
            (1 - has_mask_input) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        decoder = self.mask_decoder
        if not self.mask_as_convolution:
            masks, iou = decoder.predict_masks(embedding, pe.get_dense_pe(), sparse, dense)
            return masks[:, :1], iou[:, :1]
        iou_token, mask_tokens, upscaled = decoder.decode_tokens(embedding, pe.get_dense_pe(), sparse, dense)
        # Only the single-mask output is returned: its hypernetwork weights become a 1x1 convolution
        # over the upscaled embedding, which reads it in the runtime's own layout (the matrix product
        # of predict_masks first reorders the 1x32x256x256 tensor: about 3 ms of a 20 ms decode).
        weights = decoder.output_hypernetworks_mlps[0](mask_tokens[:, 0, :])
        mask = F.conv2d(upscaled, weights.reshape(1, upscaled.shape[1], 1, 1))
        return mask, decoder.iou_prediction_head(iou_token)[:, :1]


def export_onnx(model: SegmentAnythingModel, directory: Path, mask_as_convolution: bool = True) -> Tuple[Path, Path]:
    """Write ``encoder.onnx`` and ``decoder.onnx`` for ``model`` into ``directory`` (``mask_as_convolution``:
    see :class:`DecoderGraph`)."""
    directory.mkdir(parents=True, exist_ok=True)
    folded = fold_adapters(model).cpu()
    size = folded.config.image_size
    embedding_side = folded.prompt_encoder.image_embedding_size[0]
    lowres = embedding_side * 4
    encoder_path, decoder_path = directory / "encoder.onnx", directory / "decoder.onnx"
    with torch.no_grad():
        torch.onnx.export(EncoderGraph(folded), (torch.rand(1, 3, size, size),), str(encoder_path),
                          input_names=["image"], output_names=["embedding"], opset_version=OPSET, dynamo=False)
        example = (torch.randn(1, 256, embedding_side, embedding_side), torch.rand(1, 3, 2) * size,
                   torch.tensor([[1.0, 2.0, 3.0]]), torch.zeros(1, 1, lowres, lowres), torch.zeros(1))
        torch.onnx.export(DecoderGraph(with_few_token_attention(folded), mask_as_convolution), example, str(decoder_path),
                          input_names=["embedding", "point_coords", "point_labels", "mask_input", "has_mask_input"],
                          output_names=["lowres_logits", "iou"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"point_coords": {1: "points"}, "point_labels": {1: "points"}})
    return encoder_path, decoder_path
