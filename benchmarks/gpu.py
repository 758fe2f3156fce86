"""Time the shipped checkpoints on a GPU: inference (batch 32) and one training step.

Run on a machine with CUDA (the numbers in ``cvcourse/weights/detector_speed_gpu.json``
came from a lent H200)::

    python benchmarks/gpu.py                       # every shipped checkpoint
    python benchmarks/gpu.py yolo ssd --out t.json # some, elsewhere

fp32; inference on a batch of 32 of the recipe's training scenes, median of 20 passes
after 3 warm-ups with CUDA synchronised; one AdamW step on the recipe's batch, median of
10. One model at a time. The trade-offs chapter plots the result next to its CPU run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import median_seconds  # noqa: E402  (run.py puts the repository on sys.path)

from cvcourse import device as devices  # noqa: E402
from cvcourse import pretrained, recipes
from cvcourse.tradeoffs import GPU_FILE  # noqa: E402
from cvcourse.train import to_device  # noqa: E402


def time_checkpoint(name: str, device) -> dict:
    recipe = recipes.get(name)
    model = pretrained.load(name, device=device)
    data = recipe.train_data()
    items = [data[i] for i in range(32)]
    images = torch.stack([it[0] for it in items]).to(device)
    sync = lambda: torch.cuda.synchronize(device)  # noqa: E731
    with torch.no_grad():
        inference = median_seconds(lambda: model(images), 20, warmup=3, sync=sync)
    batch = to_device((recipe.collate_fn or torch.utils.data.default_collate)(items[:recipe.batch_size]), device)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)

    def step():
        out = recipe.loss(model, batch)
        total = sum(out.values()) if isinstance(out, dict) else out
        opt.zero_grad()
        total.backward()
        opt.step()

    train_step = median_seconds(step, 10, warmup=3, sync=sync)
    return {"inference_images_per_s": round(32 / inference, 1), "inference_ms_batch32": round(inference * 1e3, 2),
            "train_step_ms": round(train_step * 1e3, 2), "train_batch": recipe.batch_size}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help="checkpoints (default: all shipped)")
    p.add_argument("--out", default=str(GPU_FILE))
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        p.error("no CUDA device here: this benchmark needs a GPU")
    device = devices.pick("cuda")
    rows = {}
    for name in a.names or pretrained.available():
        rows[name] = time_checkpoint(name, device)
        print(name, rows[name], flush=True)
    out = {"hardware": devices.describe(device), "torch": torch.__version__, "date": dt.date.today().isoformat(),
           "method": "benchmarks/gpu.py: " + __doc__.split("\n\n")[3].replace("\n", " ").strip(), "rows": rows}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
