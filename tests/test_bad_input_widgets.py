"""Widgets' figure functions reject out-of-range settings with a ValueError naming the
setting; they never wrap or clip it into a different figure."""

import pytest
import torch

from cvcourse.widgets import check_setting
from cvcourse.widgets.anchors import anchor_figure
from cvcourse.widgets.detection import postprocess_steps
from cvcourse.widgets.localization import windows_figure
from cvcourse.widgets.roi import roi_figure
from cvcourse.widgets.single_stage import focal_loss_figure, grid_figure
from cvcourse.widgets.tasks import tasks_figure
from cvcourse.widgets.upsampling import checkerboard_figure, conv_transpose_figure, upsampling_outputs
from cvcourse.widgets.vit import map_for, vit_attention_figure

NAN = float("nan")
L, B, HEADS, T = 3, 2, 2, 17  # a 4 x 4 patch grid + CLS
ATT = torch.softmax(torch.randn(L, B, HEADS, T, T, generator=torch.Generator().manual_seed(0)), -1)
IMAGES = torch.rand(B, 3, 32, 32)
IMAGE = torch.rand(3, 64, 64)
TARGET = {"boxes": torch.tensor([[10.0, 10, 30, 30]]), "labels": torch.tensor([1])}
RAW = {"probs": torch.rand(5, 4).softmax(1), "boxes": torch.rand(5, 4, 4) * 10}

CASES = [  # (call, message)
    # ViT explorer: a layer outside [-L, L) used to wrap round to another layer
    (lambda: vit_attention_figure(IMAGES, ATT, layer=3), r"layer must be an int in \[-3, 3\), got 3"),
    (lambda: vit_attention_figure(IMAGES, ATT, layer=-4), "layer must be an int"),
    (lambda: vit_attention_figure(IMAGES, ATT, layer=7), "layer must be an int"),
    (lambda: vit_attention_figure(IMAGES, ATT, layer=1.0), "layer must be an int"),
    (lambda: vit_attention_figure(IMAGES, ATT, index=2), r"index must be an int in \[0, 2\)"),
    (lambda: vit_attention_figure(IMAGES, ATT, index=-1), "index must be an int"),
    (lambda: vit_attention_figure(IMAGES, ATT, head=2, view="CLS attention"), r"head must be an int in \[0, 2\)"),
    (lambda: vit_attention_figure(IMAGES, ATT, head="median"), "head must be an int"),
    (lambda: vit_attention_figure(IMAGES, ATT, view="both"), "view must be one of"),
    (lambda: map_for(ATT, 0, 5, "mean", "rollout"), "layer must be an int"),
    (lambda: map_for(ATT, 0, 0, -1, "rollout"), "head must be an int"),
    # focal loss
    (lambda: focal_loss_figure(gamma=-1), r"gamma must be a number in \[0, 20\]"),
    (lambda: focal_loss_figure(gamma=NAN), "gamma must be a number"),
    (lambda: focal_loss_figure(alpha=1.5), r"alpha must be a number in \[0, 1\]"),
    (lambda: focal_loss_figure(alpha=-0.5), "alpha must be a number"),
    (lambda: focal_loss_figure(easy=1.0), r"easy must be a number in \[0, 1\)"),
    # YOLO grid
    (lambda: grid_figure(IMAGE, TARGET, row=16, col=0), r"row and col must be ints in \[0, 16\), got 16 and 0"),
    (lambda: grid_figure(IMAGE, TARGET, row=0, col=-1), "row and col must be ints"),
    (lambda: grid_figure(IMAGE, TARGET, row=0.5, col=1), "row and col must be ints"),
    # sliding windows
    (lambda: windows_figure(size=0), "size must be an int >= 1"),
    (lambda: windows_figure(ratio=0), "ratio must be a number > 0"),
    (lambda: windows_figure(ratio=-2.0), "ratio must be a number"),
    (lambda: windows_figure(stride=0), "stride must be an int >= 1"),
    (lambda: windows_figure(stride=True), "stride must be an int"),
    (lambda: windows_figure(index=-1), "index must be >= 0"),
    # anchors
    (lambda: anchor_figure(high=1.5), r"high must be a number in \[0, 1\]"),
    (lambda: anchor_figure(low=0.8, high=0.7), "low_threshold must be <= high_threshold"),
    (lambda: anchor_figure(low=-0.1), r"low must be a number in \[0, 1\]"),
    (lambda: anchor_figure(row=16), r"row and col must be in \[0, 16\)"),
    (lambda: anchor_figure(col=-1), "col must be an int >= 0"),
    (lambda: anchor_figure(stride=7), "stride must be a positive int dividing"),
    # RoI
    (lambda: roi_figure(output_size=0), "output_size must be an int in"),
    (lambda: roi_figure(output_size=15), "output_size must be an int in"),
    (lambda: roi_figure(sampling_ratio=1.5), "sampling_ratio must be an int"),
    (lambda: roi_figure(aligned="yes"), "aligned must be True or False"),
    (lambda: roi_figure(stride=5), "stride must be 4, 8 or 16"),
    (lambda: roi_figure(x=200), r"x must be in \[0, 128\] image pixels"),
    # upsampling
    (lambda: conv_transpose_figure(kernel_size=0), "kernel_size must be an int >= 1"),
    (lambda: conv_transpose_figure(stride=True), "stride must be an int >= 1"),
    (lambda: conv_transpose_figure(step=10), r"step must be an int in \[1, 9\]"),
    (lambda: conv_transpose_figure(step=0), "step must be an int"),
    (lambda: conv_transpose_figure(padding=5), "crops the whole"),
    (lambda: upsampling_outputs(scale=0), "scale must be an int >= 1"),
    (lambda: upsampling_outputs(seed=-1), "seed must be an int >= 0"),
    (lambda: checkerboard_figure(size=0), "size must be an int >= 1"),
    (lambda: checkerboard_figure(seed=1.5), "seed must be an int"),
    # detection post-processing and the tasks figure
    (lambda: postprocess_steps(RAW, score_thresh=1.5), r"score_thresh must be in \[0, 1\]"),
    (lambda: postprocess_steps(RAW, nms_thresh=NAN), r"nms_thresh must be in \[0, 1\]"),
    (lambda: postprocess_steps(RAW, detections_per_img=0), "detections_per_img must be an int >= 1"),
    (lambda: postprocess_steps(RAW, min_size=-1.0), "min_size must be a finite number"),
    (lambda: tasks_figure(index=-1), "index must be >= 0"),
    (lambda: tasks_figure(task="pose"), "task must be 'all' or one of"),
]


@pytest.mark.parametrize("call, match", CASES)
def test_figure_functions_reject_out_of_range_settings(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_in_range_settings_still_draw():
    assert vit_attention_figure(IMAGES, ATT, layer=-1, index=1, head=1, view="CLS attention") is not None
    last = map_for(ATT, 0, -1, "mean", "rollout")
    assert torch.equal(last, map_for(ATT, 0, L - 1, "mean", "rollout"))
    assert focal_loss_figure(gamma=0.0, alpha=-1) is not None  # alpha -1: no weighting
    assert grid_figure(IMAGE, TARGET, row=15, col=15) is not None


def test_check_setting():
    check_setting("x", 3, 0, 3, integer=True)
    for bad in (4, -1, 2.5, True, NAN, "1"):
        with pytest.raises(ValueError, match=r"x must be an int in \[0, 3\]"):
            check_setting("x", bad, 0, 3, integer=True)
    with pytest.raises(ValueError, match=r"x must be a number in \[0, 1\)"):
        check_setting("x", 1.0, 0, 1, open_high=True)
