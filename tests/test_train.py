import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from cvcourse import device as cvdevice
from cvcourse.train import History, fit, to_device


def _regression_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    return TensorDataset(x, y)


def mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def test_fit_learns_a_linear_map_and_is_seeded():
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = nn.Linear(3, 1)
        hist = fit(model, _regression_data(), mse, steps=150, batch_size=32, lr=0.05, progress=False)
        runs.append((hist, model.weight.detach().cpu()))  # fit picks CUDA when there is one
    hist = runs[0][0]
    assert isinstance(hist, History) and hist.steps == 150 and len(hist.loss) == 150
    assert hist.smoothed(10)[-1] < 0.01 * hist.loss[0]
    torch.testing.assert_close(runs[0][1], runs[1][1])  # same seed, same weights
    assert runs[0][0].loss == runs[1][0].loss
    torch.testing.assert_close(runs[0][1], torch.tensor([[1.0, -2.0, 0.5]]), atol=0.05, rtol=0)


def test_fit_logs_named_losses_and_sums_them():
    def two_losses(model, batch):
        x, y = batch
        err = model(x) - y
        return {"a": err.pow(2).mean(), "b": err.abs().mean()}

    hist = fit(nn.Linear(3, 1), _regression_data(), two_losses, steps=5, progress=False)
    assert set(hist.parts) == {"a", "b"}
    for i in range(5):
        assert hist.loss[i] == pytest.approx(hist.parts["a"][i] + hist.parts["b"][i], rel=1e-6)


def test_fit_rejects_bad_arguments():
    data = _regression_data()
    with pytest.raises(ValueError, match="steps"):
        fit(nn.Linear(3, 1), data, mse, steps=0, progress=False)
    with pytest.raises(TypeError, match="model"):
        fit(lambda x: x, data, mse, steps=1, progress=False)
    with pytest.raises(TypeError, match="data"):
        fit(nn.Linear(3, 1), [1, 2], mse, steps=1, progress=False)
    with pytest.raises(ValueError, match="schedule"):
        fit(nn.Linear(3, 1), data, mse, steps=1, schedule="step", progress=False)
    with pytest.raises(FloatingPointError, match="loss became"):
        fit(nn.Linear(3, 1), data, lambda m, b: torch.tensor(float("nan"), requires_grad=True),
            steps=1, progress=False)


def test_to_device_moves_nested_tensors():
    batch = (torch.ones(2), [{"boxes": torch.zeros(1, 4), "name": "x"}])
    out = to_device(batch, torch.device("cpu"))
    assert out[1][0]["name"] == "x" and torch.equal(out[1][0]["boxes"], torch.zeros(1, 4))


def test_device_pick_and_describe():
    assert cvdevice.pick("cpu") == torch.device("cpu")
    assert cvdevice.pick(None).type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        cvdevice.pick("not-a-device")
    assert "cores" in cvdevice.describe("cpu")


@pytest.mark.gpu
def test_fit_on_cuda_with_mixed_precision():
    model = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 1))
    hist = fit(model, _regression_data(), mse, steps=100, lr=0.01, device="cuda", progress=False)
    assert hist.device.startswith("cuda")
    assert hist.smoothed(10)[-1] < 0.1 * hist.loss[0]
    assert next(model.parameters()).device.type == "cuda"
