"""Architecture diagrams drawn from the models themselves.

Each diagram is derived from a model object: `trace_shapes` hooks the named submodules, runs
one forward pass and records the shape of what each one returns (or receives); the diagram
draws one box per traced block and writes the recorded shape on every arrow leaving it. A
change to a model (a width, a stride) changes its diagram, so the two cannot drift.

Every function returns a `Diagram`, a ``matplotlib.figure.Figure`` (made without pyplot, as
in `cvcourse.viz`) whose alt text is ``fig.cvcourse_alt`` (also returned by `alt_text`) and
its ``repr``: a notebook stores that text as the PNG's ``text/plain``, from which the book
writes it into the page's ``<img alt>``.
Shape labels carry ``gid="shape"`` so tests can read them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import Tensor, nn

FONT = 9          # points; at 100 dpi this is the book's small text
BOX_W, BOX_H = 1.25, 0.62   # inches
COLORS = {"input": "#eeeeee", "backbone": "#dbe8f7", "neck": "#e4f3df", "head": "#fbe3cf",
          "transformer": "#ece0f5", "op": "#fff6c8"}



class Diagram(Figure):
    """A figure that carries its alt text, ``cvcourse_alt``, and shows it as its plain text.

    In a notebook the inline backend still draws it as a PNG; the ``text/plain`` stored next
    to the PNG (what ``repr`` gives) is the alt text, and the book's Sphinx extension
    (``book/_ext/cvcourse_sphinx.py``) writes that text into the page's ``<img alt>``.
    """

    cvcourse_alt = ""

    def __repr__(self) -> str:
        return self.cvcourse_alt or super().__repr__()


# ---------------------------------------------------------------- tracing

def shapes_of(obj) -> list[tuple[int, ...]]:
    """Every tensor shape in `obj` (a tensor, or tuples/lists/dicts of them), in order."""
    if isinstance(obj, Tensor):
        return [tuple(obj.shape)]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in shapes_of(v)]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in shapes_of(v)]
    return []


def trace_shapes(model: nn.Module, example_input: Tensor,
                 modules: Sequence[str]) -> dict[str, list[tuple[int, ...]]]:
    """Shapes that named submodules return during one forward pass (eval mode, no grad).

    Args:
        model: the network; its training mode is restored afterwards.
        example_input: the batch given to ``model(example_input)``.
        modules: dotted submodule names (``"rpn.head"``); a name ending in ``":in"`` records
            what the module *receives* instead (for an operation that is not a module, such as
            RoI Align, trace the input of the module that follows it).

    Returns:
        ``{name: [shape, ...]}``: the shapes of every tensor returned (or received) by each
        call, in call order (a module called once per pyramid level lists every level).

    Raises:
        ValueError: a name in `modules` is not a submodule of `model`.
    """
    known = dict(model.named_modules())
    records: dict[str, list[tuple[int, ...]]] = {}
    handles = []
    for key in modules:
        name, _, mode = key.partition(":")
        if name not in known:
            raise ValueError(f"modules: {name!r} is not a submodule of {type(model).__name__}; "
                             f"expected one of {sorted(k for k in known if k)[:12]}...")
        records[key] = []
        if mode == "in":
            def pre(mod, args, key=key):
                records[key].extend(shapes_of(args))
            handles.append(known[name].register_forward_pre_hook(pre))
        else:
            def post(mod, args, out, key=key):
                records[key].extend(shapes_of(out))
            handles.append(known[name].register_forward_hook(post))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return records


def format_shape(shape: Sequence[int]) -> str:
    """``(1, 64, 16, 16)`` → ``"1×64×16×16"``."""
    return "×".join(str(int(d)) for d in shape)


def parse_shape(text: str) -> list[tuple[int, ...]]:
    """The shapes written in one label (one per line), inverse of `format_shape`."""
    return [tuple(int(d) for d in line.split("×")) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------- drawing

@dataclass
class Block:
    """One box: a traced module (or the input/an operation), where it sits, how it looks."""
    key: str                  # trace key ("backbone", "roi_heads.box_head:in") or a pseudo name
    title: str                # the role ("backbone", "RoI Align")
    subtitle: str             # the class name or a short note
    x: float                  # centre, inches
    y: float
    kind: str = "backbone"    # colour key in COLORS


def draw_pipeline(blocks: Sequence[Block], edges: Sequence[tuple], title: str = "",
                  size: tuple[float, float] | None = None) -> Figure:
    """Boxes and arrows; every arrow carries a label (the tensor shapes that flow along it).

    Args:
        blocks: the boxes (positions in inches from the lower left).
        edges: ``(src_key, dst_key, label)`` or ``(src_key, dst_key, label, style)`` with
            style a dict: ``"rad"`` (arc), ``"side"`` (``"above"``/``"below"``/``"left"``/
            ``"right"``) and ``"ls"`` (line style).
        title: the figure title.
        size: figure size in inches (default: the blocks' extent plus a margin).

    Returns:
        The figure; one ``FancyBboxPatch`` per block, shape labels have ``gid="shape"``.
    """
    by_key = {b.key: b for b in blocks}
    xs = [b.x for b in blocks]
    ys = [b.y for b in blocks]
    if size is None:
        size = (max(xs) + BOX_W / 2 + 0.3, max(ys) + BOX_H / 2 + (0.6 if title else 0.3))
    fig = Diagram(figsize=size, dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, size[0])
    ax.set_ylim(0, size[1])
    ax.set_axis_off()
    for b in blocks:
        ax.add_patch(FancyBboxPatch((b.x - BOX_W / 2, b.y - BOX_H / 2), BOX_W, BOX_H,
                                    boxstyle="round,pad=0.02,rounding_size=0.08", lw=1.0,
                                    ec="#333333", fc=COLORS.get(b.kind, "#ffffff"), gid="block"))
        ax.text(b.x, b.y + 0.11, b.title, ha="center", va="center", fontsize=FONT,
                fontweight="bold", gid="block-title")
        ax.text(b.x, b.y - 0.14, b.subtitle, ha="center", va="center", fontsize=FONT,
                color="#444444", style="italic", gid="block-subtitle")
    for edge in edges:
        src, dst, label = edge[:3]
        style = edge[3] if len(edge) > 3 else {}
        a, b = by_key[src], by_key[dst]
        start = _side(a, style["from"]) if "from" in style else _anchor(a, b)
        end = _side(b, style["to"]) if "to" in style else _anchor(b, a)
        ax.annotate("", xy=end, xytext=start,
                    arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.1,
                                    ls=style.get("ls", "-"), shrinkA=0, shrinkB=0,
                                    connectionstyle=f"arc3,rad={style.get('rad', 0.0)}"))
        if label:
            t = style.get("at", 0.5)
            mx, my = start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])
            side = style.get("side", "above" if abs(end[0] - start[0]) >= abs(end[1] - start[1])
                             else "right")
            dx, dy, ha, va = {"above": (0, 0.06, "center", "bottom"),
                              "below": (0, -0.06, "center", "top"),
                              "left": (-0.07, 0, "right", "center"),
                              "right": (0.07, 0, "left", "center")}[side]
            dxe, dye = end[0] - start[0], end[1] - start[1]
            if side in ("above", "below") and abs(dxe) > 1e-6:
                # keep a centred label off a sloping arrow: lift it by the slope times half its
                # width (about 0.07 inch per character at 9 pt)
                half = 0.035 * max(len(line) for line in label.splitlines())
                dy += (1 if side == "above" else -1) * abs(dye / dxe) * half
            off = style.get("offset", (0.0, 0.0))
            note = style.get("note", False)
            ax.text(mx + dx + off[0], my + dy + off[1], label, ha=ha, va=va, fontsize=FONT,
                    color="#555555" if note else "#1f4e9a", gid="note" if note else "shape",
                    linespacing=1.1, style="italic" if note else "normal")
    if title:
        ax.text(size[0] / 2, size[1] - 0.12, title, ha="center", va="top", fontsize=FONT + 1,
                fontweight="bold")
    return fig


def _anchor(a: Block, b: Block) -> tuple[float, float]:
    """Where an arrow from `a` towards `b` leaves `a`'s box (middle of the facing side)."""
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) * BOX_H >= abs(dy) * BOX_W:
        return (a.x + (BOX_W / 2 if dx > 0 else -BOX_W / 2), a.y)
    return (a.x, a.y + (BOX_H / 2 if dy > 0 else -BOX_H / 2))


