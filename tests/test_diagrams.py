"""Architecture diagrams: the shapes written on each arrow are the model's real shapes.

The expected shapes are computed here independently of `cvcourse.diagrams.trace_shapes`: with
this file's own forward hooks, or by calling the submodules directly.
"""

import importlib.util
import json
import re
import time
from pathlib import Path

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from cvcourse import diagrams, pretrained, recipes
from cvcourse.data.shapes import make_scene

ROOT = Path(__file__).resolve().parents[1]


def scene(size=128):
    return make_scene(0, split="test", size=size)["image"].unsqueeze(0)


def build(name, **changes):
    torch.manual_seed(0)
    config = {**pretrained.record(name)["config"], **changes}
    return recipes.get(name).factory(**config).eval()


def hooked(model, x, outputs=(), inputs=()):
    """{name: [shape, ...]} of what `outputs` return and `inputs` receive, one forward pass."""
    got, handles = {}, []
    mods = dict(model.named_modules())

    def flat(o):
        if torch.is_tensor(o):
            return [tuple(o.shape)]
        if isinstance(o, dict):
            return [s for v in o.values() for s in flat(v)]
        if isinstance(o, (list, tuple)):
            return [s for v in o for s in flat(v)]
        return []

    for name in outputs:
        got[name] = []
        handles.append(mods[name].register_forward_hook(
            lambda m, a, o, name=name: got[name].extend(flat(o))))
    for name in inputs:
        got[name + ":in"] = []
        handles.append(mods[name].register_forward_pre_hook(
            lambda m, a, name=name: got[name + ":in"].extend(flat(a))))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return got


def written_shapes(fig):
    """Every shape written on an arrow of `fig`."""
    ax = fig.axes[0]
    return {s for t in ax.texts if t.get_gid() == "shape" for s in diagrams.parse_shape(t.get_text())}


def expected(model, x, outputs=(), inputs=(), extra=()):
    got = hooked(model, x, outputs, inputs)
    assert all(got.values()), f"a hooked module never ran: {got}"
    return {tuple(x.shape)} | {s for v in got.values() for s in v} | set(extra)


def n_boxes(fig):
    return sum(isinstance(p, FancyBboxPatch) and p.get_gid() == "block" for p in fig.axes[0].patches)


def check_figure(fig, min_boxes):
    assert isinstance(fig, Figure) and fig.dpi == 100
    assert n_boxes(fig) >= min_boxes
    ax = fig.axes[0]
    assert all(t.get_fontsize() >= 9 for t in ax.texts)
    titles = [t.get_text() for t in ax.texts if t.get_gid() == "block-title"]
    assert len(titles) == n_boxes(fig)
    alt = diagrams.alt_text(fig)
    for title in titles:
        assert title in alt, f"alt text does not name block {title!r}"
    # every shape is in the alt text too
    for s in written_shapes(fig):
        assert diagrams.format_shape(s) in alt
    # legibility: no two texts overlap, and every text lies inside the figure
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.texts if t.get_text()]
    W, H = fig.bbox.width, fig.bbox.height
    for text, bb in boxes:
        assert bb.x0 >= -1 and bb.y0 >= -1 and bb.x1 <= W + 1 and bb.y1 <= H + 1, \
            f"{text!r} leaves the figure"
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1:]:
            assert not a.overlaps(b), f"texts overlap: {ta!r} and {tb!r}"


def test_trace_shapes_records_outputs_inputs_and_every_call():
    model = build("retinanet")
    x = scene()
    got = diagrams.trace_shapes(model, x, ["fpn", "cls_subnet", "cls_subnet.0:in"])
    with torch.no_grad():
        feats = model.fpn(model.backbone(x))
    assert got["fpn"] == [tuple(f.shape) for f in feats]        # one shape per FPN level
    assert got["cls_subnet.0:in"] == [tuple(f.shape) for f in feats]  # called once per level
    assert len(got["cls_subnet"]) == len(feats)
    assert model.training is False


def test_trace_shapes_rejects_unknown_module():
    with pytest.raises(ValueError, match="modules: 'nope'"):
        diagrams.trace_shapes(build("yolo"), scene(), ["nope"])


def test_format_and_parse_are_inverse():
    assert diagrams.format_shape((1, 64, 16, 16)) == "1×64×16×16"
    assert diagrams.parse_shape("1×9×16×16\n100×4") == [(1, 9, 16, 16), (100, 4)]


