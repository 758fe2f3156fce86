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


def median_seconds(fn: Callable, repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_data(repeat: int) -> list[Row]:
    from cvcourse.data import make_scene

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = []
        for size in (128, 64):
            start = [0]

            def gen():
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
        ours = median_seconds(lambda: ops.nms(b, s, 0.5), repeat)
        ref = median_seconds(lambda: tvo.nms(b, s, 0.5), repeat)
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
    from cvcourse.widgets import segmentation, tasks, upsampling

    return {
        "tasks (scene × task)": (tasks.tasks_figure, [{"index": i, "task": t}
                                                      for i in range(4) for t in ("all", *tasks.TASKS)]),
        "transposed convolution explorer (k × stride × position)": (
            upsampling.conv_transpose_figure,
            [{"kernel_size": k, "stride": s, "padding": p, "step": step}
             for k, s, p in ((3, 2, 0), (4, 2, 1), (5, 3, 1)) for step in (1, 5, 9)]),
        "upsampling comparison (factor × input)": (
            upsampling.upsampling_figure, [{"scale": s, "seed": i} for s in (2, 3, 4) for i in range(3)]),
        "segmentation prediction browser (U-Net vs no skips)": (
            segmentation.prediction_figure, [{"index": i} for i in range(12)]),
        **detection_widget_cases(),
    }


def detection_widget_cases():
    from cvcourse import pretrained
    from cvcourse.widgets import detection

    if "faster_rcnn" not in pretrained.available():
        return {}
    return {"detection explorer (scene × score threshold × NMS IoU)": (
        detection.detection_steps_figure,
        [{"index": i, "score_thresh": s, "nms_thresh": t}
         for i in range(4) for s, t in ((0.05, 0.5), (0.5, 0.3), (0.8, 1.0))])}


def bench_widgets(repeat: int) -> list[Row]:
    from cvcourse.widgets import time_figure

    rows = []
    for name, (fn, settings) in widget_cases().items():
        time_figure(fn, settings[:1])  # warm-up: imports, font cache
        times = time_figure(fn, settings)
        rows.append((f"widget callback: {name}", f"{1e3 * statistics.median(times):.0f}", "ms",
                     f"median of {len(times)} redraws incl. PNG render; bar ≤ 150 ms"))
    return rows


def bench_models(repeat: int) -> list[Row]:
    from cvcourse import pretrained, recipes

    rows = []
    for name in pretrained.available():
        model = pretrained.load(name, device="cpu")
        ds = recipes.get(name).train_data()
        batch = torch.stack([ds[i][0] for i in range(32)])
        with torch.no_grad():
            s = median_seconds(lambda: model(batch), repeat)
        rows.append((f"{name}: inference, batch 32", f"{32 / s:.0f}", "images/s", f"{tuple(batch.shape[1:])}"))
    return rows


def bench_detection(repeat: int) -> list[Row]:
    """Detectors: held-out accuracy from the manifest, inference speed measured here; our
    Faster R-CNN against torchvision's FasterRCNN class with the same backbone, data and budget."""
    from cvcourse import pretrained, recipes

    shipped = [n for n in pretrained.available()  # box detectors (mAP) and the localizer
               if "map_50" in pretrained.record(n)["metrics"]
               or recipes.get(n).evaluate.__module__ == "cvcourse.recipes.detection"]
    speed, rows = {}, []
    for name in shipped:  # batch 32 of the recipe's scenes, all models in this one run
        model = pretrained.load(name, device="cpu")
        ds = recipes.get(name).train_data()
        batch = torch.stack([ds[i][0] for i in range(32)])
        with torch.no_grad():
            speed[name] = 32 / median_seconds(lambda: model(batch), max(3, repeat // 2))
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
        rows.append((f"detector {name}: inference, batch 32", f"{speed[name]:.0f}", "images/s",
                     f"held-out {acc} (manifest)"))
    return rows


def bench_notebooks(repeat: int) -> list[Row]:
    import nbclient
    import nbformat

    rows, total = [], 0.0
    for path in sorted((ROOT / "book").rglob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        t = time.perf_counter()
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        s = time.perf_counter() - t
        total += s
        rows.append((f"notebook {path.relative_to(ROOT)}", f"{s:.1f}", "s", "bar ≤ 90 s" + (" — OVER" if s > 90 else "")))
    rows.append(("all notebooks", f"{total:.1f}", "s", "bar ≤ 600 s" + (" — OVER" if total > 600 else "")))
    return rows


SECTIONS = {"data": bench_data, "ops": bench_ops, "widgets": bench_widgets, "models": bench_models,
            "detection": bench_detection, "notebooks": bench_notebooks}


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
    header = (f"Measured {dt.date.today().isoformat()} on {device.describe('cpu')}, torch {torch.__version__}"
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