def _side(a: Block, side: str) -> tuple[float, float]:
    """The middle of one side ("top", "bottom", "left", "right") of `a`'s box."""
    return {"top": (a.x, a.y + BOX_H / 2), "bottom": (a.x, a.y - BOX_H / 2),
            "left": (a.x - BOX_W / 2, a.y), "right": (a.x + BOX_W / 2, a.y)}[side]


def _class(model: nn.Module, key: str) -> str:
    name = key.partition(":")[0]
    return type(model.get_submodule(name)).__name__


def _diagram(model: nn.Module, example_input: Tensor, blocks: list[Block], edges: list[tuple],
             title: str, size=None) -> Figure:
    """Trace every block that names a submodule, label the edges with the source's shapes."""
    known = dict(model.named_modules())
    traced = [b.key for b in blocks if b.key.partition(":")[0] in known and b.key != ""]
    shapes = trace_shapes(model, example_input, traced)
    shapes["input"] = [tuple(example_input.shape)]
    labelled = []
    for edge in edges:
        src, dst = edge[:2]
        label = edge[2] if len(edge) > 2 and edge[2] is not None else \
            "\n".join(format_shape(s) for s in shapes[src])
        labelled.append((src, dst, label, *edge[3:]))
    return _described(draw_pipeline(blocks, labelled, title, size), title, blocks, shapes)


def _described(fig: Diagram, title: str, blocks: list[Block],
               shapes: dict[str, list[tuple[int, ...]]]) -> Diagram:
    """`fig` with its alt text (every block and the shapes leaving it) and its traced shapes."""
    lines = [f"Diagram: {title}. Blocks and the tensor shapes that leave them:"]
    for b in blocks:
        shp = "; ".join(format_shape(s) for s in shapes.get(b.key, []))
        lines.append(f"{b.title} ({b.subtitle})" + (f" outputs {shp}" if shp else "") + ".")
    fig.cvcourse_alt = " ".join(lines)
    fig.cvcourse_shapes = shapes
    return fig


