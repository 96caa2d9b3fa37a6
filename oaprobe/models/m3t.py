"""M3T: 3D conv stem, 2D ResNet-18 on every slice of three planes, transformer over slice tokens.

The volume passes two 5^3 convolutions (``16 * width`` channels). Its feature map is then cut
into all coronal (along W), sagittal (along D) and axial (along H) slices; one shared 2D
ResNet-18 (written here, width-scaled) turns each slice into a vector, projected to the token
width ``128 * width``. The token sequence is ``CLS, coronal..., SEP, sagittal..., SEP,
axial..., SEP`` plus a plane embedding and a learned position embedding (its length follows the
input shape), through a 4-layer pre-norm transformer encoder. The CLS output is the embedding.

Speed (issue 32): for a cubic input the three planes' slices pass the slice encoder as one
batch in training (the reference code's grouping, so batch norm pools the planes); the
transformer keeps torch's ``nn.TransformerEncoder`` modules (and state-dict keys) but its
training forward is written out in :func:`encoder_layer` with a cheaper dropout mask
(:func:`dropout`). Eval mode runs the planes one at a time and torch's own transformer forward.
Each plane's slices are gathered with one copy into channels-last memory; the slice stem pools
before its ReLU; the encoder's 2x2 and 1x1 maps run as matrix products
(:func:`oaprobe.models.layers.dense_conv`).

Example:
    >>> import torch
    >>> net = M3T(input_shape=(16, 16, 16), width=0.25)
    >>> net(torch.zeros(2, 1, 16, 16, 16)).shape
    torch.Size([2, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from oaprobe.models.layers import PolyphaseConv3d, StridedConv2d, conv_norm_act, residual_stage, scale_channels


class ResNet2D18(nn.Module):
    """2D ResNet-18 feature extractor ``(N, C, H, W) -> (N, 512 * width)``: 7x7 stem, four residual stages."""

    def __init__(self, in_channels: int, width: float = 1.0) -> None:
        super().__init__()
        c = [scale_channels(n, width) for n in (64, 128, 256, 512)]
        conv, norm, act = conv_norm_act(2, in_channels, c[0], 7, stride=2)
        # max-pooling before the ReLU: the same outputs and gradients (both are monotone, ties break
        # alike), with the ReLU on a quarter of the map
        self.stem = nn.Sequential(conv, norm, nn.MaxPool2d(3, stride=2, padding=1), act)
        self.stem[0].__class__ = StridedConv2d  # its input gradient 1.7x faster over the input's phases
        ins, strides = [c[0], *c[:-1]], (1, 2, 2, 2)
        self.stages = nn.Sequential(*(residual_stage(2, i, o, stride=s) for i, o, s in zip(ins, c, strides)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim: int = c[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous (MONAI GradCAM views it as (B, C, -1))."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


#: per plane, the order that turns a (B, C, D, H, W) map into its slices (B, n, a, b, C): coronal
#: (along W, slices D x H), sagittal (along D, H x W), axial (along H, D x W)
_PLANES = ((0, 4, 2, 3, 1), (0, 2, 3, 4, 1), (0, 3, 2, 4, 1))


def _heads_for(dim: int, wanted: int = 8) -> int:
    """Largest head count <= ``wanted`` that divides ``dim``."""
    return max(h for h in range(1, wanted + 1) if dim % h == 0)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout (``F.dropout``'s distribution) from one uniform draw per element.

    ``F.dropout`` draws its mask with ``bernoulli_``, about 6x slower on this CPU than
    ``rand_like``; the masks differ, the distribution (keep with probability ``1 - p``, scale
    by ``1 / (1 - p)``) is the same.
    """
    if not training or p == 0.0:
        return x
    return x * torch.rand_like(x).ge_(p).div_(1.0 - p)


