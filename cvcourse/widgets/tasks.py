"""Chapter "Computer vision tasks": one scene, four kinds of output."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from .. import viz
from ..data import CLASSES, make_scene

TASKS = ("classification", "semantic segmentation", "object detection", "instance segmentation")


def task_outputs(scene: dict) -> dict:
    """The target of each task for one scene, as the tensors a model would output.

    classification: one label for the whole image (here: the class covering most pixels —
    a classifier must pick one even when several objects are present);
    semantic segmentation: ``[H, W]`` class per pixel; object detection: boxes ``[N, 4]`` +
    labels ``[N]``; instance segmentation: masks ``[N, H, W]`` + labels ``[N]``.
    The labels index ``scene["class_names"]`` when the scene has it (a photo), else `CLASSES`.
    """
    areas = torch.zeros(len(scene.get("class_names", CLASSES)), dtype=torch.long)
    areas.index_add_(0, scene["labels"], scene["masks"].flatten(1).sum(1))
    return {
        "classification": {"label": int(areas[1:].argmax()) + 1},
        "semantic segmentation": {"semantic": scene["semantic"]},
        "object detection": {"boxes": scene["boxes"], "labels": scene["labels"]},
        "instance segmentation": {"masks": scene["masks"], "labels": scene["labels"]},
    }


def output_shapes(scene: dict) -> dict[str, str]:
    """Each task's output written as tensor shapes, e.g. ``boxes [3, 4], labels [3]``."""
    out = task_outputs(scene)
    fmt = {"classification": "one label (scores [C] → argmax)"}
    for task in TASKS[1:]:
        fmt[task] = ", ".join(f"{k} {list(v.shape)}" for k, v in out[task].items())
    return fmt


def draw_task(scene: dict, task: str, ax) -> Figure:
    """Draw the ground-truth output of `task` for `scene` into `ax`."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    out, shape = task_outputs(scene), output_shapes(scene)[task]
    class_names = scene.get("class_names", CLASSES)
    title = f"{task}\n{shape}"
    if task == "classification":
        viz.show_image(scene["image"], ax=ax,
                       title=f"{task}: \"{class_names[out[task]['label']]}\"\n{shape}")
    elif task == "semantic segmentation":
        viz.show_semantic(scene["semantic"], class_names, ax=ax, title=title)
    elif task == "object detection":
        viz.draw_boxes(scene["image"], scene["boxes"], scene["labels"], class_names=class_names,
                       ax=ax, title=title)
    else:
        viz.overlay_masks(scene["image"], scene["masks"], ax=ax, title=title)
    return ax.figure


def tasks_figure(index: int = 0, task: str = "all", split: str = "test", size: int = 128) -> Figure:
    """Scene `index` of `split` and the output of one task (or of all four, task="all")."""
    if task != "all" and task not in TASKS:
        raise ValueError(f"task must be 'all' or one of {TASKS}, got {task!r}")
    scene = make_scene(index, split=split, size=size)
    shown = TASKS if task == "all" else (task,)
    fig, axes = viz.image_row(1 + len(shown), size=2.6)
    viz.show_image(scene["image"], ax=axes[0], title=f"{split} scene {index}: image [3, {size}, {size}]")
    for ax, t in zip(axes[1:], shown):
        draw_task(scene, t, ax)
    return fig


def photo_tasks_figure(name: str = "coffee") -> Figure:
    """A real photograph and the four outputs, drawn from its hand-made annotations.

    Args:
        name: a photo of `cvcourse.data.photos` with polygon masks (`photos.has_masks`).
    """
    from ..data import photos

    scene = photos.scene(name)
    h, w = scene["image"].shape[1:]
    fig, axes = viz.image_row(1 + len(TASKS), size=2.8)
    viz.show_image(scene["image"], ax=axes[0], title=f"photo '{name}': image [3, {h}, {w}]")
    for ax, t in zip(axes[1:], TASKS):
        draw_task(scene, t, ax)
    return fig


def tasks_widget(split: str = "test", n_scenes: int = 200):
    """Pick a scene and a task; shows `tasks_figure`."""
    import ipywidgets as W

    from . import interactive_figure
    from .static import evenly

    return interactive_figure(tasks_figure, {
        "index": W.IntSlider(value=0, min=0, max=n_scenes - 1, description="scene"),
        "task": W.Dropdown(options=["all", *TASKS], value="all", description="task"),
        "split": W.fixed(split),
    }, grid={"index": evenly(range(n_scenes), 6), "task": ["all", *TASKS]})