def alt_text(fig: Figure) -> str:
    """The alt text of a diagram made by this module."""
    return fig.cvcourse_alt


def _default(name: str, model, seed: int = 0, checkpoint: bool = False) -> nn.Module:
    """`model`, or the shipped config of `name` (untrained unless `checkpoint`)."""
    if model is not None:
        return model
    from . import pretrained, recipes
    if checkpoint:
        return pretrained.load(name, device="cpu")
    with torch.random.fork_rng(devices=[]):   # leave the caller's random stream untouched
        torch.manual_seed(seed)
        return recipes.get(name).factory(**pretrained.record(name)["config"]).eval()


def _model_and_input(name: str, model, example_input, checkpoint: bool = False) -> tuple[nn.Module, Tensor]:
    """`model` or `name`'s default (see `_default`), and `example_input` or one test scene at
    the model's input size (128 unless the model fixes one, as the ViT does)."""
    model = _default(name, model, checkpoint=checkpoint)
    if example_input is None:
        example_input = _scene(getattr(model, "image_size", 128))
    return model, example_input


def _scene(size: int = 128) -> Tensor:
    from .data.shapes import make_scene
    return make_scene(0, split="test", size=size)["image"].unsqueeze(0)  # (1, 3, S, S)


# ---------------------------------------------------------------- one function per architecture
# Positions are in inches; a row holds at most four boxes so a figure fits the content width.
DX = 2.35       # horizontal pitch
X0 = 0.95       # first column's centre


def _col(i: int) -> float:
    return X0 + i * DX


def _snake(items: list[tuple[str, str, str, str]], per_row: int = 4,
           row_gap: float = 1.5) -> list[Block]:
    """Blocks in reading order, `per_row` to a row, each row turning back (a snake)."""
    rows = (len(items) + per_row - 1) // per_row
    blocks = []
    for n, (key, title, sub, kind) in enumerate(items):
        r, c = divmod(n, per_row)
        c = c if r % 2 == 0 else per_row - 1 - c
        blocks.append(Block(key, title, sub, _col(c), 0.55 + (rows - 1 - r) * row_gap, kind))
    return blocks


def _chain(blocks: list[Block]) -> list[tuple]:
    return [(a.key, b.key) for a, b in zip(blocks, blocks[1:])]


def _size(blocks: list[Block], extra_h: float = 0.0) -> tuple[float, float]:
    return (max(b.x for b in blocks) + BOX_W / 2 + 0.35, max(b.y for b in blocks) + 0.95 + extra_h)


def fcn(model: nn.Module | None = None, example_input: Tensor | None = None) -> Figure:
    """FCN: the backbone's stages (each ends in a stride-2 pool), a 1×1 classifier, a learned
    upsampling back to the image size.

    Args:
        model: an `FCN` (default: the shipped config, untrained: shapes do not depend on weights).
        example_input: images ``[B, 3, H, W]`` (default: one 128×128 test scene).
    """
    model, x = _model_and_input("fcn", model, example_input)
    last = len(model.backbone) - 1
    cuts = [i for i, m in enumerate(model.backbone) if isinstance(m, nn.MaxPool2d)] + [last]
    items = [("input", "image", "input", "input")]
    for i in cuts:
        what = "ends in max pool" if i != last else "last conv stage"
        items.append((f"backbone.{i}", f"backbone[:{i + 1}]", what, "backbone"))
    items += [("classifier", "classifier", "1×1 " + _class(model, "classifier"), "head"),
              ("upsample", "upsample", _class(model, "upsample"), "head"),
              ("output", "class scores", "one per pixel", "input")]
    blocks = _snake(items)
    return _diagram(model, x, blocks, _chain(blocks),
                    "FCN: downsample, classify every cell, upsample", size=_size(blocks))


