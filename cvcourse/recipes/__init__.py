"""Training recipes: how each shipped checkpoint is made, in one place per chapter.

A recipe names a model factory and its config, the training data, the loss, the held-out
evaluation and the bar the checkpoint must meet. `python -m cvcourse.train NAME` runs it
(``--replace-shipped`` to replace the shipped file);
`python -m cvcourse.evaluate NAME` and the tests hold the shipped file to its bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass
class Recipe:
    name: str
    factory: Callable[..., nn.Module]        # model class or function
    config: dict                             # keyword arguments for `factory`
    train_data: Callable[[], object]         # () -> Dataset (fresh scenes from the train split)
    loss: Callable                           # (model, batch) -> Tensor | dict of Tensors
    evaluate: Callable[..., dict]            # (model, split="test", ...) -> {metric: value}
    bar: dict[str, float]                    # metric -> minimum on the test split
    steps: int
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 0
    grad_clip: float | None = None
    collate_fn: Callable | None = None
    seed: int = 0
    description: str = ""                    # one line: `python -m cvcourse.train --help` and the manifest

    def build(self) -> nn.Module:
        """A freshly initialised model with this recipe's config."""
        return self.factory(**self.config)


_REGISTRY: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    if recipe.name in _REGISTRY:
        raise ValueError(f"recipe {recipe.name!r} is registered twice")
    _REGISTRY[recipe.name] = recipe
    return recipe


def _load_all() -> None:
    # Each chapter's module registers its recipes when imported.
    from . import (
        classification,  # noqa: F401
        detection,  # noqa: F401
        detr,  # noqa: F401
        instance,  # noqa: F401
        rcnn,  # noqa: F401
        segmentation,  # noqa: F401
        single_stage,  # noqa: F401
        vit,  # noqa: F401
    )


def names() -> list[str]:
    """Names of all recipes, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> Recipe:
    """The recipe called `name`; a ValueError lists the known names otherwise."""
    _load_all()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown recipe name {name!r}; known recipes: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
