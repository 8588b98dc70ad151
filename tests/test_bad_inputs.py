"""Bad inputs to `spikediff evaluate`: one clear line or a stated conversion, never a silent wrong score."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from spikediff.cli import main
from spikediff.metrics import load_images


@pytest.fixture(scope="module")
def garments() -> np.ndarray:
    from spikediff.data import load_mnist_like

    images, _ = load_mnist_like("fmnist", "test")
    return images[:12]


def test_float_images_are_converted_explicitly_not_cast_to_black(tmp_path, garments):
    as_uint8 = load_images(_npz(tmp_path / "u8.npz", garments))
    for name, floats in (("unit", garments / 255.0), ("signed", garments / 127.5 - 1.0)):
        notes: list[str] = []
        converted = load_images(_npz(tmp_path / f"{name}.npz", floats.astype(np.float32)), notes)
        assert (converted.int() - as_uint8.int()).abs().max() <= 1
        assert len(notes) == 1 and "scaled to 0..255" in notes[0]


@pytest.mark.parametrize("case,expected", [
    ("five_d", "expected images N x H x W"),
    ("one_image", "at least 2"),
    ("wide_floats", "float images span"),
    ("integers", "dtype int64"),
    ("not_npz", "not a readable .npz"),
    ("mixed_pngs", "PNGs of different sizes"),
])
def test_unusable_images_are_one_clear_line(capsys, tmp_path, garments, case, expected):
    path = {
        "five_d": lambda: _npz(tmp_path / "a.npz", garments[:, None, :, :, None]),
        "one_image": lambda: _npz(tmp_path / "a.npz", garments[:1]),
        "wide_floats": lambda: _npz(tmp_path / "a.npz", garments.astype(np.float32)),
        "integers": lambda: _npz(tmp_path / "a.npz", garments.astype(np.int64)),
        "not_npz": lambda: _write(tmp_path / "a.npz", b"not a zip file"),
        "mixed_pngs": lambda: _pngs(tmp_path / "pngs", garments),
    }[case]()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main(["evaluate", str(path), "--dataset", "fmnist", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("spikediff: error:") and expected in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no metrics file written


def test_a_stated_conversion_is_recorded_beside_the_scores(capsys, tmp_path, garments, small_fmnist_dir):
    path = _npz(tmp_path / "unit.npz", (garments / 255.0).astype(np.float32))
    assert main(["evaluate", str(path), "--dataset", "fmnist", "--data-dir", str(small_fmnist_dir),
                 "--no-progress"]) == 0
    assert "scaled to 0..255" in capsys.readouterr().err
    result = json.loads((tmp_path / "metrics-classifier.json").read_text())
    assert "scaled to 0..255" in result["protocol"]["conversion"][0]


def _npz(path, array):
    np.savez(path, images=array)
    return path


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _pngs(folder, images):
    folder.mkdir()
    Image.fromarray(images[0]).save(folder / "0.png")
    Image.fromarray(np.pad(images[1], 2)).save(folder / "1.png")
    return folder


@pytest.mark.parametrize("case,expected", [
    ("out_is_a_file", "Not a directory"),
    ("cuda_without_gpu", "no CUDA GPU"),
    ("resume_before_first_checkpoint", "--overwrite"),
])
def test_training_setup_failures_are_one_clear_line(capsys, tmp_path, case, expected):
    import torch

    if case == "cuda_without_gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "run"
    extra: list[str] = []
    if case == "out_is_a_file":
        (tmp_path / "file").write_text("mine")
        out = tmp_path / "file" / "run"
    elif case == "cuda_without_gpu":
        extra = ["--device", "cuda"]
    else:
        out.mkdir()
        (out / "config.json").write_text("{}")
        extra = ["--resume"]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main(["train", "--preset", "fmnist-snn-small", "--out", str(out), "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("spikediff: error:") and expected in err and "\n" not in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_truncated_gzip_dataset_file_is_named(capsys, small_fmnist_dir, tmp_path):
    images = small_fmnist_dir / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:200])
    code = main(["train", "--preset", "fmnist-snn-small", "--out", str(tmp_path / "run"), "--data-dir",
                 str(small_fmnist_dir), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "train-images-idx3-ubyte.gz is truncated" in err and "\n" not in err