def fcn8s(model: nn.Module | None = None, example_input: Tensor | None = None) -> Figure:
    """FCN-8s: the backbone along the top, a 1×1 score layer under each of its last three
    stages, and the fusion path along the bottom (×2, add the finer scores, ×2, add, upsample).

    Args:
        model: an `FCN8s` (default: the shipped config, untrained: shapes do not depend on weights).
        example_input: images ``[B, 3, H, W]`` (default: one 128×128 test scene).
    """
    model, x = _model_and_input("fcn8s", model, example_input)
    a, b = model.cuts
    s = model.total_stride
    last = len(model.backbone) - 1
    top, mid, low = 3.35, 1.95, 0.55
    blocks = [Block("input", "image", "input", _col(0), top, "input"),
              Block(f"backbone.{a - 1}", f"backbone[:{a}]", f"stride {s // 4} (\"pool3\")", _col(1), top),
              Block(f"backbone.{b - 1}", f"backbone[{a}:{b}]", f"stride {s // 2} (\"pool4\")", _col(2), top),
              Block(f"backbone.{last}", f"backbone[{b}:]", f"stride {s}", _col(3), top),
              Block("score_pool3", "score_pool3", "1×1 conv, zero init", _col(1), mid, "head"),
              Block("score_pool4", "score_pool4", "1×1 conv, zero init", _col(2), mid, "head"),
              Block("classifier", "classifier", "1×1 " + _class(model, "classifier"), _col(3), mid, "head"),
              Block("upscore2", "upscore2", "×2 upsampling", _col(3), low, "neck"),
              Block("upscore_pool4", "upscore_pool4", "add, then ×2", _col(2), low, "neck"),
              Block("upsample", "upsample", f"add, then ×{s // 4}", _col(1), low, "neck"),
              Block("output", "class scores", "one per pixel", _col(0), low, "input")]
    edges = [("input", f"backbone.{a - 1}"), (f"backbone.{a - 1}", f"backbone.{b - 1}"),
             (f"backbone.{b - 1}", f"backbone.{last}"),
             (f"backbone.{a - 1}", "score_pool3"), (f"backbone.{b - 1}", "score_pool4"),
             (f"backbone.{last}", "classifier"), ("classifier", "upscore2"),
             ("upscore2", "upscore_pool4"), ("score_pool4", "upscore_pool4", None, {"ls": "--"}),
             ("upscore_pool4", "upsample"), ("score_pool3", "upsample", None, {"ls": "--"}),
             ("upsample", "output")]
    return _diagram(model, x, blocks, edges, "FCN-8s: scores from three strides, fused ×2 at a time",
                    size=(_col(3) + 1.0, top + 0.75))


def unet(model: nn.Module | None = None, example_input: Tensor | None = None) -> Figure:
    """U-Net as a U: encoder down the left, bottleneck at the bottom, decoder up the right,
    a skip arrow (copied encoder output, concatenated after the up-convolution) across each level.

    Args:
        model: a `UNet` (default: the shipped config, untrained).
        example_input: images ``[B, 3, H, W]`` (default: one 128×128 test scene).
    """
    model, x = _model_and_input("unet", model, example_input)
    depth = len(model.up)
    pitch = 1.15
    top = 0.55 + (depth + 1) * pitch

    def y(r):
        return top - r * pitch

    blocks = [Block(f"encoder.{i}", f"encoder[{i}]", "pool + 2 convs" if i else "2 convs",
                    _col(0), y(i + 1), "backbone") for i in range(depth)]
    blocks.append(Block(f"encoder.{depth}", "bottleneck", f"encoder[{depth}]", _col(1), y(depth + 1),
                        "backbone"))
    edges = [(f"encoder.{i}", f"encoder.{i + 1}") for i in range(depth)]
    for j in range(depth):
        r = depth - j          # row of the encoder level this decoder stage joins
        blocks.append(Block(f"up.{j}", f"up[{j}]", _class(model, f"up.{j}"), _col(3), y(r), "neck"))
        blocks.append(Block(f"decoder.{j}", f"decoder[{j}]", "concat + 2 convs" if model.skip
                            else "2 convs", _col(2), y(r), "neck"))
        if j == 0:
            edges.append((f"encoder.{depth}", "up.0", None, {"to": "bottom", "side": "above",
                                                             "offset": (-0.3, 0.0)}))
        else:
            edges.append((f"decoder.{j - 1}", f"up.{j}", None, {"from": "top", "to": "bottom",
                                                                "side": "below", "offset": (0.4, 0.0)}))
        edges.append((f"up.{j}", f"decoder.{j}"))
        if model.skip:
            edges.append((f"encoder.{depth - 1 - j}", f"decoder.{j}", None, {"ls": "--"}))
    blocks += [Block("head", "head", "1×1 " + _class(model, "head"), _col(2), y(0), "head"),
               Block("output", "class scores", "one per pixel", _col(3), y(0), "input"),
               Block("input", "image", "input", _col(0), y(0), "input")]
    edges += [(f"decoder.{depth - 1}", "head", None, {"side": "left"}), ("head", "output"),
              ("input", "encoder.0", None, {"side": "right"})]
    title = "U-Net: encoder, decoder, skip connections" if model.skip else "U-Net without skips"
    return _diagram(model, x, blocks, edges, title, size=(_col(3) + 1.0, top + 0.7))


