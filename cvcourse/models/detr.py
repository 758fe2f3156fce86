"""DETR, small: a CNN backbone, a transformer encoder-decoder, and set prediction.

DETR (Carion et al., 2020) treats detection as predicting a *set*. A backbone turns the
image into an ``h x w`` feature map; its cells, with sine positional encodings, are the
tokens of a transformer encoder. The decoder reads that memory with Q learned **object
queries**; each query's output becomes one (class, box) guess: a distribution over C
classes plus "no object", and a normalized cxcywh box. There are no anchors: a box is
regressed directly, relative to the image. Training pairs guesses with true objects one to
one (`cvcourse.ops.hungarian.HungarianMatcher`); unmatched guesses learn "no object", so
duplicates are penalised by the loss itself and inference needs no NMS.

Two options make it converge within the course's budget (the DETR chapter measures why):
``frozen_backbone_layers`` keeps a pretrained backbone's first layers fixed, and
``spatial_prior=True`` adds SMCA's Gaussian window to the decoder's cross-attention
(`SMCADecoder`, `SMCADecoderLayer`, `SpatialPrior`). With both off this is the original DETR.

Labels follow torchvision and the rest of the course: 1..C are the classes and logit 0 is
"no object" (DETR puts it last; only the index differs).

Interface as torchvision's detectors: ``model(images, targets)`` (targets with xyxy pixel
boxes and labels 1..C) returns the loss dict in training mode, ``model(images)`` a list of
``{"boxes" [Q, 4] xyxy pixels, "scores" [Q], "labels" [Q]}`` in eval mode, one guess per
query, none removed. ``model.forward_raw(images)`` gives DETR's raw outputs.

Taught in book/ss_detr.ipynb.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.boxes import box_convert, clip_boxes_to_image, generalized_box_iou
from ..ops.hungarian import HungarianMatcher
from .backbone import conv_backbone
from .checks import check_detection_inputs, check_images

__all__ = ["DETR", "DETRConfig", "SetCriterion", "TransformerDecoder", "SMCADecoder", "DecoderLayer",
           "SMCADecoderLayer", "SpatialPrior", "sine_position_encoding", "NO_OBJECT"]

NO_OBJECT = 0  # index of the "no object" logit (DETR: the last one)


def sine_position_encoding(d_model: int, height: int, width: int, temperature: float = 10000.0,
                           device=None) -> Tensor:
    """DETR's 2-D sine encoding: d/2 channels encode y, d/2 encode x, each at d/4 frequencies.

    Returns:
        Tensor[h * w, d_model], one row per feature cell in row-major order.
    """
    if d_model % 4:
        raise ValueError(f"d_model must be a multiple of 4 for the 2-D sine encoding, got {d_model}")
    n = d_model // 2
    y = (torch.arange(height, device=device, dtype=torch.float32) + 1) / height * 2 * math.pi
    x = (torch.arange(width, device=device, dtype=torch.float32) + 1) / width * 2 * math.pi
    dim_t = temperature ** (2 * (torch.arange(n, device=device) // 2) / n)        # (n,)
    py = y[:, None] / dim_t                                                       # (h, n)
    px = x[:, None] / dim_t                                                       # (w, n)
    py = torch.stack((py[:, 0::2].sin(), py[:, 1::2].cos()), 2).flatten(1)        # (h, n)
    px = torch.stack((px[:, 0::2].sin(), px[:, 1::2].cos()), 2).flatten(1)        # (w, n)
    pos = torch.cat((py[:, None].expand(-1, width, -1), px[None].expand(height, -1, -1)), 2)
    return pos.reshape(height * width, d_model)                                  # (h*w, d)


class EncoderLayer(nn.Module):
    """Post-norm self-attention + feed-forward; the positions are added to queries and keys."""

    def __init__(self, d: int, nhead: int, ff: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, nhead, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ff, d))
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:             # (B, T, d), (T, d)
        q = src + pos
        src = self.norm1(src + self.attn(q, q, src, need_weights=False)[0])
        return self.norm2(src + self.ff(src))


class SpatialPrior(nn.Module):
    """A Gaussian window on the cross-attention around a centre each query predicts (SMCA).

    DETR's cross-attention starts out spread over the whole image and must learn, from the
    matching loss alone, where each query should look; that is one reason it converges so
    slowly. Spatially modulated co-attention (Gao et al., 2021) lets each query predict a
    centre ``c`` and per-head widths ``s`` from its own embedding and adds
    ``log G = -|p - c|^2 / (2 s^2)`` (p: a token's position) to the attention logits, so
    each query reads the features around one place and its box is predicted relative to
    that centre. The centre is computed from the query in every layer, not fixed like an
    anchor: in the first layer it is a learned point per query, later it follows the image.
    """

    def __init__(self, d: int, nhead: int, init_width: float = 0.15, spread: float = 1.5):
        super().__init__()
        self.nhead = nhead
        self.centre = nn.Linear(d, 2)
        self.width = nn.Linear(d, 2 * nhead)
        nn.init.normal_(self.centre.weight, std=spread / math.sqrt(d))  # initial centres spread out
        nn.init.zeros_(self.centre.bias)
        nn.init.zeros_(self.width.weight)
        nn.init.constant_(self.width.bias, math.log(init_width))         # widths in image units

    def forward(self, query: Tensor, grid: Tensor):
        """The attention bias of each query's Gaussian window, and the window centres.

        Args:
            query (Tensor[B, Q, d]): the queries (content + object query).
            grid (Tensor[T, 2]): the tokens' centres, normalized (x, y).

        Returns:
            (bias, centre): additive attention bias ``[B * nhead, Q, T]`` and centres ``[B, Q, 2]``.
        """
        B, Q, _ = query.shape
        centre = self.centre(query).sigmoid()                                     # (B, Q, 2)
        width = self.width(query).clamp(math.log(0.02), math.log(2.0)).exp()      # (B, Q, 2H)
        offset = grid[None, None, None] - centre[:, :, None, None]                # (B, Q, 1, T, 2)
        bias = -0.5 * (offset / width.view(B, Q, self.nhead, 1, 2)).pow(2).sum(-1)  # (B, Q, H, T)
        return bias.transpose(1, 2).reshape(B * self.nhead, Q, -1), centre


class DecoderLayer(nn.Module):
    """Self-attention among queries, cross-attention to the encoder memory, feed-forward."""

    def __init__(self, d: int, nhead: int, ff: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, nhead, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, nhead, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ff, d))
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor,
                attn_bias: Tensor | None = None) -> Tensor:
        """Update the queries' content once.

        Args:
            tgt (Tensor[B, Q, d]): the queries' content.
            memory (Tensor[B, T, d]): the encoder's output tokens.
            pos (Tensor[T, d]): the tokens' positional encodings.
            query_pos (Tensor[B, Q, d]): the learned object queries.
            attn_bias (Tensor[B * nhead, Q, T] or None): added to the cross-attention logits.

        Returns:
            Tensor[B, Q, d]: the updated content.
        """
        q = tgt + query_pos                                              # (B, Q, d)
        tgt = self.norm1(tgt + self.self_attn(q, q, tgt, need_weights=False)[0])
        q = tgt + query_pos
        read = self.cross_attn(q, memory + pos, memory, attn_mask=attn_bias, need_weights=False)[0]
        tgt = self.norm2(tgt + read)                                     # (B, Q, d)
        return self.norm3(tgt + self.ff(tgt))


class SMCADecoderLayer(DecoderLayer):
    """A decoder layer whose cross-attention is windowed around a centre each query predicts (SMCA)."""

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor,
                prior: SpatialPrior, grid: Tensor) -> tuple[Tensor, Tensor]:
        """Update the queries' content, reading the memory through `prior`'s Gaussian window.

        Args:
            tgt (Tensor[B, Q, d]): the queries' content.
            memory (Tensor[B, T, d]): the encoder's output tokens.
            pos (Tensor[T, d]): the tokens' positional encodings.
            query_pos (Tensor[B, Q, d]): the learned object queries.
            prior (SpatialPrior): predicts each query's centre and window widths.
            grid (Tensor[T, 2]): the tokens' centres, normalized (x, y).

        Returns:
            (tgt, centre): the updated content ``[B, Q, d]`` and the centres ``[B, Q, 2]``.
        """
        q = tgt + query_pos                                              # (B, Q, d)
        tgt = self.norm1(tgt + self.self_attn(q, q, tgt, need_weights=False)[0])
        bias, centre = prior(tgt + query_pos, grid)                      # (B*H, Q, T), (B, Q, 2)
        q = tgt + query_pos
        read = self.cross_attn(q, memory + pos, memory, attn_mask=bias, need_weights=False)[0]
        tgt = self.norm2(tgt + read)                                     # (B, Q, d)
        return self.norm3(tgt + self.ff(tgt)), centre


class TransformerDecoder(nn.Module):
    """DETR's decoder: decoder layers, each output normalized (the heads read every layer's).

    Args:
        d (int): model width.
        nhead (int): attention heads.
        ff (int): feed-forward width.
        dropout (float): dropout in attention and feed-forward.
        num_layers (int): decoder layers.
    """

    def __init__(self, d: int, nhead: int, ff: int, dropout: float, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(self.make_layer(d, nhead, ff, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d)

    @staticmethod
    def make_layer(d: int, nhead: int, ff: int, dropout: float) -> DecoderLayer:
        """One decoder layer (`SMCADecoder` makes `SMCADecoderLayer` instead)."""
        return DecoderLayer(d, nhead, ff, dropout)

    def forward(self, memory: Tensor, pos: Tensor, query_pos: Tensor,
                feature_shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Decode the object queries against the memory.

        Args:
            memory (Tensor[B, T, d]): the encoder's output tokens.
            pos (Tensor[T, d]): the tokens' positional encodings.
            query_pos (Tensor[B, Q, d]): the learned object queries.
            feature_shape ((h, w)): the feature map's size (``T = h * w``).

        Returns:
            (hs, reference): every layer's normalized output ``[L, B, Q, d]`` and the box
            centres the heads predict relative to, in logit space ``[L, B, Q, 2]`` (zeros:
            the original DETR regresses boxes relative to the image).
        """
        tgt = torch.zeros_like(query_pos)                                # (B, Q, d)
        hs = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos, query_pos)
            hs.append(self.norm(tgt))
        hs = torch.stack(hs)                                             # (L, B, Q, d)
        return hs, hs.new_zeros(*hs.shape[:-1], 2)


