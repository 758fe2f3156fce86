"""One training loop for every model in the course, and the command that makes checkpoints.

`fit` is deliberately small: it samples batches, calls a loss function you give it, and
steps an optimizer. Every chapter uses it, from the U-Net to DETR, so a student reads one
loop once. A loss function takes ``(model, batch)`` and returns either a scalar tensor or a
dict of named scalar losses (summed for the backward pass, logged separately) — the same
convention as torchvision's detection models.

Reproduce a shipped checkpoint with::

    python -m cvcourse.train NAME                    # writes runs/NAME-<UTC time>/, ships nothing
    python -m cvcourse.train NAME --steps 20 --out /tmp/ckpt   # a quick run in a folder you name
    python -m cvcourse.train NAME --replace-shipped  # replaces cvcourse/weights/NAME.pt + manifest
                                                     # entry, only if the new one meets the bar

The same commands run data-parallel under ``torchrun`` (appendix "Training at scale"): the
recipe's batch size is then the global batch, split evenly across the processes::

    torchrun --standalone --nproc_per_node=4 -m cvcourse.train NAME --out /tmp/ckpt
    python -m cvcourse.train faster_rcnn --data voc:/data/voc --out /tmp/voc   # real data
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import device as devices
from . import distributed as _dist

LossFn = Callable[[nn.Module, object], "torch.Tensor | Mapping[str, torch.Tensor]"]


@dataclass
class History:
    """What `fit` measured: the loss after each step and how long it took."""

    loss: list[float] = field(default_factory=list)          # total loss per step
    parts: dict[str, list[float]] = field(default_factory=dict)  # each named loss per step
    seconds: float = 0.0
    steps: int = 0
    device: str = "cpu"
    world_size: int = 1       # processes that trained together (torchrun)
    batch_per_rank: int = 0   # samples each process drew per step (global batch / world_size)

    def smoothed(self, window: int = 20) -> list[float]:
        """Running mean of the total loss over `window` steps (for plots and checks)."""
        out, acc = [], 0.0
        for i, v in enumerate(self.loss):
            acc += v
            if i >= window:
                acc -= self.loss[i - window]
            out.append(acc / min(i + 1, window))
        return out


def to_device(batch, device: torch.device):
    """Move tensors nested in tuples, lists and dicts to `device` (other values unchanged)."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _batches(loader: DataLoader) -> Iterator:
    while True:  # cycle over epochs until fit has taken its steps
        yield from loader


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def fit(
    model: nn.Module,
    data: Dataset | DataLoader,
    loss_fn: LossFn,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    schedule: str = "cosine",
    warmup: int = 0,
    grad_clip: float | None = None,
    collate_fn: Callable | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    seed: int = 0,
    progress: bool = True,
    params: Sequence[nn.Parameter] | None = None,
) -> History:
    """Train `model` for `steps` optimizer steps with AdamW and return the loss history.

    Args:
        model: the network; it is moved to `device` and left in train mode.
        data: a Dataset (batched here with `batch_size`, shuffled with `seed`) or a DataLoader.
        loss_fn: ``loss_fn(model, batch) -> Tensor | dict[str, Tensor]`` on the device's batch.
        steps: number of optimizer steps (batches), cycling over the data as needed.
        lr, weight_decay: AdamW settings. schedule: "cosine" (to 0) or "constant";
            `warmup` steps of linear warm-up first.
        grad_clip: clip the global gradient norm to this value when given.
        device: where to train; None picks CUDA when available, else the CPU.
        amp: mixed precision (bfloat16, or float16 without bf16 support) on CUDA; ignored on CPU.
        seed: seeds the model-independent randomness (shuffling, dropout).
        progress: show a tqdm bar (works in terminals, Jupyter and Colab).
        params: optimise only these parameters (default: all that require grad).

    Returns:
        History with the per-step total loss, each named loss, seconds and device.

    Under ``torchrun`` (WORLD_SIZE > 1 in the environment) `fit` trains data-parallel:
    `batch_size` is the global batch, each process draws its ``batch_size / world_size``
    slice of the batch one process would draw, BatchNorm is synchronised over the global
    batch, DistributedDataParallel averages the gradients, and the logged loss is the mean
    over the processes. Only rank 0 shows the progress bar.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable as loss_fn(model, batch)")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    world = _dist.world()
    if not isinstance(data, DataLoader):
        local_batch = _dist.per_rank_batch(batch_size, world.world_size)  # fails before training
    device = devices.pick(device)
    if world.distributed and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", world.local_rank)  # one GPU per process on each machine
    if device.type == "cuda":
        torch.cuda.set_device(device)
    _dist.init_process_group(device, world)
    torch.manual_seed(seed)
    if isinstance(data, DataLoader):
        loader = data  # used as given: under torchrun give it a DistributedSampler yourself
        local_batch = loader.batch_size or 0
    elif isinstance(data, Dataset):
        # Every rank shuffles with the same seed and takes its slice of each global batch,
        # so the ranks together draw exactly the batches one process draws.
        gen = torch.Generator().manual_seed(seed)
        sampler = _dist.ShardedSampler(data, world.world_size, world.rank, gen)
        loader = DataLoader(data, batch_size=local_batch, sampler=sampler, drop_last=True,
                            collate_fn=collate_fn, generator=gen)
        if len(loader) == 0:
            raise ValueError(f"data has {len(data)} samples, fewer than one batch of batch_size {batch_size}")
    else:
        raise TypeError(f"data must be a torch Dataset or DataLoader, got {type(data).__name__}")

    model.to(device).train()
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    with contextlib.ExitStack() as stack:
        net = model
        if world.distributed:
            if _dist.has_batchnorm(model):
                stack.enter_context(_dist.synchronized_batchnorm(model, device))
            # detectors skip some layers on some batches (no positives, no masks): tell DDP
            net = _dist.DataParallelModel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
        hist = _steps(net, loader, loss_fn, params, steps=steps, lr=lr, weight_decay=weight_decay,
                      schedule=schedule, warmup=warmup, grad_clip=grad_clip, device=device, amp=amp,
                      progress=progress and world.is_main)
    hist.world_size, hist.batch_per_rank = world.world_size, local_batch
    return hist


def _steps(model, loader, loss_fn, params, *, steps, lr, weight_decay, schedule, warmup, grad_clip,
           device, amp, progress) -> History:
    """fit's loop; `model` may be the DistributedDataParallel wrapper (its backward all-reduces)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        t = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    use_scaler = amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    hist = History(device=str(device))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc="fit", leave=False)
    start = time.perf_counter()
    batches = _batches(loader)
    for step in range(steps):
        batch = to_device(next(batches), device)
        with _autocast(device, amp):
            out = loss_fn(model, batch)
        losses = dict(out) if isinstance(out, Mapping) else {"loss": out}
        total = sum(losses.values())
        # the global batch's loss: the mean of the ranks' losses (each rank's own when alone)
        logged = _dist.mean_over_ranks(torch.stack([total.detach().float()] +
                                                   [v.detach().float() for v in losses.values()]))
        if not torch.isfinite(logged[0]):  # every rank sees the same value, so all stop together
            raise FloatingPointError(f"loss became {logged[0].item()} at step {step}: lower lr?")
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.unscale_(opt)
        else:
            total.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        sched.step()
        hist.loss.append(float(logged[0]))
        for k, v in zip(losses, logged[1:].tolist()):
            hist.parts.setdefault(k, []).append(v)
        if bar is not None:
            bar.update(1)
            if step % 10 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{hist.smoothed()[-1]:.4f}")
    if bar is not None:
        bar.close()
    hist.seconds = time.perf_counter() - start
    hist.steps = steps
    return hist


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def default_out_dir(name: str, root="runs") -> Path:
    """A new folder ``root/NAME-YYYYmmdd-HHMMSS`` (UTC) for a run that ships nothing."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path, i = Path(root) / f"{name}-{stamp}", 1
    while path.exists():  # two runs in the same second
        path, i = Path(root) / f"{name}-{stamp}-{i}", i + 1
    return path


class BarNotMet(RuntimeError):
    """A retrained checkpoint missed its bar, so the shipped one was kept."""


def _misses(metrics: Mapping[str, float], bar: Mapping[str, float]) -> list[str]:
    return [f"{k} {metrics.get(k, float('nan')):.4f} < bar {v}" for k, v in bar.items()
            if not metrics.get(k, float("-inf")) >= v]


def train_recipe(name: str, *, steps: int | None = None, out_dir=None, replace_shipped: bool = False,
                 device=None, progress: bool = True, evaluate: bool = True, data: str | None = None) -> dict:
    """Train the recipe `name` and save its checkpoint and manifest entry.

    Args:
        name: a recipe name from `recipes.names()`.
        steps: override the recipe's step count.
        out_dir: folder for the checkpoint and its manifest; None makes a new
            ``runs/NAME-<UTC time>`` folder. The package's weights folder needs `replace_shipped`.
        replace_shipped: write into ``cvcourse/weights`` (`out_dir` must then be None), only
            when the held-out metrics meet the recipe's bar.
        device: where to train (default: CUDA if available).
        progress: show a progress bar.
        evaluate: run the held-out evaluation (required with `replace_shipped`).
        data: train on a real dataset instead of shapes scenes ("voc:ROOT", "coco:IMAGES,ANN";
            see `cvcourse.recipes.real`); never replaces a shipped checkpoint, and skips the
            shapes evaluation.

    Under torchrun every rank trains, and rank 0 evaluates and writes.

    Returns:
        The manifest record written (an empty dict on ranks other than 0).

    Raises:
        ValueError: `out_dir` is the shipped folder without `replace_shipped`, or both are given,
            or `replace_shipped` without `evaluate`.
        BarNotMet: with `replace_shipped`, the new checkpoint missed the bar; it was saved in a
            new ``runs/`` folder instead (named in the message) and the shipped one is untouched.
    """
    from . import pretrained, recipes

    recipe = recipes.get(name)
    shipped = pretrained.WEIGHTS_DIR.resolve()
    if replace_shipped:
        if out_dir is not None:
            raise ValueError("give either out_dir or replace_shipped=True, not both")
        if not evaluate:
            raise ValueError("replace_shipped=True needs evaluate=True: a shipped checkpoint must meet its bar")
        out_dir = pretrained.WEIGHTS_DIR
    elif out_dir is None:
        out_dir = default_out_dir(name)
    elif Path(out_dir).resolve() == shipped:
        raise ValueError(f"out_dir {out_dir} is the shipped weights folder; pass replace_shipped=True "
                         f"(`--replace-shipped`) to replace a shipped checkpoint")
    pretrained.manifest(out_dir)  # a broken manifest stops us before hours of training
    steps = recipe.steps if steps is None else steps
    config, train_data = recipe.config, None
    if data is not None:
        from .recipes.real import real_data
        if replace_shipped:
            raise ValueError("data (--data) cannot replace a shipped checkpoint (--replace-shipped): "
                             "the shipped checkpoints are trained on shapes scenes")
        train_data, changes = real_data(recipe, data)
        config = dict(recipe.config, **changes)
        evaluate = False  # the recipe's evaluation scores shapes scenes
    world = _dist.world()
    _dist.per_rank_batch(recipe.batch_size, world.world_size)  # a clear error before any work
    torch.manual_seed(recipe.seed)
    model = recipe.factory(**config)  # built after seeding, so weights are reproducible
    if train_data is None:
        train_data = recipe.train_data()
    load_before = _load_average()
    hist = fit(model, train_data, recipe.loss, steps=steps, batch_size=recipe.batch_size,
               lr=recipe.lr, weight_decay=recipe.weight_decay, warmup=recipe.warmup,
               grad_clip=recipe.grad_clip, collate_fn=recipe.collate_fn, device=device,
               seed=recipe.seed, progress=progress)
    if not world.is_main:
        return {}
    metrics = recipe.evaluate(model.eval(), split="test") if evaluate else {}
    misses = _misses(metrics, recipe.bar) if replace_shipped else []
    if misses:
        out_dir = default_out_dir(name)  # keep the run, but not in place of the shipped file
    record = pretrained.save(name, model, out_dir=out_dir, record={
        "description": recipe.description,
        "config": config, "seed": recipe.seed, "steps": steps,
        "batch_size": recipe.batch_size, "lr": recipe.lr,
        # data parallelism: processes, and the slice of the global batch each one drew
        "world_size": hist.world_size, "batch_per_rank": hist.batch_per_rank,
        "data": data or "shapes",
        "train_seconds": round(hist.seconds, 1), "hardware": devices.describe(hist.device),
        # other processes slow a shared CPU down: the 1-minute load average before/after
        "load_average": [load_before, _load_average()],
        "torch": torch.__version__, "final_loss": round(hist.smoothed()[-1], 5),
        "metrics": {k: round(float(v), 5) for k, v in metrics.items()}, "bar": recipe.bar,
    })
    record["folder"] = str(out_dir)
    if misses:
        raise BarNotMet(f"{name}: {'; '.join(misses)}; the shipped checkpoint was kept and the new one "
                        f"saved in {out_dir}")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    from . import recipes

    listing = "\n".join(f"  {n}: {recipes.get(n).description}" for n in recipes.names())
    p = argparse.ArgumentParser(prog="python -m cvcourse.train", description=__doc__.split("\n")[0],
                                epilog=f"recipes:\n{listing}\n\nWithout --out or --replace-shipped the "
                                       "checkpoint and its manifest go to a new folder runs/NAME-<UTC time>/; "
                                       "the shipped files are never touched.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="recipe to train (listed below)")
    p.add_argument("--steps", type=int, default=None, help="override the recipe's step count")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", default=None,
                       help="folder for NAME.pt and manifest.json (default: a new runs/NAME-<UTC time>/)")
    where.add_argument("--replace-shipped", action="store_true",
                       help="replace cvcourse/weights/NAME.pt and its manifest entry, only if the "
                            "new checkpoint meets the recipe's bar on the test split")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if available)")
    p.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="train on real data: voc:ROOT[,YEAR,IMAGE_SET] or coco:IMAGES,ANNOTATIONS "
                        "(cannot be combined with --replace-shipped)")
    a = p.parse_args(argv)
    if a.name not in recipes.names():
        p.error(f"unknown recipe {a.name!r}; choose one of: {', '.join(recipes.names())}")
    if a.steps is not None and a.steps < 1:
        p.error(f"--steps must be a positive number, got {a.steps}")
    if a.replace_shipped and a.no_eval:
        p.error("--replace-shipped needs the evaluation (drop --no-eval): a shipped checkpoint must meet its bar")
    try:
        rec = train_recipe(a.name, steps=a.steps, out_dir=a.out, replace_shipped=a.replace_shipped,
                           device=a.device, progress=not a.no_progress, evaluate=not a.no_eval, data=a.data)
    except _dist.WorldSizeError as e:
        p.error(str(e))
    except (BarNotMet, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        _dist.shutdown()
    if not rec:  # not rank 0: rank 0 reports
        return 0
    world = ""
    if rec["world_size"] > 1:
        world = f" in {rec['world_size']} processes of batch {rec['batch_per_rank']}"
    print(f"{a.name}: {rec['steps']} steps{world} in {rec['train_seconds']} s on {rec['hardware']}")
    for k, v in rec["metrics"].items():
        print(f"  {k} = {v:.4f}")
    print(f"  saved {Path(rec['folder']) / rec['file']} (sha256 {rec['sha256'][:12]}...)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