def _two_stage(model: nn.Module, x: Tensor, title: str, mask: bool) -> Figure:
    up, mid, low = (3.0, 1.75, 0.45) if mask else (2.2, 0.9, 0.0)
    blocks = [Block("input", "image", "input", _col(0), up, "input"),
              Block("backbone", "backbone", _class(model, "backbone"), _col(1), up, "backbone"),
              Block("rpn.head", "RPN head", _class(model, "rpn.head"), _col(2), up, "neck"),
              Block("rpn", "proposals", "anchors, NMS", _col(3), up, "op"),
              Block("roi_heads.box_head:in", "RoI Align" if model.roi_heads.pooler == "align"
                    else "RoI Pool", "box pooler", _col(3), mid, "op"),
              Block("roi_heads.box_head", "box head", _class(model, "roi_heads.box_head"), _col(2),
                    mid, "head"),
              Block("roi_heads.cls_score", "class scores", _class(model, "roi_heads.cls_score"),
                    _col(1), mid + 0.42, "head"),
              Block("roi_heads.bbox_pred", "box deltas", _class(model, "roi_heads.bbox_pred"),
                    _col(1), mid - 0.42, "head"),
              Block("detections", "detections", "decode, NMS", _col(0), mid, "input")]
    edges = [("input", "backbone"), ("backbone", "rpn.head"), ("rpn.head", "rpn"),
             ("rpn", "roi_heads.box_head:in", None, {"side": "right"}),
             ("backbone", "roi_heads.box_head:in", None, {"rad": 0.0, "side": "left",
                                                        "offset": (0.0, -0.05)}),
             ("roi_heads.box_head:in", "roi_heads.box_head"),
             ("roi_heads.box_head", "roi_heads.cls_score", None, {"side": "above"}),
             ("roi_heads.box_head", "roi_heads.bbox_pred", None, {"side": "below"}),
             ("roi_heads.cls_score", "detections", None, {"side": "above", "offset": (0.05, 0.02)}),
             ("roi_heads.bbox_pred", "detections", None, {"side": "below",
                                                         "offset": (0.05, -0.02)})]
    if mask:
        pooler = "RoI Align" if model.roi_heads.mask_pooler == "align" else "RoI Pool"
        blocks += [Block("roi_heads.mask_head:in", pooler, "mask pooler", _col(3), low, "op"),
                   Block("roi_heads.mask_head", "mask head", _class(model, "roi_heads.mask_head"),
                         _col(2), low, "head")]
        edges += [("roi_heads.box_head:in", "roi_heads.mask_head:in", "detections",
                   {"ls": ":", "note": True, "side": "left"}),
                  ("roi_heads.mask_head:in", "roi_heads.mask_head"),
                  ("roi_heads.mask_head", "output", None, {"side": "above"})]
        blocks.append(Block("output", "mask logits", "per detection", _col(1), low, "input"))
    fig = _diagram(model, x, blocks, edges, title, size=(_col(3) + 1.0, up + 0.75))
    return fig


def faster_rcnn(model: nn.Module | None = None, example_input: Tensor | None = None) -> Figure:
    """Faster R-CNN: backbone → RPN head → proposals → RoI Align → box head → class and box.

    Args:
        model: a `FasterRCNN` (default: the shipped config, untrained; the proposal count is
            whatever the RPN keeps for this input).
        example_input: images ``[B, 3, H, W]`` (default: one 128×128 test scene).
    """
    model, x = _model_and_input("faster_rcnn", model, example_input)
    return _two_stage(model, x, "Faster R-CNN: region proposals, then per-RoI heads", mask=False)


def mask_rcnn(model: nn.Module | None = None, example_input: Tensor | None = None) -> Figure:
    """Mask R-CNN: Faster R-CNN plus a mask branch (its own RoI Align on the detections).

    Args:
        model: a `MaskRCNN` (default: the shipped checkpoint, so that the mask branch receives
            detections; an untrained model may detect nothing).
        example_input: images ``[B, 3, H, W]`` (default: one 128×128 test scene).
    """
    model, x = _model_and_input("mask_rcnn", model, example_input, checkpoint=True)
    return _two_stage(model, x, "Mask R-CNN: box heads and the mask head", mask=True)


def yolo(model: nn.Module | None = None, example_input: Tensor | None = None) -> Figure:
    """YOLO: backbone → neck → a 1×1 head that predicts, per grid cell, B boxes and C classes.

    Args:
        model: a `YOLO` (default: the shipped config, untrained).
        example_input: square images ``[B, 3, S, S]`` (default: one 128×128 test scene).
    """
    model, x = _model_and_input("yolo", model, example_input)
    blocks = _snake([("input", "image", "input", "input"),
                     ("backbone", "backbone", _class(model, "backbone"), "backbone"),
                     ("neck", "neck", _class(model, "neck"), "neck"),
                     ("head", "head", "1×1 " + _class(model, "head"), "head"),
                     ("output", "S×S grid", "per cell B·5 + C", "input")], row_gap=1.2)
    return _diagram(model, x, blocks, _chain(blocks), "YOLO: one grid of predictions",
                    size=_size(blocks))


def _levels(model: nn.Module) -> list[str]:
    """The multi-scale backbone's stages, finest first."""
    return [f"backbone.{n}" for n, _ in model.backbone.named_children()]


