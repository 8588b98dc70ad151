"""KMNIST and EMNIST-Letters readers on small IDX files written here (neither can be downloaded on
these machines): found the way the other datasets are, upright, labelled from 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikediff.config import DataConfig
from spikediff.data import MissingDatasetError, class_names, load_dataset, load_mnist_like
from tests.conftest import write_idx


def glyph() -> np.ndarray:
    """An "L": a stroke on the left and a foot at the bottom; transposed, the foot would stand on the right."""
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 6] = 255  # the upright stroke, on the left
    image[23, 6:20] = 255  # the foot, at the bottom
    return image


def write_split(folder, names: dict[str, str], images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{names['images']}.gz", images)
    write_idx(folder / f"{names['labels']}.gz", labels)


def test_emnist_letters_are_read_upright_and_labelled_from_zero(tmp_path, monkeypatch):
    monkeypatch.delenv("SPIKEDIFF_DATA", raising=False)
    upright = np.stack([glyph(), glyph()[::-1]])
    stored = upright.transpose(0, 2, 1)  # EMNIST keeps its images transposed
    for split in ("train", "test"):  # in torchvision's layout, under --data-dir
        write_split(tmp_path / "EMNIST" / "raw", {"images": f"emnist-letters-{split}-images-idx3-ubyte",
                                                 "labels": f"emnist-letters-{split}-labels-idx1-ubyte"},
                    stored, np.array([1, 26], np.uint8))
    images, labels = load_mnist_like("letters", "train", tmp_path)
    assert np.array_equal(images, upright) and labels.tolist() == [0, 25]
    assert images[0, 23, 19] == 255 and images[0, 19, 23] == 0  # the foot is at the bottom, not on the right
    data = load_dataset(DataConfig(dataset="letters", random_flip=False), 28, "test", tmp_path)
    assert tuple(data.images.shape) == (2, 1, 28, 28) and data.labels.tolist() == [0, 25]
    assert class_names("letters", 26)[:3] == ("a", "b", "c") and class_names("letters", 26)[25] == "z"


def test_kmnist_reads_mnist_layout_files_from_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEDIFF_DATA", str(tmp_path))
    images = np.stack([glyph()] * 3)
    write_split(tmp_path / "kmnist", {"images": "t10k-images-idx3-ubyte", "labels": "t10k-labels-idx1-ubyte"},
                images, np.array([0, 4, 9], np.uint8))
    read, labels = load_mnist_like("kmnist", "test")
    assert np.array_equal(read, images) and labels.tolist() == [0, 4, 9]  # not transposed, labels as stored
    assert class_names("kmnist", 10)[0] == "o"


@pytest.mark.parametrize("dataset", ["kmnist", "letters"])
def test_a_missing_dataset_is_one_line_naming_its_files(tmp_path, dataset):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDatasetError) as info:
        load_mnist_like(dataset, "train", tmp_path / "empty")
    message = str(info.value)
    assert "\n" not in message and f"{tmp_path / 'empty'}" in message and "train-images-idx3-ubyte" in message
    assert "apt-get" not in message  # Debian packages neither


def synthetic_data(root, dataset: str, n: int = 8) -> None:
    """``n`` random images per split of ``dataset`` in its on-disk format, under ``root``."""
    rng = np.random.default_rng(0)
    if dataset == "cifar10":
        import pickle

        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {"data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8), "labels": list(range(n))}
            (folder / name).write_bytes(pickle.dumps(batch))
        return
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    for split, stem in (("train", "train"), ("test", "t10k")):
        if dataset == "letters":
            names = {"images": f"emnist-letters-{split}-images-idx3-ubyte",
                     "labels": f"emnist-letters-{split}-labels-idx1-ubyte"}
            labels = (np.arange(n) % 26 + 1).astype(np.uint8)
        else:
            names = {"images": f"{stem}-images-idx3-ubyte", "labels": f"{stem}-labels-idx1-ubyte"}
            labels = (np.arange(n) % 10).astype(np.uint8)
        write_split(root, names, images, labels)


# the reference's networks (Arktis2022/Spiking-Diffusion): the VQ-SVAE of 1-channel 28x28 images and the
# token denoiser; on 32x32x3 the VQ-SVAE's first conv and last transposed conv take/give 3 channels:
# + 2 x 32 x 3 x 3 weights in, + 2 x 32 x 3 x 3 weights and 2 biases out
VQ_PARAMS = {"kmnist": 50_658, "letters": 50_658, "cifar10": 50_658 + 2 * 288 + 2 * 288 + 2}
DENOISER_TRAINABLE = 3_149_632


@pytest.mark.parametrize("dataset", ["kmnist", "letters", "cifar10"])
def test_spiking_diffusion_presets_of_every_paper_dataset_build_and_train(tmp_path, dataset):
    from spikediff import build, get_preset, load
    from spikediff.cli import main

    vq, diffusion = get_preset(f"sd-vq-{dataset}"), get_preset(f"sd-diffusion-{dataset}")
    assert sum(p.numel() for p in build(vq).parameters()) == VQ_PARAMS[dataset]
    assert sum(p.numel() for p in build(diffusion).parameters() if p.requires_grad) == DENOISER_TRAINABLE
    size = 32 if dataset == "cifar10" else 28
    assert (vq.model.image_size, diffusion.diffusion.num_steps) == (size, (size // 4) ** 2)
    synthetic_data(tmp_path / "data", dataset)
    tiny = ["--set", "model.spike_steps=2", "--set", "train.batch_size=4", "--set", "train.total_steps=2",
            "--set", "train.sample_every=0", "--data-dir", str(tmp_path / "data"), "--no-progress"]
    assert main(["train", "--preset", f"sd-vq-{dataset}", "--out", str(tmp_path / "vq"), *tiny]) == 0
    assert main(["train", "--preset", f"sd-diffusion-{dataset}", "--out", str(tmp_path / "diff"),
                 "--init-from", str(tmp_path / "vq"), *tiny]) == 0
    model = load(tmp_path / "diff")
    with torch.no_grad():
        tokens = model.vq.encode(torch.zeros(2, vq.model.img_ch, size, size))
    assert tuple(tokens.shape) == (2, size // 4, size // 4)


def test_train_classifier_on_letters_gives_26_classes_that_score_images(tmp_path, monkeypatch, capsys):
    from spikediff.cli import main
    from spikediff.metrics import evaluate_images, extractors
    from spikediff.metrics.classifier import load_classifier

    synthetic_data(tmp_path / "data", "letters", n=260)  # 2 steps of batch 128
    weights = tmp_path / "letters_classifier.safetensors"
    assert main(["train-classifier", "--dataset", "letters", "--epochs", "1", "--out", str(weights),
                 "--data-dir", str(tmp_path / "data"), "--no-progress"]) == 0
    assert "letters classifier: test accuracy" in capsys.readouterr().out
    assert load_classifier(weights).logits[1].out_features == 26
    monkeypatch.setattr(extractors, "packaged_weights", lambda dataset: weights)  # where it would be installed
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    result = evaluate_images(images, "letters", data_dir=tmp_path / "data")
    assert result["protocol"]["extractor"] == "letters-classifier" and len(result["classes"]["shares"]) == 26
    assert set(result["classes"]["shares"]) == set("abcdefghijklmnopqrstuvwxyz")