class SMCADecoder(TransformerDecoder):
    """The decoder with SMCA's spatial prior: one `SpatialPrior` shared by all its layers.

    Each layer's queries predict a centre (in image coordinates) and read the memory around
    it; the box heads then predict each box's centre relative to that layer's centre.
    """

    def __init__(self, d: int, nhead: int, ff: int, dropout: float, num_layers: int):
        super().__init__(d, nhead, ff, dropout, num_layers)
        self.prior = SpatialPrior(d, nhead)

    @staticmethod
    def make_layer(d: int, nhead: int, ff: int, dropout: float) -> DecoderLayer:
        """One decoder layer with the spatial prior."""
        return SMCADecoderLayer(d, nhead, ff, dropout)

    def forward(self, memory: Tensor, pos: Tensor, query_pos: Tensor,
                feature_shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """As `TransformerDecoder.forward`; `reference` holds the logits of each layer's centres."""
        h, w = feature_shape
        ys, xs = torch.meshgrid((torch.arange(h, device=memory.device) + 0.5) / h,
                                (torch.arange(w, device=memory.device) + 0.5) / w, indexing="ij")
        grid = torch.stack((xs, ys), -1).reshape(h * w, 2).to(memory.dtype)  # (T, 2) token centres
        tgt = torch.zeros_like(query_pos)                                # (B, Q, d)
        hs, centres = [], []
        for layer in self.layers:
            tgt, centre = layer(tgt, memory, pos, query_pos, self.prior, grid)
            hs.append(self.norm(tgt))
            centres.append(centre)
        reference = torch.logit(torch.stack(centres), eps=1e-4)          # (L, B, Q, 2)
        return torch.stack(hs), reference


def mlp(d_in: int, d_hidden: int, d_out: int, layers: int) -> nn.Sequential:
    dims = [d_in] + [d_hidden] * (layers - 1)
    mods = []
    for a, b in zip(dims[:-1], dims[1:]):
        mods += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*mods, nn.Linear(dims[-1], d_out))