def ssd(model: nn.Module | None = None, example_input: Tensor | None = None) -> Figure:
    """SSD: a multi-scale backbone; at every scale a class head and a box head (3×3 convs).

    Args:
        model: an `SSD` (default: the shipped config, untrained).
        example_input: square images ``[B, 3, S, S]`` (default: one 128×128 test scene).
    """
    model, x = _model_and_input("ssd", model, example_input)
    levels = _levels(model)
    rows, pitch = len(levels), 1.75
    blocks = [Block("input", "image", "input", _col(0), 0.95 + (rows - 1) * pitch, "input")]
    edges = []
    for i, key in enumerate(levels):
        yy = 0.95 + (rows - 1 - i) * pitch
        blocks += [Block(key, key.split(".")[1], _class(model, key), _col(1), yy, "backbone"),
                   Block(f"cls_heads.{i}", f"class head {i}", _class(model, f"cls_heads.{i}"),
                         _col(2), yy + 0.37, "head"),
                   Block(f"box_heads.{i}", f"box head {i}", _class(model, f"box_heads.{i}"),
                         _col(2), yy - 0.37, "head"),
                   Block(f"out{i}", f"scale {i}", "default boxes", _col(3), yy, "input")]
        edges += [("input", key) if i == 0 else (levels[i - 1], key, None, {"side": "left"}),
                  (key, f"cls_heads.{i}", None, {"side": "above", "offset": (-0.15, 0)}),
                  (key, f"box_heads.{i}", None, {"side": "below", "offset": (-0.15, 0)}),
                  (f"cls_heads.{i}", f"out{i}", None, {"side": "above", "offset": (0.1, 0)}),
                  (f"box_heads.{i}", f"out{i}", None, {"side": "below", "offset": (0.1, 0)})]
    return _diagram(model, x, blocks, edges, "SSD: class and box heads on every scale",
                    size=_size(blocks, 0.15))


def retinanet(model: nn.Module | None = None, example_input: Tensor | None = None) -> Figure:
    """RetinaNet: a multi-scale backbone, an FPN, and two subnets shared across the levels.

    Args:
        model: a `RetinaNet` (default: the shipped config, untrained).
        example_input: images ``[B, 3, H, W]`` (default: one 128×128 test scene).
    """
    model, x = _model_and_input("retinanet", model, example_input)
    levels = _levels(model)
    rows, pitch = len(levels) + 1, 1.2

    def y(i):
        return 0.55 + (rows - 1 - i) * pitch

    blocks = [Block("input", "image", "input", _col(0), y(0), "input")]
    edges = []
    for i, key in enumerate(levels):
        blocks.append(Block(key, key.split(".")[1], _class(model, key), _col(0), y(i + 1),
                            "backbone"))
        edges.append(("input" if i == 0 else levels[i - 1], key, None, {"side": "left"}))
        edges.append((key, "fpn", None, {"from": "right", "to": "left", "side": "above",
                                          "at": 0.3}))
    mid = y((rows) / 2)
    y_cls, y_box = mid + 0.9, mid - 0.9
    blocks += [Block("fpn", "FPN", _class(model, "fpn"), _col(1), mid, "neck"),
               Block("cls_subnet", "class subnet", "shared by levels", _col(2), y_cls, "head"),
               Block("box_subnet", "box subnet", "shared by levels", _col(2), y_box, "head"),
               Block("cls_out", "class logits", "A·C per cell", _col(3), y_cls, "input"),
               Block("box_out", "box deltas", "4A per cell", _col(3), y_box, "input")]
    edges += [("fpn", "cls_subnet", None, {"from": "top", "to": "left", "side": "left"}),
              ("fpn", "box_subnet", None, {"from": "bottom", "to": "left", "side": "left"}),
              ("cls_subnet", "cls_out"), ("box_subnet", "box_out", None, {"side": "below"})]
    for b in blocks:
        b.x += 0.35   # room for the labels left of the backbone column
    return _diagram(model, x, blocks, edges, "RetinaNet: FPN levels, shared subnets",
                    size=_size(blocks, 0.15))


def detr(model: nn.Module | None = None, example_input: Tensor | None = None) -> Figure:
    """DETR: CNN backbone, 1×1 projection, transformer encoder over the feature tokens, a decoder
    that turns object queries into one class and one box each.

    Args:
        model: a `DETR` (default: the shipped config, untrained).
        example_input: images ``[B, 3, H, W]`` (default: one 128×128 test scene).
    """
    model, x = _model_and_input("detr", model, example_input)
    last = f"encoder.{len(model.encoder) - 1}"
    up, low = 2.3, 0.85
    blocks = [Block("input", "image", "input", _col(0), up, "input"),
              Block("backbone", "backbone", _class(model, "backbone"), _col(1), up, "backbone"),
              Block("input_proj", "projection", "1×1 " + _class(model, "input_proj"), _col(2), up,
                    "backbone"),
              Block(last, f"encoder ×{len(model.encoder)}", _class(model, last), _col(3), up,
                    "transformer"),
              Block("queries", "object queries", _class(model, "query_embed"), _col(3), low,
                    "input"),
              Block("decoder", f"decoder ×{len(model.decoder.layers)}", _class(model, "decoder"),
                    _col(2), low, "transformer"),
              Block("class_embed", "class head", _class(model, "class_embed"), _col(1), low + 0.42,
                    "head"),
              Block("bbox_embed", "box head", "MLP", _col(1), low - 0.42, "head"),
              Block("output", "predictions", "one per query", _col(0), low, "input")]
    edges = [("input", "backbone"), ("backbone", "input_proj"),
             ("input_proj", last, None, {"side": "above"}),
             (last, "decoder", None, {"side": "left", "at": 0.45, "offset": (-0.05, 0.0)}),
             ("queries", "decoder", format_shape(model.query_embed.weight.shape),
              {"side": "below"}),
             ("decoder", "class_embed", None, {"side": "above", "offset": (0.05, 0.02)}),
             ("decoder", "bbox_embed", None, {"side": "below", "offset": (0.05, -0.02)}),
             ("class_embed", "output", None, {"side": "above", "offset": (0.05, 0.02)}),
             ("bbox_embed", "output", None, {"side": "below", "offset": (0.05, -0.02)})]
    return _diagram(model, x, blocks, edges, "DETR: encoder over feature tokens, queries decoded "
                    "into a set", size=(_col(3) + 1.0, up + 0.8))


