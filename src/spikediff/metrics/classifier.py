"""The project's own dataset classifier, whose penultimate features give "FID (<dataset>-classifier)".

Inception-v3 weights cannot be downloaded everywhere; a small CNN trained here on the dataset itself
gives a FID that any machine can compute. Its numbers are on a different scale from Inception FID
and are always labelled with the classifier's name. The weights ship in the package
(``metrics/weights/<dataset>_classifier.safetensors``); ``spikediff train-classifier`` retrains them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from spikediff.config import DataConfig
from spikediff.data import batch_transform, load_dataset

WEIGHTS_DIR = Path(__file__).parent / "weights"
IMAGE_SIZE = 32
FEATURE_DIM = 256


def packaged_weights(dataset: str) -> Path:
    return WEIGHTS_DIR / f"{dataset}_classifier.safetensors"


class DatasetClassifier(nn.Module):
    """Five 3x3 conv layers with BN and ReLU, three max-pools, then 256-d features and the logits."""

    def __init__(self, img_ch: int = 1, num_classes: int = 10) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(img_ch, 32), *block(32, 32), nn.MaxPool2d(2),
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
            *block(64, 128), nn.MaxPool2d(2), nn.Flatten(),
        )
        self.features = nn.Sequential(nn.Dropout(0.3), nn.Linear(128 * 4 * 4, FEATURE_DIM), nn.ReLU(inplace=True))
        self.logits = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURE_DIM, num_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, C, 32, 32]`` in [-1, 1] -> (features ``[B, 256]``, logits ``[B, num_classes]``)."""
        h = self.features(self.body(x))
        return h, self.logits(h)


def accuracy(model: DatasetClassifier, dataset, batch_size: int = 500) -> float:
    """Top-1 accuracy on an in-memory labelled dataset."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            x = batch_transform(dataset.images[start : start + batch_size], IMAGE_SIZE, False)
            correct += (model(x)[1].argmax(1) == dataset.labels[start : start + batch_size]).sum().item()
    return correct / len(dataset)


def train_classifier(
    dataset: str = "fmnist", epochs: int = 6, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
    data_dir: str | Path | None = None, progress: bool = True,
) -> tuple[DatasetClassifier, float]:
    """Train on the train split (random crops by 2-pixel shifts), return the model and test accuracy."""
    torch.manual_seed(seed)
    train = load_dataset(DataConfig(dataset=dataset, random_flip=False), IMAGE_SIZE, "train", data_dir)
    test = load_dataset(DataConfig(dataset=dataset, random_flip=False), IMAGE_SIZE, "test", data_dir)
    model = DatasetClassifier(img_ch=train.images.shape[1], num_classes=int(train.labels.max()) + 1)
    steps = epochs * (len(train) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, disable=not progress, unit="step", desc=f"{dataset} classifier")
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        for start in range(0, len(perm) - batch_size + 1, batch_size):
            idx = perm[start : start + batch_size]
            x = batch_transform(train.images[idx], IMAGE_SIZE, False)
            dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
            x = torch.roll(F.pad(x, (2, 2, 2, 2), value=-1.0), (dy, dx), dims=(2, 3))[..., 2:-2, 2:-2]
            loss = F.cross_entropy(model(x)[1], train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval(), accuracy(model, test)


def save_classifier(model: DatasetClassifier, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def load_classifier(path: str | Path) -> DatasetClassifier:
    """A classifier from a safetensors file, in eval mode."""
    state = load_file(str(path))
    model = DatasetClassifier(img_ch=state["body.0.weight"].shape[1], num_classes=state["logits.1.weight"].shape[0])
    model.load_state_dict(state)
    return model.eval()
