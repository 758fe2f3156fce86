"""The course's performance report, measured in one run on one machine.

    python benchmarks/run.py [--skip-notebooks] [--repeat 5]

Writes ``benchmarks/results.md`` and the README's performance and checkpoint sections:
scene generation speed, our ops against torchvision's compiled kernels, widget callback
latency, inference images/s of every shipped checkpoint, and each notebook's execution
time with the total. Numbers are medians of repeats; ratios compare runs made minutes
apart in the same process, because this kind of machine is noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

Row = tuple  # (what, value, unit, note)


def median_seconds(fn: Callable, repeat: int, warmup: int = 1, sync: Callable | None = None) -> float:
    """Median wall time of `repeat` calls of `fn` after `warmup` untimed ones: the package's
    `cvcourse.timing.median_time` (the timer the chapters use), as plain seconds."""
    from cvcourse.timing import median_time

    return median_time(fn, repeats=repeat, warmup=warmup, sync=sync).median


def bench_data(repeat: int) -> list[Row]:
    from cvcourse.data import make_scene

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = []
        for size in (128, 64):
            start = [0]

            def gen(start=start, size=size):
                # fresh indices every run, so nothing is cached
                for i in range(start[0], start[0] + 1000):
                    make_scene(i, split="train", size=size)
                start[0] += 1000

            s = median_seconds(gen, repeat=max(3, repeat // 2), warmup=0)
            rows.append((f"generate 1,000 scenes at {size}×{size} (one core)", f"{s:.2f}", "s",
                         f"{s:.2f} ms per scene"))
        return rows
    finally:
        torch.set_num_threads(threads)


def bench_ops(repeat: int) -> list[Row]:
    import torchvision.ops as tvo

    from cvcourse import ops

    rows = []
    g = torch.Generator().manual_seed(0)

    def boxes(n):
        xy = torch.rand(n, 2, generator=g) * 200
        wh = torch.rand(n, 2, generator=g) * 40 + 2
        return torch.cat([xy, xy + wh], 1)

    for n in (1000, 5000):
        b, s = boxes(n), torch.rand(n, generator=g)
        ours = median_seconds(lambda b=b, s=s: ops.nms(b, s, 0.5), repeat)
        ref = median_seconds(lambda b=b, s=s: tvo.nms(b, s, 0.5), repeat)
        rows.append((f"nms, {n} boxes: ours / torchvision", f"{ours / ref:.1f}", "×",
                     f"{ours * 1e3:.2f} ms vs {ref * 1e3:.2f} ms"))
    b1, b2 = boxes(1000), boxes(1000)
    ours = median_seconds(lambda: ops.box_iou(b1, b2), repeat)
    ref = median_seconds(lambda: tvo.box_iou(b1, b2), repeat)
    rows.append(("box_iou 1000×1000: ours / torchvision", f"{ours / ref:.1f}", "×",
                 f"{ours * 1e3:.2f} ms vs {ref * 1e3:.2f} ms"))
    if hasattr(ops, "conv_transpose2d"):
        x = torch.randn(8, 32, 32, 32, generator=g)
        w = torch.randn(32, 16, 4, 4, generator=g)
        ours = median_seconds(lambda: ops.conv_transpose2d(x, w, stride=2, padding=1), repeat)
        ref = median_seconds(lambda: torch.nn.functional.conv_transpose2d(x, w, stride=2, padding=1), repeat)
        rows.append(("conv_transpose2d [8,32,32,32]→16, k4 s2 p1: ours / torch", f"{ours / ref:.1f}", "×",
                     f"{ours * 1e3:.2f} ms vs {ref * 1e3:.2f} ms"))
    return rows


# Each widget's pure figure function with a few settings a reader would try.
def widget_cases():
    from cvcourse.widgets import anchors, localization, roi, tasks, upsampling

    return {
        "tasks (scene × task)": (tasks.tasks_figure, [{"index": i, "task": t}
                                                      for i in range(4) for t in ("all", *tasks.TASKS)]),
        "transposed convolution explorer (k × stride × position)": (
            upsampling.conv_transpose_figure,
            [{"kernel_size": k, "stride": s, "padding": p, "step": step}
             for k, s, p in ((3, 2, 0), (4, 2, 1), (5, 3, 1)) for step in (1, 5, 9)]),
        "upsampling comparison (factor × input)": (
            upsampling.upsampling_figure, [{"scale": s, "seed": i} for s in (2, 3, 4) for i in range(3)]),
        "sliding windows (scene × size × ratio × stride)": (
            localization.windows_figure,
            [{"index": i, "size": s, "ratio": r, "stride": st} for i, (s, r, st) in enumerate(
                ((32, 1.0, 8), (16, 0.5, 4), (48, 2.0, 2), (96, 1.0, 16), (24, 1.0, 8), (64, 0.5, 8),
                 (8, 1.0, 2), (40, 2.0, 4)))]),
        "anchor explorer (scene × sizes × ratios × cell × IoU thresholds)": (
            anchors.anchor_figure,
            [{"scene": i, "sizes": s, "ratios": r, "row": row, "col": col, "high": hi, "low": lo}
             for i, (s, r, row, col, hi, lo) in enumerate((
                 ((16, 32, 64), (0.5, 1.0, 2.0), 7, 10, 0.7, 0.3), ((32,), (1 / 3, 1.0, 3.0), 2, 3, 0.5, 0.4),
                 ((8, 16), (1.0,), 0, 15, 0.7, 0.3), ((24, 48, 96), (0.5, 1.0, 2.0), 7, 10, 0.3, 0.3),
                 ((16, 32, 64), (0.5, 1.0, 2.0), 10, 4, 0.6, 0.2), ((24, 48, 96), (1.0,), 12, 12, 0.7, 0.3),
                 ((32,), (0.5, 1.0, 2.0), 5, 8, 0.9, 0.05)))]),
        "RoI Pool vs RoI Align (box × output size × samples × stride)": (
            roi.roi_figure,
            [{}, {"output_size": 7, "sampling_ratio": 0, "aligned": False, "stride": 16},
             {"x": 50, "y": 50, "width": 3, "height": 2, "output_size": 3, "sampling_ratio": 1},
             {"x": 120, "y": 0, "width": 60, "height": 127, "stride": 4, "output_size": 5},
             {"width": 0, "height": 0},
             {"x": 10, "y": 20, "width": 50, "height": 30, "output_size": 3, "stride": 4, "sampling_ratio": 4},
             {"x": 30, "y": 70, "width": 90, "height": 40, "output_size": 7, "aligned": False},
             {"x": 0, "y": 0, "width": 127, "height": 127, "output_size": 4, "sampling_ratio": 0, "stride": 16}]),
        **checkpoint_widget_cases(),
    }


def checkpoint_widget_cases():
    """Widgets over shipped checkpoints, each left out when a checkpoint it needs is not
    installed. What a widget computes once (model outputs, attentions) is computed here, or
    by the figure function's own cache in `bench_widgets`' warm-up call, never in a timed one."""
    from cvcourse import pretrained
    from cvcourse.widgets import detection, detr, instance, interpret, segmentation, single_stage, vit

    have, cases = set(pretrained.available()), {}
    if {"unet", "unet_noskip"} <= have:
        cases["segmentation prediction browser (U-Net vs no skips)"] = (
            segmentation.prediction_figure, [{"index": i} for i in range(12)])
    if "faster_rcnn" in have:
        cases["detection explorer (scene × score threshold × NMS IoU)"] = (
            detection.detection_steps_figure,
            [{"index": i, "score_thresh": s, "nms_thresh": t}
             for i in range(4) for s, t in ((0.05, 0.5), (0.5, 0.3), (0.8, 1.0))])
    if "faster_rcnn" in have:
        from cvcourse.widgets import evaluation

        cases["PR curve and AP vs IoU threshold (Faster R-CNN, 200 scenes)"] = (
            evaluation.pr_curve_figure, [{"iou_threshold": float(t)} for t in evaluation.IOU_GRID])
    if "mask_rcnn" in have:
        cases["Mask R-CNN mask browser (scene × mask threshold × score threshold)"] = (
            instance.instance_browser_figure,
            [{"index": i, "threshold": t, "score_thresh": s} for i, (t, s) in enumerate(
                ((0.5, 0.5), (0.3, 0.5), (0.7, 0.5), (0.5, 0.05), (0.5, 0.9), (0.1, 0.3), (0.9, 0.7),
                 (0.5, 0.5)))])
    if "classifier" in have:  # a new setting computes its map, as in the widget (scenes cached)
        cases["explanation explorer (scene × target × method × layer)"] = (
            interpret.explanation_figure,
            [{"scene": i, "target": t, "method": m, "layer": "features.7"}
             for i, t in ((0, "square"), (1, "circle")) for m in interpret.EXPLORER_METHODS]
            + [{"scene": 2, "target": "triangle", "method": "Grad-CAM", "layer": layer}
               for layer in ("features.3", "features.4")])
    if {"yolo", "retinanet_bce"} & have:
        from cvcourse.data.scenes import held_out_scenes

        images, targets = held_out_scenes("test", 24)  # the chapters' widgets show these scenes
    if "yolo" in have:
        from cvcourse.models.yolo import responsible_cells

        grids = single_stage.grid_outputs(pretrained.load("yolo", device="cpu"), images)
        s = grids[0]["confidence"].shape[0]
        cells = [(i, *responsible_cells(targets[i]["boxes"], s, images.shape[-1])[0].tolist()) for i in range(6)]
        cases["grid explorer (scene × cell)"] = (
            single_stage.grid_figure,
            [{"image": images[i], "target": targets[i], "grid": grids[i], "row": r, "col": c}
             for i, r, c in cells + [(0, 0, 0), (7, s // 2, s - 1)]])
    if "retinanet_bce" in have:
        probs, y = single_stage.anchor_probabilities(pretrained.load("retinanet_bce", device="cpu"),
                                                     images[:20], targets[:20])
        cases["focal loss explorer (γ × α, RetinaNet-BCE anchors)"] = (
            single_stage.focal_loss_figure,
            [{"gamma": g, "alpha": a, "probs": probs, "targets": y}
             for g, a in ((0, 0.5), (0.5, 0.25), (1, 0.25), (2, 0.25), (2, 0.5), (3, 0.75), (5, 0.25), (5, 0.9))])
    if "detr" in have:
        data = detr.held_out_query_data("detr", split="val", n=100)
        q, n = data["prob"].shape[1], len(data["images"])
        cases["DETR query explorer (query × scene)"] = (
            detr.query_explorer_figure, [{"query": i % q, "scene": 13 * i % n, "data": data} for i in range(8)])
    if "vit" in have:
        from cvcourse.interpret import attention_maps, pointing_game_scenes

        scenes, _, masks = pointing_game_scenes(24, split="test")  # the chapter's explorer shows 24
        attn = attention_maps(pretrained.load("vit", device="cpu"), scenes)
        L = attn.shape[0]
        cases["ViT attention explorer (image × layer × head × CLS attention vs rollout)"] = (
            vit.vit_attention_figure,
            [{"images": scenes, "attentions": attn, "masks": masks, "index": i, "layer": i % L, "head": h,
              "view": v}
             for i, (h, v) in enumerate((("mean", "rollout"), (0, "CLS attention"), ("max", "rollout"),
                                         (1, "CLS attention"), (2, "rollout"), ("max", "CLS attention"),
                                         (3, "rollout"), ("mean", "CLS attention")))])
    return cases


def bench_widgets(repeat: int) -> list[Row]:
    from cvcourse.widgets import WIDGET_DPI, time_figure

    rows = []
    for name, (fn, settings) in widget_cases().items():
        time_figure(fn, settings[:1])  # warm-up: imports, font cache, the figure's own caches
        times = time_figure(fn, settings)
        rows.append((f"widget callback: {name}", f"{1e3 * statistics.median(times):.0f}", "ms",
                     f"median of {len(times)} redraws (slowest {1e3 * max(times):.0f} ms), figure + PNG at "
                     f"{WIDGET_DPI} dpi; bar ≤ 150 ms"))
    return rows


def static_widget_builders() -> dict:
    """``{page: [(widget name, function that builds it)]}``: every widget of the book, built as
    its chapter builds it (checkpoint widgets left out when their checkpoint is not installed)."""
    from cvcourse import pretrained
    from cvcourse.widgets import (
        anchors,
        detection,
        detr,
        evaluation,
        instance,
        interpret,
        localization,
        roi,
        segmentation,
        single_stage,
        tasks,
        upsampling,
        vit,
    )

    pages = {
        "book/tasks": [("tasks", tasks.tasks_widget)],
        "book/seg_upsampling": [("transposed convolution explorer", upsampling.conv_transpose_widget),
                                ("upsampling comparison", upsampling.upsampling_widget)],
        "book/det_many_objects": [("sliding windows", localization.windows_widget)],
        "book/det_rpn": [("anchor explorer", anchors.anchor_widget)],
        "book/det_fast_rcnn": [("RoI Pool vs RoI Align", roi.roi_widget)],
    }
    have = set(pretrained.available())
    if {"unet", "unet_noskip"} <= have:
        pages["book/seg_unet"] = [("segmentation prediction browser", segmentation.prediction_widget)]
    if "faster_rcnn" in have:
        pages["book/det_faster_rcnn"] = [("detection explorer", detection.detection_explorer)]
        pages["book/det_evaluation"] = [("PR curve by IoU threshold", evaluation.pr_curve_widget)]
    if "mask_rcnn" in have:
        pages["book/inst_mask_rcnn"] = [("Mask R-CNN mask browser", lambda: instance.instance_widget(n=60))]
    if "classifier" in have:
        pages["book/int_evaluation"] = [("explanation explorer", interpret.explanation_widget)]
    if {"yolo", "retinanet_bce"} & have:
        from cvcourse.data.scenes import held_out_scenes

        images, targets = held_out_scenes("test", 100)
    if "yolo" in have:
        model = pretrained.load("yolo", device="cpu")
        pages["book/ss_yolo"] = [("grid explorer", lambda: single_stage.grid_widget(model, images[:24], targets[:24]))]
    if "retinanet_bce" in have:
        probs, y = single_stage.anchor_probabilities(pretrained.load("retinanet_bce", device="cpu"),
                                                     images[:20], targets[:20])
        pages["book/ss_retinanet"] = [("focal loss explorer", lambda: single_stage.focal_loss_widget(probs, y))]
    if "detr" in have:
        qdata = detr.held_out_query_data("detr", split="val", n=100)
        pages["book/ss_detr"] = [("DETR query explorer", lambda: detr.query_explorer(data=qdata))]
    if "vit" in have:
        from cvcourse.interpret import attention_maps, pointing_game_scenes

        scenes, _, masks = pointing_game_scenes(24, split="test")
        attn = attention_maps(pretrained.load("vit", device="cpu"), scenes)
        pages["book/int_vit"] = [("ViT attention explorer", lambda: vit.vit_attention_widget(scenes, attn, masks))]
    return pages


def bench_static_widgets(repeat: int) -> list[Row]:
    """Every widget's static version, rendered as the book build renders it: frames, time, size.
    Each widget is first built live (its first figure fills the caches its chapter fills before
    showing it), so the time is what the frames add to the build."""
    import contextlib
    import io
    import os
    import tempfile

    from cvcourse.widgets.static import FRAMES_ENV, URL_ENV

    rows, total_s, total_b, first_frames = [], 0.0, 0, {}
    with tempfile.TemporaryDirectory() as tmp:
        for page, widgets in static_widget_builders().items():
            folder = Path(tmp) / "_widgets" / page
            for name, build in widgets:
                os.environ.pop(FRAMES_ENV, None)
                with contextlib.redirect_stdout(io.StringIO()):  # outside Jupyter the live figure prints
                    build()  # live: warms the caches
                os.environ[FRAMES_ENV], os.environ[URL_ENV] = str(folder), f"../_widgets/{page}/"
                try:
                    w = build()
                finally:
                    os.environ.pop(FRAMES_ENV, None)
                    os.environ.pop(URL_ENV, None)
                f = w.frames
                grid = " × ".join(f"{a.name} {len(a.values)}" for a in w.axes if a.enabled)
                held = ", ".join(a.name for a in w.axes if not a.enabled) or "none"
                first = (folder / f["files"][w.initial_index()]).stat().st_size
                first_frames[page] = first_frames.get(page, 0) + first
                total_s, total_b = total_s + f["seconds"], total_b + f["bytes"]
                rows.append((f"static widget: {name} ({page})", f"{len(f['files'])}", "frames",
                             f"{f['seconds']:.1f} s to render, {f['bytes'] / 1e6:.1f} MB; grid {grid}; held: {held}"))
    rows.append(("static widgets: rendering time, all frames", f"{total_s:.0f}", "s",
                 f"{sum(int(r[1]) for r in rows)} frames, one process; bar ≤ 120 s"))
    rows.append(("static widgets: size of all frames", f"{total_b / 1e6:.1f}", "MB", "PNG files beside the pages"))
    page, most = max(first_frames.items(), key=lambda kv: kv[1])
    rows.append(("static widgets: a page's initial load, largest", f"{most / 1e3:.0f}", "kB",
                 f"{page}: only each widget's first frame is loaded with the page; bar ≤ 1 MB"))
    site = ROOT / "_build" / "html"
    if site.exists():
        size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
        rows.append(("book site size (_build/html)", f"{size / 1e6:.0f}", "MB", "bar ≤ 150 MB"))
    return rows


def _detectors() -> list[str]:
    """Shipped box detectors (scored by mAP) and the localizer: `bench_detection` times them."""
    from cvcourse import pretrained, recipes

    return [n for n in pretrained.available()
            if "map_50" in pretrained.record(n)["metrics"]
            or recipes.get(n).evaluate.__module__ == "cvcourse.recipes.detection"]


def bench_models(repeat: int) -> list[Row]:
    """The other checkpoints (classifiers, segmenters, Mask R-CNN): inference at batch 32."""
    from cvcourse import pretrained, recipes

    rows, detectors = [], set(_detectors())
    for name in pretrained.available():
        if name in detectors:
            continue
        model = pretrained.load(name, device="cpu")
        ds = recipes.get(name).train_data()
        batch = torch.stack([ds[i][0] for i in range(32)])
        with torch.no_grad():
            s = median_seconds(lambda model=model, batch=batch: model(batch), repeat)
        rows.append((f"{name}: inference, batch 32", f"{32 / s:.0f}", "images/s", f"{tuple(batch.shape[1:])}"))
    return rows


def bench_detection(repeat: int) -> list[Row]:
    """Detectors: held-out accuracy from the manifest, inference speed measured here; our
    Faster R-CNN against torchvision's FasterRCNN class with the same backbone, data and budget."""
    from cvcourse import pretrained, recipes

    shipped = _detectors()
    speed, rows = {}, []
    for name in shipped:  # batch 32 of the recipe's scenes, all models in this one run
        model = pretrained.load(name, device="cpu")
        ds = recipes.get(name).train_data()
        batch = torch.stack([ds[i][0] for i in range(32)])
        with torch.no_grad():
            if name == "rcnn":  # its forward takes warped crops; time whole images, search included
                speed[name] = 4 / median_seconds(lambda model=model, batch=batch: model.predict(batch[:4]), 3)
            else:
                speed[name] = 32 / median_seconds(lambda model=model, batch=batch: model(batch), max(3, repeat // 2))
    ours, peer = "faster_rcnn", "faster_rcnn_torchvision"
    if ours in speed and peer in speed:
        a, b = pretrained.record(ours), pretrained.record(peer)
        what = f"Faster R-CNN, ours vs torchvision's FasterRCNN (same backbone, data, {a['steps']} steps)"
        gap = a["metrics"]["map_50"] - b["metrics"]["map_50"]
        rows += [
            (f"{what}: mAP@0.5", f"{a['metrics']['map_50']:.3f} / {b['metrics']['map_50']:.3f}", "ours / peer",
             f"difference {gap:+.3f}; bar: ours ≥ peer − 0.05" + ("" if gap >= -0.05 else " — MISSED")),
            (f"{what}: COCO mAP", f"{a['metrics']['map']:.3f} / {b['metrics']['map']:.3f}", "ours / peer",
             f"difference {a['metrics']['map'] - b['metrics']['map']:+.3f}"),
            (f"{what}: training time", f"{a['train_seconds'] / 60:.1f} / {b['train_seconds'] / 60:.1f}",
             "min, ours / peer",
             f"{a['train_seconds'] / a['steps']:.2f} vs {b['train_seconds'] / b['steps']:.2f} s/step "
             f"(manifest; shared CPU, load {a['load_average']} vs {b['load_average']})"),
            (f"{what}: inference, batch 32", f"{speed[ours]:.0f} / {speed[peer]:.0f}", "images/s, ours / peer",
             f"measured in this run; ratio {speed[ours] / speed[peer]:.2f}"),
        ]
    for name in shipped:
        m = pretrained.record(name)["metrics"]
        acc = ", ".join(f"{k} {v:.3f}" for k, v in m.items())
        what = "4 images, selective search included" if name == "rcnn" else "batch 32"
        rows.append((f"detector {name}: inference, {what}", f"{speed[name]:.1f}" if speed[name] < 10
                     else f"{speed[name]:.0f}", "images/s",
                     f"held-out {acc} (manifest)"))
    return rows


def bench_notebooks(repeat: int) -> list[Row]:
    import nbclient
    import nbformat

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    from cvcourse_sphinx import wake_up_client

    wake_up_client()  # as in the book build: no cell waits out its timeout after a widget
    rows, total = [], 0.0
    for path in sorted((ROOT / "book").rglob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        t = time.perf_counter()
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        s = time.perf_counter() - t
        total += s
        verdict = "bar ≤ 90 s" + (" — OVER" if s > 90 else "")
        rows.append((f"notebook {path.relative_to(ROOT)}", f"{s:.1f}", "s", verdict))
    rows.append(("all notebooks", f"{total:.1f}", "s", "bar ≤ 600 s" + (" — OVER" if total > 600 else "")))
    return rows


def bench_gpu(repeat: int) -> list[Row]:
    """GPU rows: stored from a run of benchmarks/gpu.py on a GPU machine (this CPU machine has
    none); each row names the hardware and date it was measured on."""
    from cvcourse.tradeoffs import gpu_measurements

    gpu = gpu_measurements()
    where = f"stored: {gpu['hardware']}, {gpu['date']}, fp32"
    rows = []
    for name, r in gpu["rows"].items():
        rows.append((f"{name} on GPU: inference, batch 32", f"{r['inference_images_per_s']:,.0f}", "images/s", where))
        rows.append((f"{name} on GPU: one training step, batch {r['train_batch']}", f"{r['train_step_ms']:.1f}", "ms",
                     where + ("; " + r["note"] if "note" in r else "")))
    return rows


SECTIONS = {"data": bench_data, "ops": bench_ops, "widgets": bench_widgets,
            "static_widgets": bench_static_widgets, "models": bench_models,
            "detection": bench_detection, "gpu": bench_gpu, "notebooks": bench_notebooks}


def table(rows: list[Row]) -> str:
    out = ["| measurement | value | unit | note |", "|---|---:|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)


def checkpoint_table() -> str:
    from cvcourse import pretrained

    out = ["| checkpoint | held-out metrics | bar | steps | training time | hardware | size |",
           "|---|---|---|---:|---:|---|---:|"]
    for name in pretrained.available():
        r = pretrained.record(name)
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in r["metrics"].items())
        bar = ", ".join(f"{k} ≥ {v}" for k, v in r["bar"].items())
        out.append(f"| `{name}` | {metrics} | {bar} | {r['steps']} | {r['train_seconds'] / 60:.1f} min | "
                   f"{r['hardware']} | {r['bytes'] / 1024:.0f} KB |")
    return "\n".join(out)


def replace_between(text: str, tag: str, body: str) -> str:
    pat = re.compile(rf"(<!-- {tag}:start -->\n).*?(<!-- {tag}:end -->)", re.S)
    if not pat.search(text):
        raise ValueError(f"README has no <!-- {tag}:start/end --> markers")
    return pat.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main(argv=None) -> int:
    from cvcourse import device

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--skip-notebooks", action="store_true")
    p.add_argument("--only", nargs="*", choices=list(SECTIONS), help="run only these sections")
    a = p.parse_args(argv)
    chosen = a.only or [s for s in SECTIONS if not (a.skip_notebooks and s == "notebooks")]
    rows = []
    for name in chosen:
        print(f"[benchmark] {name} ...", flush=True)
        rows += SECTIONS[name](a.repeat)
    import matplotlib

    header = (f"Measured {dt.date.today().isoformat()} on {device.describe('cpu')}, torch {torch.__version__}, "
              f"matplotlib {matplotlib.__version__}"
              + (f"; CUDA: {device.describe('cuda')}" if torch.cuda.is_available() else "; no GPU") + ".")
    body = header + "\n\n" + table(rows)
    (ROOT / "benchmarks" / "results.md").write_text("# Benchmark results\n\n" + body + "\n")
    readme = ROOT / "README.md"
    text = replace_between(readme.read_text(), "benchmarks", body)
    text = replace_between(text, "checkpoints", checkpoint_table())
    readme.write_text(text)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