def encoder_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, training: bool) -> torch.Tensor:
    """``layer``'s pre-norm forward (``norm_first=True``, batch first) with its own parameters, written out.

    The same maths as torch's ``TransformerEncoderLayer`` (attention scaled by ``1/sqrt(head
    width)``, dropout on the attention weights, after attention, inside and after the
    feed-forward), without its per-call mask checks, its ``_safe_softmax`` (an ``all`` and a
    ``where`` per call) or ``bernoulli_`` masks: the 4-layer transformer over 76 tokens of width
    32 was 30% of an M3T step; this one makes the training step about 1.07x faster. Used in
    training only (in eval mode torch's fused inference path is faster). Tested against torch's
    forward in ``tests/models/test_m3t.py``.
    """
    b, n, d = x.shape
    attn = layer.self_attn
    heads = attn.num_heads
    qkv = F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, n, d/heads)
    weights = torch.softmax((q * (d // heads) ** -0.5) @ k.transpose(-1, -2), dim=-1)
    mixed = (dropout(weights, attn.dropout, training) @ v).transpose(1, 2).reshape(b, n, d)
    x = x + dropout(attn.out_proj(mixed), layer.dropout1.p, training)
    hidden = dropout(layer.activation(layer.linear1(layer.norm2(x))), layer.dropout.p, training)
    return x + dropout(layer.linear2(hidden), layer.dropout2.p, training)


class M3T(nn.Module):
    """M3T encoder ``(B, 1, D, H, W) -> (B, 128 * width)`` for one fixed ``input_shape``.

    Args:
        input_shape: (D, H, W) of the volumes; sets the number of slice tokens.
        width: channel multiplier for the stem (16), the 2D ResNet-18 (64..512) and the token
            width (128).
        layers: transformer depth.
        heads: wanted attention heads; reduced to the largest count dividing the token width.
        dropout: transformer dropout.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        width: float = 1.0,
        layers: int = 4,
        heads: int = 8,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        d_size, h_size, w_size = self.input_shape
        stem_ch = scale_channels(16, width)
        self.stem = nn.Sequential(*conv_norm_act(3, 1, stem_ch, 5), *conv_norm_act(3, stem_ch, stem_ch, 5))
        self.stem[3].__class__ = PolyphaseConv3d  # its few channels: 1.7x faster over 2x2x2 phases
        # channels-last weights: about 3x (3D) and 1.5x (2D) faster conv backward on CPU here.
        self.stem.to(memory_format=torch.channels_last_3d)
        self.stem[0].to(memory_format=torch.contiguous_format)  # one input channel: 1.03x a step this way
        self.slice_encoder = ResNet2D18(stem_ch, width).to(memory_format=torch.channels_last)
        dim = scale_channels(128, width, minimum=8)
        self.project = nn.Linear(self.slice_encoder.out_dim, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.sep_token = nn.Parameter(torch.zeros(1, 1, dim))
        # token groups: CLS (0), coronal (1), sagittal (2), axial (3); each plane ends with a SEP.
        self.plane_counts = (w_size, d_size, h_size)
        plane_ids = [0] + [p + 1 for p, n in enumerate(self.plane_counts) for _ in range(n + 1)]
        self.register_buffer("plane_ids", torch.tensor(plane_ids), persistent=False)
        self.plane_embed = nn.Embedding(4, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, len(plane_ids), dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.sep_token, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, _heads_for(dim, heads), dim_feedforward=4 * dim, dropout=dropout, batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out_dim: int = dim
        self.gradcam_layer = "stem"

    def _slice_tokens(self, feat: torch.Tensor) -> list[torch.Tensor]:
        """Tokens (B, n, dim) of all coronal, sagittal and axial slices of ``feat`` (B, C, D, H, W).

        Each plane's slices are copied once, into channels-last memory (what the slice encoder's
        convolutions run fastest on). In training, when the three planes' slices have one shape
        (a cubic input), they pass the shared slice encoder as one batch, as the reference M3T
        concatenates them before its 2D ResNet-18 (its batch-norm statistics then pool the three
        planes); about 1.05x faster a step here. In eval mode (running statistics: the same
        outputs) one plane at a time is faster: a 3x larger batch ran 1.15x slower.
        """
        b = feat.shape[0]
        planes = [feat.permute(order) for order in _PLANES]  # views (B, n, a, b, C)
        if self.training and len({p.shape for p in planes}) == 1:
            vectors = self._encode(torch.stack(planes).flatten(0, 2)).chunk(len(planes))
            return [v.reshape(b, p.shape[1], -1) for v, p in zip(vectors, planes)]
        return [self._encode(p.flatten(0, 1)).reshape(b, p.shape[1], -1) for p in planes]

    def _encode(self, slices: torch.Tensor) -> torch.Tensor:
        """Slices (N, a, b, C) -> projected vectors (N, dim)."""
        return self.project(self.slice_encoder(slices.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(f"M3T was built for input_shape {self.input_shape}, got volumes {tuple(x.shape[2:])}")
        feat = _ContiguousGrad.apply(self.stem(x.contiguous(memory_format=torch.channels_last_3d)))
        b = feat.shape[0]
        sep = self.sep_token.expand(b, 1, -1)
        parts = [self.cls_token.expand(b, 1, -1)]
        for plane in self._slice_tokens(feat):
            parts += [plane, sep]
        tokens = torch.cat(parts, dim=1) + self.pos_embed + self.plane_embed(self.plane_ids)
        if not self.training:  # torch's own forward: its fused inference path where grad is off
            return self.norm(self.transformer(tokens)[:, 0])
        for layer in self.transformer.layers:
            tokens = encoder_layer(layer, tokens, training=True)
        return self.norm(tokens[:, 0])