def vit(model: nn.Module | None = None, example_input: Tensor | None = None) -> Figure:
    """ViT: (a conv stem,) patch embedding, CLS token and positions, transformer blocks, a
    linear head on the CLS token.

    Args:
        model: a `VisionTransformer` (default: the shipped config, untrained).
        example_input: images ``[B, 3, S, S]`` (default: one test scene at the model's size).
    """
    model, x = _model_and_input("vit", model, example_input)
    last = f"blocks.{len(model.blocks) - 1}"
    items = [("input", "image", "input", "input")]
    if len(list(model.stem.children())):
        items.append(("stem", "stem", "convolutions", "backbone"))
    k = model.patch_embed.kernel_size
    items += [("patch_embed", "patch embed", f"{_class(model, 'patch_embed')} {k[0]}×{k[1]}",
               "backbone"),
              ("blocks.0:in", "tokens", "+ CLS, + positions", "op"),
              (last, f"blocks ×{len(model.blocks)}", _class(model, last), "transformer"),
              ("norm", "CLS token", _class(model, "norm"), "transformer"),
              ("head", "head", _class(model, "head"), "head"),
              ("output", "class logits", "per image", "input")]
    blocks = _snake(items, row_gap=1.3)
    return _diagram(model, x, blocks, _chain(blocks), "ViT: patches as tokens, a transformer, "
                    "the CLS token classified", size=_size(blocks))



def rpn_head(model: nn.Module | None = None, example_input: Tensor | None = None) -> Figure:
    """The RPN head of a Faster R-CNN: a shared 3×3 conv, then two 1×1 convs giving, for each
    of the A anchors at every feature cell, an objectness logit and four box deltas.

    Args:
        model: a `FasterRCNN` (default: the shipped config, untrained).
        example_input: images ``[B, 3, H, W]`` (default: one 128×128 test scene).
    """
    model, x = _model_and_input("faster_rcnn", model, example_input)
    y0 = 1.2
    blocks = [Block("backbone", "backbone", _class(model, "backbone"), _col(0), y0, "backbone"),
              Block("rpn.head.conv", "conv 3×3", _class(model, "rpn.head.conv") + " + ReLU",
                    _col(1), y0, "neck"),
              Block("rpn.head.cls_logits", "objectness", "1×1 " + _class(model, "rpn.head.cls_logits"),
                    _col(2), y0 + 0.5, "head"),
              Block("rpn.head.bbox_pred", "box deltas", "1×1 " + _class(model, "rpn.head.bbox_pred"),
                    _col(2), y0 - 0.5, "head"),
              Block("rpn", "proposals", "top-k, NMS", _col(3), y0, "op")]
    edges = [("backbone", "rpn.head.conv"),
             ("rpn.head.conv", "rpn.head.cls_logits", None, {"side": "above"}),
             ("rpn.head.conv", "rpn.head.bbox_pred", None, {"side": "below"}),
             ("rpn.head.cls_logits", "rpn", None, {"side": "above"}),
             ("rpn.head.bbox_pred", "rpn", None, {"side": "below"})]
    return _diagram(model, x, blocks, edges, "RPN head: objectness and deltas for every anchor",
                    size=(_col(3) + 1.0, y0 + 1.5))

