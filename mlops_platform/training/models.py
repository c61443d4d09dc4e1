"""The networks (MLP, CNN) and the exported classifier that wraps them for serving.

Training modules take standardized (or, for tables, preprocessed) features; `ExportedClassifier` carries
the standardization fitted on the training split as buffers (identity for tables, whose ColumnTransformer
scales) and ends in a softmax. Its state_dict is what the logged model stores; the serving contract
(raw named columns in, class probabilities out, column i = `class_labels[i]` of the model's metadata)
is the models-from-code pyfunc's, see mlops_platform/torch_pyfunc.py.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class MLP(nn.Module):
    """Fully connected classifier: [Linear -> ReLU -> Dropout] per hidden size, then a Linear head."""

    def __init__(
        self, n_features: int, n_classes: int, hidden_sizes: tuple[int, ...], dropout: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class CNN(nn.Module):
    """Small convnet for flattened grayscale images: [Conv-BN-ReLU x2 -> MaxPool] per block, then a head.

    Takes (batch, height*width) rows, as the data module and the serving contract hold them, and
    reshapes them to one-channel images itself.
    """

    def __init__(
        self, image_shape: tuple[int, int], n_classes: int, channels: tuple[int, ...], dropout: float
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        blocks: list[nn.Module] = []
        in_channels = 1
        height, width = image_shape
        for out_channels in channels:
            blocks += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
            ]
            # Pool while the map is still at least 2x2; an 8x8 digit allows three halvings.
            if height >= 4 and width >= 4:
                blocks.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_channels * height * width, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, n_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        images = features.reshape(-1, 1, *self.image_shape)
        return self.head(self.features(images))


def build_model(
    kind: str,
    n_features: int,
    n_classes: int,
    *,
    hidden_sizes: tuple[int, ...] = (128, 64),
    channels: tuple[int, ...] = (32, 64),
    dropout: float = 0.0,
    image_shape: tuple[int, int] | None = None,
) -> nn.Module:
    """An untrained network; raises ValueError for a CNN on data that is not images."""
    if kind == "mlp":
        return MLP(n_features, n_classes, hidden_sizes, dropout)
    if kind == "cnn":
        if image_shape is None or image_shape[0] * image_shape[1] != n_features:
            raise ValueError(
                f"model=cnn needs image data; these rows have {n_features} features and no image shape"
            )
        return CNN(image_shape, n_classes, channels, dropout)
    raise ValueError(f"model={kind!r} is not one of mlp, cnn")


class Standardizer(nn.Module):
    """(x - mean) / scale with the statistics of the training split, held as buffers."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale), dtype=torch.float32))

    @classmethod
    def fit(cls, features: np.ndarray) -> Standardizer:
        """Fit on training rows; constant columns get scale 1 so they map to 0, never to inf/nan."""
        mean = features.mean(axis=0)
        scale = features.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls(mean, scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.scale


class ExportedClassifier(nn.Module):
    """Raw float32 features -> class probabilities: the module logged to MLflow (see module docstring)."""

    def __init__(self, standardizer: Standardizer, network: nn.Module) -> None:
        super().__init__()
        self.standardizer = standardizer
        self.network = network

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(self.standardizer(features)), dim=-1)
