"""Recipe for the small Vision Transformer of the chapter "Seeing inside a Vision Transformer".

Same scenes, loss, evaluation and held-out split as the CNN classifier (64x64, one object
of 12-32 px, labels 1..3 -> classes 0..2), so the two models can be compared directly.
"""

from __future__ import annotations

from ..data import CLASSES
from ..models.vit import VisionTransformer
from . import Recipe, register
from .classification import classification_data, classifier_accuracy, classifier_loss

register(Recipe(
    name="vit",
    factory=VisionTransformer,
    config={"image_size": 64, "patch_size": 8, "num_classes": len(CLASSES) - 1, "dim": 64, "depth": 4,
            "heads": 4, "mlp_ratio": 2.0},
    # fresh scenes every step: a ViT has no convolutional prior and needs many examples
    train_data=lambda: classification_data("train", 1_000_000),
    loss=classifier_loss,
    evaluate=classifier_accuracy,
    bar={"accuracy": 0.95},
    steps=2500,
    batch_size=32,
    lr=1e-3,
    weight_decay=0.05,
    warmup=100,
    grad_clip=1.0,
    description="ViT (patch 8, 4 blocks, 4 heads, dim 64) on the classifier's 64x64 one-object scenes.",
))