class _Op(nn.Module):
    """A step that is a function, not a module, wrapped so that a hook can see its output."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


class _Family(nn.Module):
    """R-CNN, Fast R-CNN and Faster R-CNN run side by side on the same image.

    R-CNN warps every selective-search proposal and runs its CNN once per crop; Fast R-CNN
    (here: the Faster R-CNN's backbone and RoI heads fed the same selective-search
    proposals) runs the backbone once and pools each proposal from the shared features;
    Faster R-CNN makes its proposals with the RPN.
    """

    def __init__(self, rcnn: nn.Module, faster: nn.Module, proposals: Tensor):
        super().__init__()
        from .models.rcnn import warp_proposals
        self.rcnn, self.faster = rcnn, faster
        self.search = _Op(lambda images: [proposals])                              # K x 4
        self.warp = _Op(lambda images, boxes: warp_proposals(images, boxes, rcnn.crop_size))

    def forward(self, images: Tensor):
        boxes = self.search(images)
        self.rcnn(self.warp(images, boxes))                       # (K, 3, s, s): K CNN passes
        features = self.faster.backbone(images)                   # one pass, shared
        self.faster.roi_heads(features, boxes, tuple(images.shape[-2:]))  # Fast R-CNN
        return self.faster(images)                                # Faster R-CNN: RPN proposals


def rcnn_family(rcnn: nn.Module | None = None, faster: nn.Module | None = None,
                example_input: Tensor | None = None, proposals: Tensor | None = None) -> Figure:
    """R-CNN, Fast R-CNN and Faster R-CNN as three strips: what is computed once per proposal.

    Args:
        rcnn: an `RCNN` (default: the shipped config, untrained).
        faster: a `FasterRCNN` (default: the shipped config, untrained); its backbone and RoI
            heads also serve as the Fast R-CNN strip, fed the selective-search proposals.
        example_input: one image ``[1, 3, H, W]`` (default: one 128×128 test scene).
        proposals: ``[K, 4]`` xyxy boxes (default: `cvcourse.proposals.propose` on the image).
    """
    from .proposals import propose
    rcnn = _default("rcnn", rcnn)
    faster, x = _model_and_input("faster_rcnn", faster, example_input)
    if proposals is None:
        proposals = propose(x[0])
    family = _Family(rcnn, faster, proposals).eval()
    pitch = 1.3
    r1, r2, r3 = 0.55 + 2 * pitch, 0.55 + pitch, 0.55
    shared = "faster.backbone"
    # Fast R-CNN and Faster R-CNN call the same modules: trace keys for the Fast strip are
    # the first call's shapes, the Faster strip's the second's (see _family_shapes).
    blocks = [Block("search", "selective search", "proposals", _col(0), r1, "op"),
              Block("warp", "warp each", "RoI Align on pixels", _col(1), r1, "op"),
              Block("rcnn.cnn", "CNN per crop", _class(rcnn, "cnn"), _col(2), r1, "backbone"),
              Block("rcnn.cls_score", "heads", "R-CNN", _col(3), r1, "head"),
              Block("search#2", "selective search", "proposals", _col(0), r2, "op"),
              Block(shared + "#1", "backbone once", _class(faster, "backbone"), _col(1), r2,
                    "backbone"),
              Block("faster.roi_heads.box_head:in#1", "RoI Align", "shared features", _col(2), r2,
                    "op"),
              Block("faster.roi_heads.box_head#1", "heads", "Fast R-CNN",
                    _col(3), r2, "head"),
              Block(shared + "#2", "backbone", _class(faster, "backbone"), _col(0), r3, "backbone"),
              Block("faster.rpn", "RPN", "proposals", _col(1), r3, "neck"),
              Block("faster.roi_heads.box_head:in#2", "RoI Align", "shared features", _col(2), r3,
                    "op"),
              Block("faster.roi_heads.box_head#2", "heads", "Faster R-CNN",
                    _col(3), r3, "head")]
    edges = [("search", "warp"), ("warp", "rcnn.cnn"), ("rcnn.cnn", "rcnn.cls_score"),
             ("search#2", "faster.roi_heads.box_head:in#1", None,
              {"rad": 0.25, "side": "below", "offset": (0, -0.5)}),
             (shared + "#1", "faster.roi_heads.box_head:in#1"),
             ("faster.roi_heads.box_head:in#1", "faster.roi_heads.box_head#1"),
             (shared + "#2", "faster.rpn"), ("faster.rpn", "faster.roi_heads.box_head:in#2"),
             ("faster.roi_heads.box_head:in#2", "faster.roi_heads.box_head#2")]
    return _family_diagram(family, x, blocks, edges, size=(_col(3) + 1.0, r1 + 0.8))


def _family_shapes(family: nn.Module, x: Tensor) -> dict[str, list[tuple[int, ...]]]:
    """Trace `family`; a key ``name#n`` is the n-th call of module ``name`` (1-based)."""
    keys = ["search", "warp", "rcnn.cnn", "rcnn.cls_score", "faster.backbone",
            "faster.roi_heads.box_head:in", "faster.roi_heads.box_head", "faster.rpn"]
    calls: dict[str, list[list[tuple[int, ...]]]] = {k: [] for k in keys}
    known = dict(family.named_modules())
    handles = []
    for key in keys:
        name, _, mode = key.partition(":")
        if mode == "in":
            handles.append(known[name].register_forward_pre_hook(
                lambda m, a, key=key: calls[key].append(shapes_of(a))))
        else:
            handles.append(known[name].register_forward_hook(
                lambda m, a, o, key=key: calls[key].append(shapes_of(o))))
    try:
        with torch.no_grad():
            family(x)
    finally:
        for h in handles:
            h.remove()
    shapes = {k: v[0] for k, v in calls.items()}
    shapes.update({f"{k}#{n + 1}": s for k, v in calls.items() for n, s in enumerate(v)})
    shapes["search#2"] = shapes["search"]       # the same proposals feed Fast R-CNN
    return shapes


def _family_diagram(family, x, blocks, edges, size) -> Figure:
    shapes = _family_shapes(family, x)
    labelled = [(e[0], e[1], "\n".join(format_shape(s) for s in shapes[e[0]]), *e[3:])
                for e in edges]
    title = "R-CNN → Fast R-CNN → Faster R-CNN: what runs once per proposal"
    return _described(draw_pipeline(blocks, labelled, title, size), title, blocks, shapes)
