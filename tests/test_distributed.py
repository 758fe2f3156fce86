"""Data-parallel training (cvcourse.distributed, cvcourse.train under torchrun) and real data in recipes."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cvcourse import distributed
from cvcourse.data import VOC_CLASSES
from cvcourse.train import train_recipe

ROOT = Path(__file__).resolve().parents[1]


def _batches(loader, epochs):
    return [b[0].tolist() for _ in range(epochs) for b in loader]


@pytest.mark.parametrize("n, batch", [(37, 6), (40, 8)])
def test_one_rank_draws_what_a_shuffling_dataloader_draws(n, batch):
    ds = TensorDataset(torch.arange(n))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plain = DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, generator=g1)
    sharded = DataLoader(ds, batch_size=batch, sampler=distributed.ShardedSampler(ds, 1, 0, g2),
                         drop_last=True, generator=g2)
    assert _batches(sharded, 3) == _batches(plain, 3)  # three epochs, same order


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_together_draw_the_global_batch(world_size):
    n, batch = 37, 6
    ds = TensorDataset(torch.arange(n))
    single = _batches(DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True,
                                 generator=torch.Generator().manual_seed(0)), 3)
    per_rank = []
    for rank in range(world_size):
        g = torch.Generator().manual_seed(0)
        loader = DataLoader(ds, batch_size=batch // world_size, drop_last=True, generator=g,
                            sampler=distributed.ShardedSampler(ds, world_size, rank, g))
        per_rank.append(_batches(loader, 3))
    assert all(len(r) == len(single) == 3 * (n // batch) for r in per_rank)
    for t, global_batch in enumerate(single):
        union = sorted(i for r in per_rank for i in r[t])
        assert union == sorted(global_batch)  # each step: the same samples, split without overlap


def test_per_rank_batch_errors():
    assert distributed.per_rank_batch(32, 4) == 8
    with pytest.raises(ValueError, match="world size 9 .* larger than the global batch_size 8"):
        distributed.per_rank_batch(8, 9)
    with pytest.raises(ValueError, match="batch_size 32 is not divisible by the world size 3"):
        distributed.per_rank_batch(32, 3)


@pytest.mark.parametrize("world_size, message", [("3", "not divisible by the world size 3"),
                                                 ("64", "world size 64 .* larger than the global")])
def test_bad_world_size_fails_before_training(world_size, message, monkeypatch, tmp_path):
    # torchrun passes the process count in WORLD_SIZE; the error comes before any process group
    monkeypatch.setenv("WORLD_SIZE", world_size)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match=message):
        train_recipe("classifier", steps=1, out_dir=tmp_path, progress=False, evaluate=False)
    assert not dist.is_initialized() and not list(tmp_path.iterdir())


def test_command_line_names_the_bad_world_size(monkeypatch, tmp_path, capsys):
    from cvcourse.train import main

    monkeypatch.setenv("WORLD_SIZE", "3")  # torchrun --nproc_per_node=3 with the classifier's batch 32
    with pytest.raises(SystemExit) as exit_info:
        main(["classifier", "--steps", "1", "--out", str(tmp_path), "--device", "cpu"])
    assert exit_info.value.code == 2
    assert "batch_size 32 is not divisible by the world size 3" in capsys.readouterr().err


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_gloo_sync_batchnorm_equals_batchnorm_in_one_process(one_process_group):
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(5)
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    nn.init.uniform_(bn.bias, -1, 1)
    ref = nn.BatchNorm2d(5)
    ref.load_state_dict(bn.state_dict())
    x = (torch.randn(6, 5, 7, 7) * 3 + 2).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    sync = distributed.GlooSyncBatchNorm(bn)
    for _ in range(2):
        y, y_ref = sync(x), ref(x_ref)
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    (y * torch.arange(y.numel()).view_as(y).sin()).sum().backward()
    (y_ref * torch.arange(y.numel()).view_as(y).sin()).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    for a, b in [(bn.weight.grad, ref.weight.grad), (bn.bias.grad, ref.bias.grad),
                 (bn.running_mean, ref.running_mean), (bn.running_var, ref.running_var)]:
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert bn.num_batches_tracked.item() == ref.num_batches_tracked.item() == 2
    sync.eval()
    torch.testing.assert_close(sync(x), ref.eval()(x_ref))


def test_data_parallel_model_forwards_and_answers_attributes(one_process_group):
    torch.manual_seed(0)
    linear = nn.Linear(3, 2)
    wrapped = distributed.DataParallelModel(linear)
    x = torch.randn(4, 3)
    torch.testing.assert_close(wrapped(x), linear(x))
    assert wrapped.in_features == 3 and wrapped.module is linear
    with pytest.raises(AttributeError):
        _ = wrapped.no_such_attribute


def test_synchronized_batchnorm_puts_the_layers_back():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    before = [id(m) for m in model.modules()]
    weight = model[1].weight
    with distributed.synchronized_batchnorm(model, torch.device("cpu")):
        assert isinstance(model[1], distributed.GlooSyncBatchNorm) and model[1].bn.weight is weight
        assert isinstance(model[2][0], distributed.GlooSyncBatchNorm)
        assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.bn.weight", "1.bn.bias",
                                                            "2.0.bn.weight", "2.0.bn.bias"]
    assert [id(m) for m in model.modules()] == before


# ----------------------------------------------------------------------------- real data fixtures
def write_voc(root: Path, n: int) -> Path:
    """A VOC2012 tree of `n` small images, one object each, with segmentation masks."""
    base = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation", "ImageSets/Main"):
        (base / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"2012_{i:06d}" for i in range(n)]
    for i, name in enumerate(names):
        h, w = 24 + i % 3, 32
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(base / "JPEGImages" / f"{name}.jpg")
        cls = VOC_CLASSES[1 + i % 20]
        (base / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size><object><name>{cls}</name><difficult>0</difficult><bndbox>"
            f"<xmin>5</xmin><ymin>4</ymin><xmax>20</xmax><ymax>18</ymax></bndbox></object></annotation>")
        sem = np.zeros((h, w), np.uint8)
        sem[3:18, 4:20] = 1 + i % 20
        sem[3:18, 4] = 255  # a void boundary column
        Image.fromarray(sem).convert("P").save(base / "SegmentationClass" / f"{name}.png")
    for split_dir in ("Segmentation", "Main"):
        (base / "ImageSets" / split_dir / "train.txt").write_text("\n".join(names) + "\n")
    return root


def write_coco(root: Path, n: int) -> tuple[Path, Path]:
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images, annotations = [], []
    for i in range(n):
        images.append(dict(id=i + 1, file_name=f"{i}.png", height=30, width=40))
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(images_dir / f"{i}.png")
        annotations.append(dict(id=i + 1, image_id=i + 1, category_id=[1, 3, 7][i % 3], iscrowd=0,
                                area=120.0, bbox=[4, 5, 12, 10], segmentation=[[4, 5, 16, 5, 16, 15, 4, 15]]))
    ann = root / "instances.json"
    ann.write_text(json.dumps(dict(images=images, annotations=annotations,
                                   categories=[dict(id=k, name=str(k)) for k in (1, 3, 7)])))
    return images_dir, ann


def test_real_data_spec_errors(tmp_path):
    from cvcourse import recipes
    from cvcourse.recipes.real import real_data

    with pytest.raises(ValueError, match="--data must be 'voc:ROOT'"):
        real_data(recipes.get("faster_rcnn"), "kitti:/x")
    with pytest.raises(ValueError, match="'classifier' trains on shapes scenes only"):
        real_data(recipes.get("classifier"), "voc:/x")
    with pytest.raises(FileNotFoundError, match="root"):
        real_data(recipes.get("faster_rcnn"), f"voc:{tmp_path}")
    with pytest.raises(ValueError, match="cannot replace a shipped checkpoint"):
        train_recipe("faster_rcnn", steps=1, replace_shipped=True, data=f"voc:{tmp_path}")


def test_recipes_train_on_voc_and_coco_fixtures(tmp_path):
    voc = write_voc(tmp_path / "voc", 16)
    rec = train_recipe("faster_rcnn", steps=2, out_dir=tmp_path / "det", data=f"voc:{voc}", progress=False)
    assert rec["config"]["num_classes"] == 20 and rec["data"] == f"voc:{voc}" and rec["metrics"] == {}
    assert np.isfinite(rec["final_loss"]) and rec["world_size"] == 1 and rec["batch_per_rank"] == 8
    state = torch.load(tmp_path / "det" / "faster_rcnn.pt", weights_only=True)
    assert max(v.shape[0] for k, v in state.items() if k.endswith("cls_score.weight")) == 21  # 20 + background
    rec = train_recipe("unet", steps=2, out_dir=tmp_path / "seg", data=f"voc:{voc},2012,train", progress=False)
    assert rec["config"]["num_classes"] == 21 and np.isfinite(rec["final_loss"])
    images, ann = write_coco(tmp_path / "coco", 8)
    rec = train_recipe("retinanet", steps=1, out_dir=tmp_path / "coco_out", data=f"coco:{images},{ann}",
                       progress=False)
    assert rec["config"]["num_classes"] == 7 and np.isfinite(rec["final_loss"])


# ----------------------------------------------------------------------------- exercise
def _rank_batches(order, batch_size, world_size, rank):
    b = distributed.per_rank_batch(batch_size, world_size)
    mine = order[rank:world_size * (len(order) // world_size):world_size]
    return [mine[i:i + b] for i in range(0, len(mine) - b + 1, b)]


def _stub(order, batch_size, world_size, rank):
    raise NotImplementedError


@pytest.mark.parametrize("wrong", [
    lambda o, B, W, r: _rank_batches(o + o[:W], B, W, r),                       # keeps the uneven tail
    lambda o, B, W, r: [[int(i) for i in x] for x in                            # contiguous slices, not interleaved
                        torch.tensor(o[:W * (len(o) // W)]).reshape(W, -1)[r].split(B // W)
                        if len(x) == B // W],
    lambda o, B, W, r: _rank_batches(o, B, W, r) + [o[-1:]] * (len(o) % B > 0),  # keeps a short last batch
    lambda o, B, W, r: (lambda b, mine: [mine[i:i + b] for i in range(0, len(mine) - b + 1, b)])(  # no ValueError
        max(B // W, 1), o[r:W * (len(o) // W):W]),
    _stub,
], ids=["tail", "contiguous", "short-batch", "no-error", "stub"])
def test_rank_batches_checker_accepts_the_solution_and_rejects_mistakes(wrong, capsys):
    from cvcourse import exercises

    assert exercises.check_rank_batches(_rank_batches)
    assert "PASS" in capsys.readouterr().out
    assert not exercises.check_rank_batches(wrong)
    assert "FAIL" in capsys.readouterr().out


# ----------------------------------------------------------------------------- torchrun
def _run(args, out, nproc=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    launch = [sys.executable]
    if nproc:  # torchrun, as `python -m torch.distributed.run` of this interpreter
        launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = launch + ["-m", "cvcourse.train", *args, "--out", str(out), "--no-eval", "--device", "cpu",
                    "--no-progress"]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((Path(out) / "manifest.json").read_text())


@pytest.mark.slow
def test_torchrun_two_processes_reproduce_one(tmp_path):
    start = time.perf_counter()
    one = _run(["classifier", "--steps", "4"], tmp_path / "one")["classifier"]
    two = _run(["classifier", "--steps", "4"], tmp_path / "two", nproc=2)["classifier"]
    assert (one["world_size"], one["batch_per_rank"]) == (1, 32)
    assert (two["world_size"], two["batch_per_rank"]) == (2, 16)
    a = torch.load(tmp_path / "one" / "classifier.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "classifier.pt", weights_only=True)
    assert a.keys() == b.keys()  # BatchNorm layers came back: same names, running stats included
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert worst <= 1e-4, f"largest weight difference {worst:.2e}"
    assert abs(one["final_loss"] - two["final_loss"]) <= 1e-4  # the logged loss is the global batch's
    print(f"torchrun classifier: max weight difference {worst:.1e}, {time.perf_counter() - start:.0f} s")


@pytest.mark.slow
def test_torchrun_detector_on_voc_fixture(tmp_path):
    voc = write_voc(tmp_path / "voc", 16)
    rec = _run(["faster_rcnn", "--steps", "2", "--data", f"voc:{voc}"], tmp_path / "out", nproc=2)["faster_rcnn"]
    assert (rec["world_size"], rec["batch_per_rank"], rec["steps"]) == (2, 4, 2)
    assert rec["config"]["num_classes"] == 20 and np.isfinite(rec["final_loss"])
