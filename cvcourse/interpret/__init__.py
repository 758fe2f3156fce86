"""Seeing what a network learned: saliency, CAM, Grad-CAM, guided backprop, their evaluation.

Every method takes ``(model, images [B, C, H, W], targets)`` — targets are class indices,
one int for all images or one per image — and returns maps as tensors on the images'
device. Each runs the model in eval mode and leaves it as it found it: modes and
``requires_grad`` restored, hooks removed, parameters' ``.grad`` untouched.

- `saliency` / `input_gradient` (Simonyan et al., 2014): gradient of the class score
  w.r.t. the pixels; the map is ``max_ch |grad|``.
- `class_activation_map` (Zhou et al., 2016): ``sum_k w_kc f_k`` for GAP + linear heads.
- `grad_cam` (Selvaraju et al., 2017): any layer; channel weights = mean gradients.
- `guided_backprop` (Springenberg et al., 2015): ReLUs pass only positive gradients; of a
  class score or of one intermediate neuron (`strongest_units`: each image's strongest unit).
- `filters`: first-layer filters as images, how far training moved each layer, edge units.
- `faithfulness`: occlusion sensitivity (Zeiler & Fergus, 2014), the deletion and
  insertion tests (Petsiuk et al., 2018): does the map rank first what the model uses?
- `evaluation`: pointing game, Spearman rank correlation, cascading randomization test
  (Adebayo et al., 2018).

ViT attention maps and rollout live in ``cvcourse.interpret.attention``.
"""

from ._common import normalize, upsample
from .attention import attention_maps, attention_rollout, cls_attention
from .cam import class_activation_map
from .evaluation import (
                         attention_rollout_method,
                         cascade_layers,
                         cascading_randomization,
                         explanation_methods,
                         image_edges,
                         pointing_game,
                         pointing_game_scenes,
                         randomization_test,
                         rank,
                         reinitialize,
                         spearman,
)
from .faithfulness import auc, blurred, deletion_curve, insertion_curve, occlusion_map
from .filters import boundary_band, edge_selectivity, filter_images, relative_change
from .grad_cam import activations_and_gradients, grad_cam, grad_cam_from
from .guided_backprop import guided_backprop, strongest_units
from .saliency import input_gradient, saliency

__all__ = [
    "saliency", "input_gradient", "class_activation_map", "grad_cam", "grad_cam_from",
    "activations_and_gradients", "guided_backprop", "strongest_units", "pointing_game", "spearman", "rank",
    "cascade_layers", "reinitialize", "cascading_randomization", "randomization_test",
    "pointing_game_scenes", "explanation_methods", "normalize", "upsample",
    "filter_images", "relative_change", "boundary_band", "edge_selectivity", "attention_rollout_method",
    "image_edges", "occlusion_map", "deletion_curve", "insertion_curve", "auc", "blurred",
    "attention_maps", "attention_rollout", "cls_attention",
]
