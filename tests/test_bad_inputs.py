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
    ("out_is_a_file", "a file stands where a folder is needed"),
    ("resume_before_first_checkpoint", "--overwrite"),
])
def test_training_setup_failures_are_one_clear_line(capsys, tmp_path, case, expected):
    out = tmp_path / "run"
    extra = ["--preset", "fmnist-snn-small"]
    if case == "out_is_a_file":
        (tmp_path / "file").write_text("mine")
        out = tmp_path / "file" / "run"
    else:
        out.mkdir()
        (out / "config.json").write_text("{}")
        extra = ["--resume"]  # a resumed run trains its own config: --preset would be refused as ignored
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main(["train", "--out", str(out), "--no-progress", *extra])
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


class _RunsCode:
    """A pickle that would run a shell command when loaded: what `convert` must refuse."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


TINY = ["--set", "model.ch=8", "--set", "model.ch_mult=[1]", "--set", "train.total_steps=1", "--set",
        "train.precision=fp32", "--set", "train.compile=off", "--set", "train.sample_every=0", "--no-progress"]


def _bad_command_line(case: str, tmp, data_dir) -> list[str]:
    """The command line of one bad input (files it needs are written under ``tmp``)."""
    import torch

    file = tmp / "input.pt"
    if case == "convert_not_a_checkpoint":
        file.write_bytes(b"\x00not a torch file" * 10)
    elif case == "convert_without_net_model":
        torch.save({"optimizer": {"lr": torch.tensor(1.0)}}, file)
    elif case == "convert_another_network":
        torch.save({"net_model": {"encoder.weight": torch.zeros(2, 2)}}, file)
    elif case == "convert_code_in_pickle":
        torch.save({"net_model": _RunsCode(tmp / "ran")}, file)
    if case.startswith("convert"):
        return ["convert", "sddpm", str(file), str(tmp / "imported")]
    if case == "init_from_another_model":
        import spikediff

        config = spikediff.get_preset("fmnist-ann-small")
        spikediff.save(spikediff.checkpoint.build(config), config, tmp / "ann")
        return ["train", "--preset", "fmnist-snn-small", "--out", str(tmp / "run"), "--init-from", str(tmp / "ann"),
                "--data-dir", str(data_dir), *TINY]
    if case == "empty_data_dir":
        (tmp / "empty").mkdir()
        return ["train", "--preset", "fmnist-snn-small", "--out", str(tmp / "run"), "--data-dir", str(tmp / "empty")]
    return {
        "energy_t_not_numbers": ["energy", "--preset", "fmnist-snn-small", "--t", "abc"],
        "energy_t_out_of_range": ["energy", "--preset", "fmnist-snn-small", "--t", "0,5000", "--out", str(tmp / "e")],
        "sample_on_missing_gpu": ["sample", str(tmp / "run"), "--out", str(tmp / "s"), "--device", "cuda"],
        "tg_sweep_on_missing_gpu": ["tg-sweep", str(tmp / "run"), "--device", "cuda:0"],
        "ann2snn_on_missing_gpu": ["ann2snn", str(tmp / "run"), str(tmp / "snn"), "--device", "cuda"],
        "device_not_a_device": ["sample", str(tmp / "run"), "--out", str(tmp / "s"), "--device", "gpu0"],
    }[case]


@pytest.mark.parametrize("case,code,expected", [
    ("convert_not_a_checkpoint", 1, "is not a torch checkpoint file"),
    ("convert_without_net_model", 1, "holds no 'net_model' state dict of tensors; its entries: ['optimizer']"),
    ("convert_another_network", 1, "is not a reference Spiking U-Net"),
    ("convert_code_in_pickle", 1, "refused, since loading it could run code"),
    ("init_from_another_model", 1, "holds the weights of a ann_unet"),
    ("empty_data_dir", 1, "fmnist (train) not found; looked in: {tmp}/empty,"),
    ("energy_t_not_numbers", 2,
     "argument --t: expected comma-separated whole numbers >= 0 (diffusion steps), got 'abc'"),
    ("energy_t_out_of_range", 1, "--t 5000: this model's diffusion steps run from 0 to 999"),
    ("sample_on_missing_gpu", 2, "argument --device: cuda: torch sees no CUDA GPU"),
    ("tg_sweep_on_missing_gpu", 2, "argument --device: cuda:0: torch sees no CUDA GPU"),
    ("ann2snn_on_missing_gpu", 2, "argument --device: cuda: torch sees no CUDA GPU"),
    ("device_not_a_device", 2, "argument --device: expected cpu, cuda or cuda:N, got 'gpu0'"),
])
def test_bad_command_lines_are_one_clear_line(capsys, tmp_path, small_fmnist_dir, case, code, expected):
    """Each row: the exit status, one `spikediff: error:` line naming the culprit, and nothing on disk
    changed (no output written, no code run, the system's dataset copy not used in the user's stead)."""
    import torch

    if "gpu" in case and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    work = tmp_path / "work"
    work.mkdir()
    argv = _bad_command_line(case, work, small_fmnist_dir)
    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's errors
        status = exc.code
    err = capsys.readouterr().err.strip()
    assert status == code and err.startswith("spikediff: error:") and "\n" not in err
    assert expected.format(tmp=work) in err
    after = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    if case == "init_from_another_model":  # the run folder is made before the weights are read
        after = {p: b for p, b in after.items() if "run" not in p.relative_to(work).parts}
    assert after == before


def test_a_full_disk_leaves_no_partial_checkpoint(capsys, tmp_path, small_fmnist_dir, monkeypatch):
    from safetensors import SafetensorError

    import spikediff.checkpoint

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(spikediff.checkpoint, "save_file", full_disk)
    run = tmp_path / "run"
    code = main(["train", "--preset", "fmnist-snn-small", "--out", str(run), "--data-dir", str(small_fmnist_dir),
                 *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and f"could not write the checkpoint {run}/checkpoints/step_0000001" in err
    assert "No space left on device" in err and "check the free space" in err
    assert not list((run / "checkpoints").iterdir())  # no partial checkpoint, no temporary folder left


def test_debug_shows_the_traceback(tmp_path):
    from spikediff.checkpoint import CheckpointError

    assert main(["info", str(tmp_path / "none")]) == 1
    with pytest.raises(CheckpointError, match="config.json is missing"):
        main(["info", str(tmp_path / "none"), "--debug"])