class SetCriterion(nn.Module):
    """DETR's loss: Hungarian-match, then cross-entropy on all queries and L1 + GIoU on the matched.

    Args:
        num_classes: C object classes; logits have C + 1 entries, index 0 = no object.
        matcher: a `HungarianMatcher`.
        eos_coef: weight of the "no object" class in the cross-entropy (most queries are
            unmatched; without it the model learns to say "no object" everywhere).
        weight_ce: loss weight of the cross-entropy.
        weight_bbox: loss weight of the L1 box loss.
        weight_giou: loss weight of the GIoU loss. The returned losses are already weighted,
            so ``sum(losses.values())`` is the total loss.
    """

    def __init__(self, num_classes: int, matcher: HungarianMatcher, eos_coef: float = 0.1,
                 weight_ce: float = 1.0, weight_bbox: float = 5.0, weight_giou: float = 2.0):
        super().__init__()
        if not 0 < eos_coef <= 1:
            raise ValueError(f"eos_coef must be in (0, 1], got {eos_coef}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weights = {"loss_ce": weight_ce, "loss_bbox": weight_bbox, "loss_giou": weight_giou}
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[NO_OBJECT] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    def _losses(self, outputs: dict[str, Tensor], targets, num_boxes: float) -> dict[str, Tensor]:
        indices = self.matcher(outputs, targets)
        logits = outputs["pred_logits"]                                 # (B, Q, C+1)
        boxes = outputs["pred_boxes"]                                  # (B, Q, 4)
        batch_idx = torch.cat([torch.full_like(p, b) for b, (p, _) in enumerate(indices)])
        query_idx = torch.cat([p for p, _ in indices])                   # (M,) matched queries
        classes = torch.full(logits.shape[:2], NO_OBJECT, dtype=torch.int64, device=logits.device)
        classes[batch_idx, query_idx] = torch.cat(
            [t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(logits.device)
        loss_ce = F.cross_entropy(logits.transpose(1, 2), classes, self.empty_weight.to(logits.dtype))
        src = boxes[batch_idx, query_idx]                                # (M, 4) cxcywh
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(src)
        loss_bbox = F.l1_loss(src, tgt, reduction="sum") / num_boxes
        giou = torch.diag(generalized_box_iou(box_convert(src, "cxcywh", "xyxy"),
                                              box_convert(tgt, "cxcywh", "xyxy")))
        loss_giou = (1 - giou).sum() / num_boxes
        raw = {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}
        return {k: self.weights[k] * v for k, v in raw.items()}

    def forward(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The weighted losses of the final and every auxiliary decoder layer.

        Args:
            outputs (dict): as `DETR.forward_raw` returns them.
            targets (list[dict[str, Tensor]]): per image ``"labels"`` ``[N]`` in 1..C and
                ``"boxes"`` ``[N, 4]`` normalized cxcywh.

        Returns:
            dict[str, Tensor]: ``"loss_ce"``, ``"loss_bbox"``, ``"loss_giou"`` and, for each
            auxiliary decoder layer i, the same names with suffix ``_i``.
        """
        num_boxes = max(sum(len(t["labels"]) for t in targets), 1)     # normalise per true object
        losses = self._losses(outputs, targets, num_boxes)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update({f"{k}_{i}": v for k, v in self._losses(aux, targets, num_boxes).items()})
        return losses


@dataclass
class DETRConfig:
    """DETR's settings, grouped (as nanoGPT's ``GPTConfig``).

    Args:
        num_classes: C object classes (3 shapes).
        num_queries: Q guesses per image.
        width: of `conv_backbone` (feature channels ``4 * width``).
        stride: of `conv_backbone`, 8 or 16.
        d_model: the transformer's width.
        nhead: attention heads.
        num_encoder_layers: encoder layers.
        num_decoder_layers: decoder layers.
        dim_feedforward: feed-forward width.
        dropout: dropout in the transformer.
        aux_loss: also compute the loss after every decoder layer (shared heads).
        cost_class: matching-cost weight of the class probability.
        cost_bbox: matching-cost weight of the L1 box distance.
        cost_giou: matching-cost weight of the GIoU.
        eos_coef: weight of the "no object" class in the cross-entropy (`SetCriterion`).
        weight_ce: loss weight of the cross-entropy.
        weight_bbox: loss weight of the L1 box loss.
        weight_giou: loss weight of the GIoU loss.
        frozen_backbone_layers: the first k modules of the backbone are frozen (no gradient,
            BatchNorm statistics fixed), as DETR freezes the first stages of its pretrained
            ResNet; meant for a backbone loaded from a pretrained classifier.
        spatial_prior: decode with `SMCADecoder` (SMCA's Gaussian cross-attention around a
            centre each query predicts, boxes relative to it): much faster convergence.
            False is the original DETR.
    """

    num_classes: int = 3
    num_queries: int = 10
    width: int = 16
    stride: int = 16
    d_model: int = 64
    nhead: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.0
    aux_loss: bool = True
    cost_class: float = 1.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    eos_coef: float = 0.1
    weight_ce: float = 1.0
    weight_bbox: float = 5.0
    weight_giou: float = 2.0
    frozen_backbone_layers: int = 0
    spatial_prior: bool = False


def upgrade_state_dict_keys(key: str) -> str:
    """A DETR state-dict key as this module names it.

    Checkpoints saved before the decoder became its own module said ``decoder.0.``,
    ``decoder_norm.`` and ``spatial_prior.``; `DETR` renames them when it loads.

    Args:
        key (str): a key of a DETR state dict, earlier or current.

    Returns:
        str: the current name.
    """
    for old, new in (("decoder_norm.", "decoder.norm."), ("spatial_prior.", "decoder.prior.")):
        if key.startswith(old):
            return new + key[len(old):]
    parts = key.split(".")
    if len(parts) > 1 and parts[0] == "decoder" and parts[1].isdigit():
        return ".".join(["decoder", "layers", *parts[1:]])
    return key


class DETR(nn.Module):
    """DETR with a small conv backbone (stride 16), a post-norm transformer and learned queries.

    Args:
        config: a `DETRConfig` (default: ``DETRConfig()``).
        **overrides: `DETRConfig` fields that replace the config's, so
            ``DETR(num_queries=20)`` and ``DETR(DETRConfig(num_queries=20))`` are the same model.
    """

    def __init__(self, config: DETRConfig | None = None, **overrides):
        super().__init__()
        known = {f.name for f in fields(DETRConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"DETR got unknown settings {unknown}; DETRConfig has {sorted(known)}")
        c = replace(config or DETRConfig(), **overrides)
        self.config = c
        self.num_classes = c.num_classes
        self.num_queries = c.num_queries
        self.aux_loss = c.aux_loss
        self.d_model = c.d_model
        self.backbone = conv_backbone(c.width, c.stride)
        if not 0 <= c.frozen_backbone_layers <= len(self.backbone):
            raise ValueError(f"frozen_backbone_layers must be in 0..{len(self.backbone)}, "
                             f"got {c.frozen_backbone_layers}")
        self.frozen_backbone_layers = c.frozen_backbone_layers
        for p in self.backbone[:c.frozen_backbone_layers].parameters():
            p.requires_grad_(False)
        self.input_proj = nn.Conv2d(4 * c.width, c.d_model, 1)
        self.encoder = nn.ModuleList(EncoderLayer(c.d_model, c.nhead, c.dim_feedforward, c.dropout)
                                     for _ in range(c.num_encoder_layers))
        decoder = SMCADecoder if c.spatial_prior else TransformerDecoder
        self.decoder = decoder(c.d_model, c.nhead, c.dim_feedforward, c.dropout, c.num_decoder_layers)
        self.query_embed = nn.Embedding(c.num_queries, c.d_model)       # the learned object queries
        self.class_embed = nn.Linear(c.d_model, c.num_classes + 1)
        self.bbox_embed = mlp(c.d_model, c.d_model, 4, 3)
        matcher = HungarianMatcher(c.cost_class, c.cost_bbox, c.cost_giou)
        self.criterion = SetCriterion(c.num_classes, matcher, c.eos_coef, c.weight_ce,
                                      c.weight_bbox, c.weight_giou)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            new = prefix + upgrade_state_dict_keys(key[len(prefix):])
            if new != key:
                state_dict[new] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def train(self, mode: bool = True) -> DETR:
        """Set the mode; the frozen backbone layers stay in eval mode (fixed BatchNorm statistics)."""
        super().train(mode)
        self.backbone[:self.frozen_backbone_layers].eval()           # frozen BatchNorm statistics
        return self

    @property
    def matcher(self) -> HungarianMatcher:
        """The `HungarianMatcher` the loss pairs queries with objects by."""
        return self.criterion.matcher

    def forward_raw(self, images: Tensor) -> dict[str, object]:
        """DETR's raw outputs.

        Args:
            images (Tensor[B, 3, H, W]): images in [0, 1].

        Returns:
            dict: ``"pred_logits"`` ``[B, Q, C+1]``, ``"pred_boxes"`` ``[B, Q, 4]`` normalized
            cxcywh, ``"aux_outputs"``: one such dict per earlier decoder layer.
        """
        check_images(images)
        features = self.input_proj(self.backbone(images))               # (B, d, h, w)
        B, d, h, w = features.shape
        memory = features.flatten(2).transpose(1, 2)                    # (B, h*w, d) tokens
        pos = sine_position_encoding(d, h, w, device=memory.device).to(memory.dtype)  # (h*w, d)
        for layer in self.encoder:
            memory = layer(memory, pos)
        query_pos = self.query_embed.weight.unsqueeze(0).expand(B, -1, -1)  # (B, Q, d)
        hs, reference = self.decoder(memory, pos, query_pos, (h, w))    # (L, B, Q, d), (L, B, Q, 2)
        logits = self.class_embed(hs)                                   # (L, B, Q, C+1)
        deltas = self.bbox_embed(hs)                                    # (L, B, Q, 4)
        boxes = torch.cat((deltas[..., :2] + reference, deltas[..., 2:]), -1).sigmoid()
        aux = [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])]
        return {"pred_logits": logits[-1], "pred_boxes": boxes[-1],
                "aux_outputs": aux if self.aux_loss else []}

    def normalized_targets(self, targets, image_size) -> list[dict[str, Tensor]]:
        """Torchvision targets (xyxy pixels) -> DETR's (normalized cxcywh), labels checked 1..C."""
        H, W = image_size
        scale = torch.tensor([W, H, W, H], dtype=torch.float32)
        out = []
        for i, t in enumerate(targets):
            labels = t["labels"]
            if len(labels) and (labels.min() < 1 or labels.max() > self.num_classes):
                raise ValueError(f"targets[{i}]['labels'] must be in 1..{self.num_classes} "
                                 f"(0 is 'no object'), got {labels.tolist()}")
            boxes = box_convert(t["boxes"].float() / scale.to(t["boxes"].device), "xyxy", "cxcywh")
            out.append({"labels": labels.long(), "boxes": boxes})
        return out

    @torch.no_grad()
    def postprocess(self, outputs: dict[str, Tensor], image_size) -> list[dict[str, Tensor]]:
        """One detection per query: score = max class probability (no-object excluded)."""
        H, W = image_size
        prob = outputs["pred_logits"].float().softmax(-1)                # (B, Q, C+1)
        scores, labels = prob[..., 1:].max(-1)                           # (B, Q)
        scale = torch.tensor([W, H, W, H], dtype=torch.float32, device=prob.device)
        boxes = box_convert(outputs["pred_boxes"].float(), "cxcywh", "xyxy") * scale  # (B, Q, 4)
        return [{"boxes": clip_boxes_to_image(b, (H, W)), "scores": s, "labels": lab + 1}
                for b, s, lab in zip(boxes, scores, labels)]

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        """The losses (training) or one detection per query (eval).

        Args:
            images (Tensor[B, 3, H, W]): images in [0, 1].
            targets (list[dict[str, Tensor]] or None): training only, per image ``"boxes"``
                xyxy pixels and ``"labels"`` in 1..C.

        Returns:
            training: {"loss_ce", "loss_bbox", "loss_giou"} (weighted) plus "..._i" for each
            auxiliary decoder layer; eval: per image {"boxes" [Q, 4], "scores", "labels"}.
        """
        check_detection_inputs(images, targets, self.training, self.num_classes)
        if len(images) == 0:
            return []                                                   # eval: no detections
        outputs = self.forward_raw(images)
        if self.training:
            return self.criterion(outputs, self.normalized_targets(targets, images.shape[-2:]))
        return self.postprocess(outputs, images.shape[-2:])
