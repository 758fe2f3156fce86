"""cvcourse.inference: batched prediction that leaves the model's train/eval mode as found."""

import pytest
import torch

from cvcourse.inference import detect, evaluating, predict
from cvcourse.models import YOLO, UNet


@pytest.mark.parametrize("training", [True, False])
def test_detect_and_predict_leave_the_mode_as_found(training):
    torch.manual_seed(0)
    images = torch.rand(3, 3, 64, 64)
    detector, segmenter = YOLO(width=8), UNet(base=8)
    for model in (detector, segmenter):
        model.train(training)
    dets = detect(detector, images, batch_size=2)
    labels = predict(segmenter, images, batch_size=2)
    assert detector.training is training and segmenter.training is training
    assert all(m.training is training for m in detector.modules())
    assert len(dets) == 3 and set(dets[0]) == {"boxes", "scores", "labels"}
    assert labels.shape == (3, 64, 64) and labels.dtype == torch.int64
    # the same in eval mode whatever the mode before: BatchNorm used its running statistics
    segmenter.eval()
    assert torch.equal(labels, segmenter(images).argmax(1))


def test_evaluating_restores_mixed_modes_even_after_an_error():
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.Dropout())
    model.train()
    model[1].eval()
    with pytest.raises(RuntimeError), evaluating(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("boom")
    assert model.training and model[0].training and not model[1].training
