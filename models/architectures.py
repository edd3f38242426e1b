"""Compact versions of the four Transformers the paper converts, sized for 8x8 digits on a CPU.

Each attention module computes `softmax(logits)` through `attention_softmax`, which
can put a Sigmoid in front (the paper's "insert Sigmoid, then fine-tune" path for
Next-ViT and UniFormer). Exported with the TorchScript exporter, every softmax is
one ONNX Softmax node, which `sit-onnx rewrite` converts.
"""

from __future__ import annotations

import torch
from torch import nn


def attention_softmax(logits: torch.Tensor, sigmoid: bool, dim: int = -1) -> torch.Tensor:
    return torch.softmax(torch.sigmoid(logits) if sigmoid else logits, dim=dim)


class MHSA(nn.Module):
    """Multi-head self-attention over tokens (ViT, UniFormer's global MHRA)."""

    def __init__(self, dim: int, heads: int, sigmoid: bool = False):
        super().__init__()
        self.heads, self.sigmoid = heads, sigmoid
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = attention_softmax(q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5, self.sigmoid)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class XCA(nn.Module):
    """EdgeNeXt's transposed (cross-covariance) attention: softmax over the channel dimension."""

    def __init__(self, dim: int, heads: int, sigmoid: bool = False):
        super().__init__()
        self.heads, self.sigmoid = heads, sigmoid
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 4, 1)  # b h c/h n
        q = nn.functional.normalize(q, dim=-1)
        k = nn.functional.normalize(k, dim=-1)
        attn = attention_softmax(q @ k.transpose(-2, -1) * self.temperature, self.sigmoid)  # b h c/h c/h
        return self.proj((attn @ v).permute(0, 3, 1, 2).reshape(b, n, c))


class EfficientMHSA(nn.Module):
    """Next-ViT's E-MHSA: keys and values come from spatially reduced (average-pooled) tokens."""

    def __init__(self, dim: int, heads: int, side: int, reduction: int = 2, sigmoid: bool = False):
        super().__init__()
        self.heads, self.sigmoid, self.side = heads, sigmoid, side
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.pool = nn.AvgPool2d(reduction, reduction)
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, x):
        b, n, c = x.shape
        h = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, h).transpose(1, 2)
        reduced = self.pool(x.transpose(1, 2).reshape(b, c, self.side, self.side)).flatten(2)  # b c n'
        reduced = self.norm(reduced).transpose(1, 2)
        k, v = self.kv(reduced).reshape(b, -1, 2, self.heads, h).permute(2, 0, 3, 1, 4)
        attn = attention_softmax(q @ k.transpose(-2, -1) * h**-0.5, self.sigmoid)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm Transformer block around any of the attention modules above."""

    def __init__(self, dim: int, attention: nn.Module, mlp_ratio: int = 2):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), attention
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ConvStage(nn.Module):
    """A ConvNeXt-like stage: depthwise conv, then a pointwise MLP (EdgeNeXt, Next-ViT, UniFormer's local MHRA)."""

    def __init__(self, dim: int, depth: int = 1, kernel: int = 3):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim),
                nn.BatchNorm2d(dim),
                nn.Conv2d(dim, 2 * dim, 1),
                nn.GELU(),
                nn.Conv2d(2 * dim, dim, 1),
            )
            for _ in range(depth)
        )

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return x


class ViT(nn.Module):
    """Plain ViT: 2x2 patches of the 8x8 image, a class token, MHSA blocks."""

    def __init__(self, dim=32, depth=2, heads=4, classes=10, sigmoid=False):
        super().__init__()
        self.patch = nn.Conv2d(1, dim, 2, 2)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, MHSA(dim, heads, sigmoid)) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.blocks(tokens))[:, 0])


class HybridNet(nn.Module):
    """Conv stem and conv stage on the 8x8 map, then Transformer blocks over its 16 (4x4) tokens."""

    def __init__(self, attention_factory, depth, dim=32, classes=10, conv_depth=1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, dim, 3, padding=1), nn.BatchNorm2d(dim), nn.GELU())
        self.conv = ConvStage(dim, conv_depth)
        self.down = nn.Conv2d(dim, dim, 2, 2)
        self.pos = nn.Parameter(torch.randn(1, 16, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, attention_factory(dim)) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.down(self.conv(self.stem(x)))
        tokens = x.flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))


def edgenext(sigmoid=False):
    """EdgeNeXt-style: conv stages, then 3 blocks of transposed (channel) attention."""
    return HybridNet(lambda dim: XCA(dim, 4, sigmoid), depth=3)


def nextvit(sigmoid=False):
    """Next-ViT-style: conv stages, then 4 blocks of E-MHSA with keys/values pooled 2x."""
    return HybridNet(lambda dim: EfficientMHSA(dim, 4, side=4, sigmoid=sigmoid), depth=4)


def uniformer(sigmoid=False):
    """UniFormer-style: local MHRA (conv) stages, then 10 global MHRA Transformer blocks (as UniFormer-XXS)."""
    return HybridNet(lambda dim: MHSA(dim, 4, sigmoid), depth=10, conv_depth=2)


def vit(sigmoid=False):
    return ViT(sigmoid=sigmoid)


ARCHITECTURES = {"vit": vit, "edgenext": edgenext, "nextvit": nextvit, "uniformer": uniformer}
