"""Image-folder datasets (CelebA, LSUN bedroom exported to images): center crop, resize, uint8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spikediff.data.paths import MissingDatasetError, user_roots

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
FOLDER_NAMES = {"celeba": ("celeba/img_align_celeba", "img_align_celeba", "celeba"), "lsun-bedroom": ("lsun-bedroom",
                "bedroom", "lsun/bedroom")}


def center_crop_resize(image: Image.Image, size: int) -> np.ndarray:
    """Largest centered square, resized to ``size`` (bicubic with antialias), as uint8 ``[3, H, W]``."""
    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


class ImageFolder(torch.utils.data.Dataset):
    """Every image under a folder (recursively, sorted), read lazily as uint8 ``[3, size, size]``."""

    def __init__(self, root: Path, size: int) -> None:
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.files[index]) as image:
            return torch.from_numpy(center_crop_resize(image, self.size))


def find_image_folder(dataset: str, size: int, data_dir: str | Path | None = None) -> ImageFolder:
    """The image folder of ``dataset`` under ``--data-dir`` or ``$SPIKEDIFF_DATA``."""
    tried = []
    for root in user_roots(data_dir):
        for name in ("", *FOLDER_NAMES[dataset]):
            directory = root / name if name else root
            tried.append(directory)
            if directory.is_dir():
                folder = ImageFolder(directory, size)
                if len(folder):
                    return folder
    raise MissingDatasetError(
        f"{dataset} images not found; looked in: {', '.join(map(str, tried)) or 'nothing'}. Provide a folder of "
        f"images (e.g. img_align_celeba/ for CelebA, LSUN bedroom exported to JPEG) as --data-dir or "
        "$SPIKEDIFF_DATA; it is center-cropped and resized to the preset's size."
    )
