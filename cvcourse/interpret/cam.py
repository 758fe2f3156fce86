r"""Class activation maps (Zhou et al., 2016).

In a network whose head is global average pooling (GAP) followed by one linear layer, the
class score is a weighted sum of the *averaged* last feature maps $f_k$ (``[K, h, w]``):

$$S_c = \sum_k w_{k,c} \frac{1}{hw}\sum_{i,j} f_k(i,j) + b_c
      = \frac{1}{hw}\sum_{i,j} \underbrace{\sum_k w_{k,c} f_k(i,j)}_{M^c(i,j)} + b_c .$$

Swapping the two sums gives the class activation map $M^c$: how much each position
contributes to the score of class c. Its mean plus the bias is exactly the logit, so
nothing is approximated; but it exists only for this architecture (Grad-CAM lifts that).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import check_images, check_targets, explaining, model_device, resolve_layer
from ._common import upsample as upsample_maps


def class_activation_map(model: nn.Module, images: Tensor, targets, features="features",
                         classifier="fc", upsample: bool = True, check: bool = True) -> Tensor:
    r"""CAM $M^c = \sum_k w_{k,c} f_k$ of each image's target class.

    Args:
        model: a GAP + linear classifier, e.g. `cvcourse.models.ShapeClassifier`.
        images: ``[B, C, H, W]``; targets: class index per image (int or B ints).
        features: the module (or its name) whose output is the last feature map ``[B, K, h, w]``.
        classifier: the ``nn.Linear(K, num_classes)`` applied to its global average.
        upsample: resize the ``[h, w]`` maps bilinearly to ``[H, W]``.
        check: verify that the model's logits equal ``classifier(mean of features)``
            (the identity CAM rests on) and raise ValueError if they do not.

    Returns:
        ``[B, H, W]`` (or ``[B, h, w]``) signed maps, without the bias, on the images'
        device; ``map.mean() + bias[c]`` is the logit of class c (before upsampling).
    """
    images = check_images(images)
    fname, feat_layer = resolve_layer(model, features)
    cname, fc = resolve_layer(model, classifier)
    if not isinstance(fc, nn.Linear):
        raise ValueError(f"classifier {cname!r} must be an nn.Linear, got {type(fc).__name__}")
    x = images.detach().to(model_device(model, images.device))
    seen: list[Tensor] = []
    with explaining(model) as handles, torch.no_grad():
        handles.append(feat_layer.register_forward_hook(lambda m, i, o: seen.append(o.clone())))
        logits = model(x)
    if len(seen) != 1 or seen[0].dim() != 4 or seen[0].shape[1] != fc.in_features:
        got = tuple(seen[0].shape) if len(seen) == 1 else f"{len(seen)} outputs"
        raise ValueError(f"features {fname!r} must run once and output [B, {fc.in_features}, h, w] "
                         f"for the {fc.in_features}-input classifier {cname!r}, got {got}")
    f = seen[0]                                                                  # (B, K, h, w)
    t = check_targets(targets, len(x), fc.out_features, device=f.device)
    if check:
        with torch.no_grad():
            gap_logits = fc(f.mean((2, 3)))                                      # (B, C)
        if not torch.allclose(gap_logits, logits, rtol=1e-4, atol=1e-4):
            raise ValueError(f"the model's logits are not {cname}(global average of {fname}): CAM "
                             "needs a GAP + linear head (use grad_cam for other networks)")
    weights = fc.weight.detach()[t]                                              # (B, K): w_{k,c}
    cam = torch.einsum("bk,bkhw->bhw", weights, f)                               # (B, h, w)
    if upsample:
        cam = upsample_maps(cam, images.shape[-2:])
    return cam.to(images.device)