def test_fcn():
    model, x = build("fcn"), scene()
    fig = diagrams.fcn(model, x)
    check_figure(fig, 7)
    pools = [f"backbone.{i}" for i, m in enumerate(model.backbone) if isinstance(m, torch.nn.MaxPool2d)]
    want = expected(model, x, pools + [f"backbone.{len(model.backbone) - 1}", "classifier", "upsample"])
    assert written_shapes(fig) == want
    with torch.no_grad():
        out = model(x)
    assert tuple(out.shape) in written_shapes(fig) and out.shape[-2:] == x.shape[-2:]
    wider = diagrams.fcn(build("fcn", width=8), x)
    assert written_shapes(wider) != written_shapes(fig)


def test_fcn8s():
    torch.manual_seed(0)
    model, x = recipes.get("fcn8s").build().eval(), scene()
    fig = diagrams.fcn8s(model, x)
    check_figure(fig, 11)
    a, b = model.cuts
    stages = [f"backbone.{a - 1}", f"backbone.{b - 1}", f"backbone.{len(model.backbone) - 1}"]
    want = expected(model, x, stages + ["score_pool3", "score_pool4", "classifier", "upscore2",
                                        "upscore_pool4", "upsample"])
    assert written_shapes(fig) == want
    s = model.total_stride
    # the three score maps sit at strides s/4, s/2 and s of the 128 x 128 input
    assert {(1, 4, 128 // d, 128 // d) for d in (s // 4, s // 2, s)} <= written_shapes(fig)
    with torch.no_grad():
        assert tuple(model(x).shape) in written_shapes(fig)


def test_unet():
    model, x = build("unet"), scene()
    fig = diagrams.unet(model, x)
    check_figure(fig, 3 * len(model.up) + 2)
    names = [f"encoder.{i}" for i in range(len(model.encoder))] + \
            [f"up.{j}" for j in range(len(model.up))] + [f"decoder.{j}" for j in range(len(model.up))] + ["head"]
    assert written_shapes(fig) == expected(model, x, names)
    # a skip arrow per level: the encoder output's shape is written twice (down and across)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts if t.get_gid() == "shape"]
    with torch.no_grad():
        first = model.encoder[0](x)
    assert labels.count(diagrams.format_shape(first.shape)) >= 2
    noskip = diagrams.unet(build("unet_noskip"), x)
    assert sum(t.get_gid() == "shape" for t in noskip.axes[0].texts) == len(labels) - len(model.up)
    assert written_shapes(diagrams.unet(build("unet", base=4), x)) != written_shapes(fig)


def test_faster_rcnn():
    model, x = build("faster_rcnn"), scene()
    fig = diagrams.faster_rcnn(model, x)
    check_figure(fig, 8)
    want = expected(model, x, ["backbone", "rpn.head", "rpn", "roi_heads.box_head",
                               "roi_heads.cls_score", "roi_heads.bbox_pred"],
                    inputs=["roi_heads.box_head"])
    assert written_shapes(fig) == want
    with torch.no_grad():
        features = model.backbone(x)
        objectness, deltas = model.rpn.head(features)
    config = pretrained.record("faster_rcnn")["config"]
    A = len(config["anchor_sizes"]) * len(config["aspect_ratios"])   # anchors per cell
    assert objectness.shape[1] == A
    assert {tuple(features.shape), tuple(objectness.shape), tuple(deltas.shape)} <= written_shapes(fig)
    assert deltas.shape[1] == 4 * A
    pooled = [s for s in written_shapes(fig) if len(s) == 4 and s[-2:] == (7, 7)]
    assert pooled and pooled[0][1] == features.shape[1]   # RoI Align keeps the channels
    assert written_shapes(diagrams.faster_rcnn(build("faster_rcnn", width=16), x)) != \
        written_shapes(fig)


def test_mask_rcnn():
    model, x = pretrained.load("mask_rcnn", device="cpu"), scene()
    fig = diagrams.mask_rcnn(model, x)
    check_figure(fig, 11)
    want = expected(model, x, ["backbone", "rpn.head", "rpn", "roi_heads.box_head",
                               "roi_heads.cls_score", "roi_heads.bbox_pred", "roi_heads.mask_head"],
                    inputs=["roi_heads.box_head", "roi_heads.mask_head"])
    assert written_shapes(fig) == want
    masks = [s for s in want if len(s) == 4 and s[-1] == 28]
    assert masks and masks[0][0] > 0                       # the trained model detects objects
    other = build("mask_rcnn", mask_channels=16)
    assert written_shapes(diagrams.mask_rcnn(other, x)) != written_shapes(fig)


def test_yolo():
    model, x = build("yolo"), scene()
    fig = diagrams.yolo(model, x)
    check_figure(fig, 5)
    with torch.no_grad():
        b = model.backbone(x)
        n = model.neck(b)
        h = model.head(n)
    assert written_shapes(fig) == {tuple(x.shape), tuple(b.shape), tuple(n.shape), tuple(h.shape)}
    assert h.shape[-1] == x.shape[-1] // model.stride
    assert written_shapes(diagrams.yolo(build("yolo", width=8), x)) != written_shapes(fig)


def test_ssd():
    model, x = build("ssd"), scene()
    fig = diagrams.ssd(model, x)
    levels = [f"backbone.{n}" for n, _ in model.backbone.named_children()]
    check_figure(fig, 1 + 4 * len(levels))
    heads = [f"{k}.{i}" for k in ("cls_heads", "box_heads") for i in range(len(levels))]
    assert written_shapes(fig) == expected(model, x, levels + heads)
    with torch.no_grad():
        feats = model.backbone(x)
    assert {tuple(f.shape) for f in feats} <= written_shapes(fig)
    assert written_shapes(diagrams.ssd(build("ssd", width=8), x)) != written_shapes(fig)


def test_retinanet():
    model, x = build("retinanet"), scene()
    fig = diagrams.retinanet(model, x)
    levels = [f"backbone.{n}" for n, _ in model.backbone.named_children()]
    check_figure(fig, 1 + len(levels) + 5)
    assert written_shapes(fig) == expected(model, x, levels + ["fpn", "cls_subnet", "box_subnet"])
    with torch.no_grad():
        pyramid = model.fpn(model.backbone(x))
    assert len(pyramid) == len(levels)
    assert all(p.shape[1] == pretrained.record("retinanet")["config"]["fpn_channels"] for p in pyramid)
    assert {tuple(p.shape) for p in pyramid} <= written_shapes(fig)
    assert written_shapes(diagrams.retinanet(build("retinanet", fpn_channels=32), x)) != \
        written_shapes(fig)


def test_detr():
    model, x = build("detr"), scene()
    fig = diagrams.detr(model, x)
    check_figure(fig, 8)
    last = f"encoder.{len(model.encoder) - 1}"
    want = expected(model, x, ["backbone", "input_proj", last, "decoder", "class_embed", "bbox_embed"],
                    extra=[tuple(model.query_embed.weight.shape)])
    assert written_shapes(fig) == want
    with torch.no_grad():
        f = model.input_proj(model.backbone(x))
    B, d, h, w = f.shape
    assert (B, h * w, d) in written_shapes(fig)            # the encoder's tokens
    assert written_shapes(diagrams.detr(build("detr", d_model=32), x)) != written_shapes(fig)


def test_vit():
    model = build("vit")
    x = scene(model.image_size)
    fig = diagrams.vit(model, x)
    check_figure(fig, 7)
    last = f"blocks.{len(model.blocks) - 1}"
    want = expected(model, x, ["stem", "patch_embed", last, "norm", "head"], inputs=["blocks.0"])
    assert written_shapes(fig) == want
    with torch.no_grad():
        tokens = model.tokens(x)
    n_patches = (model.image_size // model.patch_size) ** 2
    assert tokens.shape[1] == n_patches + 1 and tuple(tokens.shape) in written_shapes(fig)
    assert written_shapes(diagrams.vit(build("vit", dim=32), x)) != written_shapes(fig)


def test_bad_model_is_named():
    with pytest.raises(ValueError, match="modules"):
        diagrams.trace_shapes(torch.nn.Linear(2, 2), torch.zeros(1, 2), ["classifier"])


@pytest.mark.parametrize("name", ["fcn", "fcn8s", "unet", "faster_rcnn", "mask_rcnn", "yolo", "ssd",
                                  "retinanet", "detr", "vit", "rcnn_family", "rpn_head"])
def test_default_model_draws_fast(name):
    getattr(diagrams, name)()                               # warm: model built, fonts cached
    t = time.perf_counter()
    fig = getattr(diagrams, name)()
    assert isinstance(fig, Figure) and n_boxes(fig) >= 4
    # not a timing assertion on the chapter's output; a budget for the test suite only
    assert time.perf_counter() - t < 10


def test_rcnn_family():
    from cvcourse.models.rcnn import warp_proposals
    from cvcourse.proposals import propose
    rcnn, faster, x = build("rcnn"), build("faster_rcnn"), scene()
    proposals = propose(x[0])
    fig = diagrams.rcnn_family(rcnn, faster, x, proposals)
    check_figure(fig, 12)
    K = len(proposals)
    with torch.no_grad():
        crops = warp_proposals(x, [proposals], rcnn.crop_size)
        per_crop = rcnn.cnn(crops)
        features = faster.backbone(x)
        pooled = faster.roi_heads.pool(features, [proposals])
    got = hooked(faster, x, ["rpn"], ["roi_heads.box_head"])
    want = {(K, 4), tuple(crops.shape), tuple(per_crop.shape), tuple(features.shape),
            tuple(pooled.shape)} | set(got["rpn"]) | set(got["roi_heads.box_head:in"])
    assert written_shapes(fig) == want
    assert crops.shape[0] == pooled.shape[0] == K          # R-CNN: K CNN passes; Fast: one
    assert written_shapes(diagrams.rcnn_family(build("rcnn", crop_size=24), faster, x, proposals)) \
        != written_shapes(fig)


def test_rpn_head():
    model, x = build("faster_rcnn"), scene()
    fig = diagrams.rpn_head(model, x)
    check_figure(fig, 5)
    with torch.no_grad():
        features = model.backbone(x)
        t = model.rpn.head.conv(features)
        objectness, deltas = model.rpn.head(features)
    assert written_shapes(fig) == {tuple(features.shape), tuple(t.shape), tuple(objectness.shape),
                                   tuple(deltas.shape)}
    config = pretrained.record("faster_rcnn")["config"]
    assert objectness.shape[1] == len(config["anchor_sizes"]) * len(config["aspect_ratios"])
    assert written_shapes(diagrams.rpn_head(build("faster_rcnn", anchor_sizes=[16, 32]), x)) != \
        written_shapes(fig)


def test_drawing_leaves_the_random_stream_alone():
    torch.manual_seed(123)
    a = torch.rand(3)
    torch.manual_seed(123)
    diagrams.yolo()
    assert torch.equal(torch.rand(3), a)


# ------------------------------------------------------------------ alt text into the book
def test_a_diagram_shows_its_alt_text_as_plain_text():
    """Jupyter stores a displayed diagram as its PNG (drawn by the inline backend's printer for
    Figure, which a Diagram still gets) beside a text/plain that is the alt text."""
    from IPython.core.formatters import DisplayFormatter

    formatter = DisplayFormatter()
    formatter.formatters["image/png"].for_type(Figure, lambda fig: b"PNG")   # as %matplotlib inline
    fig = diagrams.yolo()
    data, _ = formatter.format(fig)
    assert data["image/png"] == b"PNG"
    assert data["text/plain"] == diagrams.alt_text(fig) and data["text/plain"].startswith("Diagram: YOLO")
    plain, _ = formatter.format(Figure())                   # other figures keep matplotlib's repr
    assert plain["text/plain"].startswith("<Figure size")


def test_every_diagram_cell_ends_with_the_diagram():
    """So that the cell's output is the diagram itself (the PNG and its alt text)."""
    cells = {}
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and re.search(r"\bdiagrams\.\w+\(", source):
                cells[path.stem] = source.strip().splitlines()[-1]
    assert len(cells) >= 11, cells
    for chapter, last in cells.items():
        assert re.fullmatch(r"diagrams\.\w+\(\)", last), f"{chapter}: the diagram cell ends with {last!r}"


def _sphinx_ext():
    spec = importlib.util.spec_from_file_location("cvcourse_sphinx", ROOT / "book/_ext/cvcourse_sphinx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _output(*mime_types_and_nodes):
    """A cell output as myst-nb parses it: one container per mime type in a mime bundle."""
    from docutils import nodes
    bundle = nodes.container(nb_element="mime_bundle")
    for mime_type, node in mime_types_and_nodes:
        bundle += nodes.container("", node, mime_type=mime_type)
    return bundle


def test_the_book_writes_the_plain_text_into_the_image_alt():
    from docutils import nodes
    from docutils.utils import new_document
    alt = diagrams.alt_text(diagrams.yolo())
    doc = new_document("page")
    diagram = nodes.image(uri="a.png")
    plot = nodes.image(uri="b.png")
    described = nodes.image(uri="c.png", alt="given")
    doc += _output(("image/png", diagram), ("text/plain", nodes.literal_block(alt, alt)))
    doc += _output(("image/png", plot), ("text/plain", nodes.literal_block("", "<Figure size 800x300 with 1 Axes>")))
    doc += _output(("image/png", described), ("text/plain", nodes.literal_block("", "other")))
    _sphinx_ext().image_alt_from_text(None, doc)
    assert diagram["alt"] == alt
    assert "alt" not in plot                                   # a default repr is no description
    assert described["alt"] == "given"
