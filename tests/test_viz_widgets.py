import io
import statistics

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from cvcourse import viz
from cvcourse.data import CLASSES, make_scene
from cvcourse.widgets import time_figure
from cvcourse.widgets.tasks import TASKS, output_shapes, task_outputs, tasks_figure, tasks_widget


@pytest.fixture(scope="module")
def scene():
    return make_scene(0, split="val")


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    return buf.getvalue()


def test_drawing_functions_return_figures(scene):
    figs = [
        viz.show_image(scene["image"]),
        viz.show_semantic(scene["semantic"], CLASSES),
        viz.draw_boxes(scene["image"], scene["boxes"], scene["labels"], scores=torch.rand(len(scene["boxes"])),
                       class_names=CLASSES),
        viz.overlay_masks(scene["image"], scene["masks"]),
        viz.overlay_heatmap(scene["image"], torch.rand(8, 8)),
        viz.image_grid([scene["image"]] * 3, titles=["a", "b", "c"]),
    ]
    for fig in figs:
        assert isinstance(fig, Figure) and _png(fig)[:4] == b"\x89PNG"


def test_draw_boxes_draws_one_rectangle_per_box(scene):
    fig = viz.draw_boxes(scene["image"], scene["boxes"], scene["labels"], class_names=CLASSES)
    assert len(fig.axes[0].patches) == len(scene["boxes"])


def test_overlay_masks_colours_exactly_the_mask_pixels(scene):
    fig = viz.overlay_masks(scene["image"], scene["masks"][:1], alpha=1.0, outline=False)
    shown = fig.axes[0].images[0].get_array()
    img = scene["image"].permute(1, 2, 0).numpy()
    changed = (abs(shown - img).sum(-1) > 1e-6)
    assert (torch.from_numpy(changed) == scene["masks"][0]).float().mean() > 0.99


def test_viz_rejects_bad_input(scene):
    with pytest.raises(ValueError, match="labels"):
        viz.draw_boxes(scene["image"], scene["boxes"], labels=[1])
    with pytest.raises(ValueError, match="masks"):
        viz.overlay_masks(scene["image"], torch.zeros(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="heatmap"):
        viz.overlay_heatmap(scene["image"], torch.zeros(3))
    with pytest.raises(ValueError, match="semantic"):
        viz.show_semantic(torch.zeros(3), CLASSES)
    with pytest.raises(ValueError, match="images"):
        viz.image_grid([])


def test_task_outputs_shapes_and_classification_label(scene):
    out = task_outputs(scene)
    n = len(scene["labels"])
    assert output_shapes(scene)["object detection"] == f"boxes [{n}, 4], labels [{n}]"
    areas = {int(lab): 0 for lab in scene["labels"]}
    for m, lab in zip(scene["masks"], scene["labels"]):
        areas[int(lab)] += int(m.sum())
    assert out["classification"]["label"] == max(areas, key=areas.get)


def test_tasks_figure_and_its_validation():
    assert len(tasks_figure(1).axes) == 5
    assert len(tasks_figure(1, task=TASKS[2]).axes) == 2
    with pytest.raises(ValueError, match="task"):
        tasks_figure(1, task="depth")


def test_tasks_widget_redraws_and_is_fast():
    w = tasks_widget()
    assert set(w.controls) == {"index", "task", "split"}
    w.controls["index"].value = 7
    assert w.last_seconds is not None
    times = time_figure(tasks_figure, [{"index": i, "task": t} for i in range(3) for t in ("all", TASKS[1])])
    assert statistics.median(times) < 1.0  # the benchmark reports the real figure; this catches blow-ups


def test_widget_shows_the_png_render_png_makes(monkeypatch):
    """Each redraw displays one PNG image: the figure rendered by render_png at WIDGET_DPI."""
    from IPython.display import Image as IPythonImage
    from PIL import Image

    from cvcourse.widgets import WIDGET_DPI, render_png

    fig = tasks_figure(2, task=TASKS[0])
    png = render_png(fig)
    w, h = fig.get_size_inches() * WIDGET_DPI
    assert Image.open(io.BytesIO(png)).size == (round(w), round(h))
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)  # the output area's display
    widget = tasks_widget()
    widget.controls["task"].value = TASKS[0]
    widget.controls["index"].value = 2
    assert all(isinstance(s, IPythonImage) and s.format == "png" for s in shown)
    assert shown[-1].data == png


def test_to_numpy_image_reads_tensors_channels_first_even_when_tiny():
    rgb = torch.tensor([0.1, 0.5, 0.9]).reshape(3, 1, 1)      # a 1x1 RGB image
    np.testing.assert_allclose(viz.to_numpy_image(rgb), [[[0.1, 0.5, 0.9]]], rtol=1e-6)
    hwc = np.zeros((4, 5, 3))                                 # arrays keep their layout
    assert viz.to_numpy_image(hwc).shape == (4, 5, 3)
    assert viz.to_numpy_image(torch.zeros(3, 4, 5)).shape == (4, 5, 3)
    assert viz.to_numpy_image(torch.zeros(4, 5)).shape == (4, 5)


def test_mask_edges_are_the_pixels_with_an_outside_neighbour():
    mask = np.zeros((6, 7), dtype=bool)
    mask[1:5, 2:6] = True                     # a 4 x 4 square: 12 edge pixels, 4 inside
    edges = viz.mask_edges(mask)
    assert edges.sum() == 12 and not edges[2:4, 3:5].any() and (edges <= mask).all()
    full = np.ones((3, 3), dtype=bool)        # the image border counts as outside
    assert viz.mask_edges(full).sum() == 8


def test_image_row_places_square_panels_side_by_side():
    fig, axes = viz.image_row(3, size=2.0, title_lines=2)
    w, h = fig.get_size_inches()
    boxes = [ax.get_position() for ax in axes]
    for b in boxes:
        assert b.x0 >= 0 and b.x1 <= 1 and b.y0 >= 0 and b.y1 <= 1
        assert b.width * w == pytest.approx(2.0) and b.height * h == pytest.approx(2.0)
        assert (1 - b.y1) * h >= 2 * 0.16                        # room for two title lines
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))
    with pytest.raises(ValueError, match="n must be at least 1"):
        viz.image_row(0)
