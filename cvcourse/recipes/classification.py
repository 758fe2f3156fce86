"""Recipe for the shape classifier (interpretability chapters; first-layer filters, CAM)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data import CLASSES, ShapesDataset
from ..inference import evaluating
from ..models.classifier import ShapeClassifier
from . import Recipe, register

SIZE = 64
OBJECT_SIZE = (12, 32)  # large enough at 64 px that a triangle is not a dot


def classification_data(split: str, length: int, size: int = SIZE, seed: int = 0) -> ShapesDataset:
    return ShapesDataset(split=split, length=length, size=size, view="classification", seed=seed,
                         object_size=OBJECT_SIZE)


def classifier_loss(model, batch):
    images, labels = batch
    return F.cross_entropy(model(images), labels - 1)  # labels 1..3 -> classes 0..2


@torch.no_grad()
def classifier_accuracy(model, split: str = "test", n: int = 1000, batch_size: int = 250) -> dict:
    """Top-1 accuracy of `model` on `n` scenes of `split` (one object each)."""
    ds = classification_data(split, n)
    dev = next(model.parameters()).device
    correct = 0
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size)
    with evaluating(model):  # every module's mode restored afterwards
        for images, labels in loader:
            correct += (model(images.to(dev)).argmax(1).cpu() == labels - 1).sum().item()
    return {"accuracy": correct / n}


register(Recipe(
    name="classifier",
    factory=ShapeClassifier,
    config={"num_classes": len(CLASSES) - 1, "width": 16},
    train_data=lambda: classification_data("train", 1_000_000),
    loss=classifier_loss,
    evaluate=classifier_accuracy,
    bar={"accuracy": 0.97},
    steps=1500,
    batch_size=32,
    lr=2e-3,
    warmup=50,
    description="GAP + linear CNN on 64x64 one-object scenes, objects 12-32 px (CAM-ready).",
))
