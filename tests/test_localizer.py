"""Single-object localizer: shapes, the multitask loss, box encoding, learning."""

import pytest
import torch

from cvcourse.data import ShapesDataset, detection_collate
from cvcourse.models.localizer import SingleObjectLocalizer, decode_boxes, encode_boxes, localization_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(n=4, size=64):
    ds = ShapesDataset("train", n, size=size, view="single")
    return detection_collate([ds[i] for i in range(n)])


def test_heads_shapes_and_box_range():
    torch.manual_seed(0)
    scores, boxes = SingleObjectLocalizer(3, width=8)(torch.rand(2, 3, 64, 64))
    assert scores.shape == (2, 3) and boxes.shape == (2, 4)
    assert bool(((boxes > 0) & (boxes < 1)).all())


def test_encode_decode_round_trip():
    boxes = torch.tensor([[10.0, 20, 30, 60], [0, 0, 64, 32]])
    code = encode_boxes(boxes, (64, 128))
    torch.testing.assert_close(code[1], torch.tensor([32 / 128, 16 / 64, 64 / 128, 32 / 64]))
    torch.testing.assert_close(decode_boxes(code, (64, 128)), boxes)


@pytest.mark.parametrize("box_loss", ["smooth_l1", "l2"])
def test_multitask_loss_is_a_dict_and_falls(box_loss):
    torch.manual_seed(0)
    batch = _batch()
    model = SingleObjectLocalizer(3, width=8)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    totals = []
    for _ in range(15):
        losses = localization_loss(model, batch, box_weight=2.0, box_loss=box_loss)
        assert set(losses) == {"classification", "box"}
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert totals[-1] < 0.5 * totals[0], totals


def test_predict_decodes_to_pixels_and_bad_inputs_raise():
    torch.manual_seed(0)
    model = SingleObjectLocalizer(3, width=8).eval()
    images, _ = _batch(2)
    out = model.predict(images)
    assert len(out) == 2 and out[0]["boxes"].shape == (1, 4)
    assert 1 <= int(out[0]["labels"]) <= 3 and bool((out[0]["boxes"] >= 0).all())
    with pytest.raises(ValueError, match="images"):
        model(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="box_loss"):
        localization_loss(model, _batch(2), box_loss="l1")
