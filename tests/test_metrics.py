"""Scores on closed forms and on real Fashion-MNIST; the classifier's accuracy; the Inception path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikediff.cli import main
from spikediff.data import CLASS_NAMES, load_mnist_like, to_model_range, to_uint8
from spikediff.data.datasets import InMemoryImages
from spikediff.metrics import fid, frechet_distance, inception_score, kid, precision_recall, score
from spikediff.metrics.classifier import accuracy, load_classifier, packaged_weights
from spikediff.metrics.extractors import ClassifierFeatures, InceptionFeatures, find_inception_weights


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_direct_float64_computation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + np.eye(6), b @ b.T + np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    # tr sqrt(S1 S2) = sum of square roots of the (real, positive) eigenvalues of S1 S2
    tr_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_fid_from_samples_approaches_the_gaussian_value():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, size=(20000, 4))
    y = rng.normal(0.5, 2.0, size=(20000, 4))
    expected = 4 * 0.25 + 4 * (1 + 4 - 2 * 2)
    assert fid(x, y) == pytest.approx(expected, rel=0.05)
    assert fid(x, x) == pytest.approx(0.0, abs=1e-8)


def test_kid_is_unbiased_and_grows_with_shift():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    same, _ = kid(x, y, num_subsets=20, subset_size=500)
    shifted, _ = kid(x, y + 1.0, num_subsets=20, subset_size=500)
    assert abs(same) < 0.02 and shifted > 0.5


def test_inception_score_extremes():
    assert inception_score(np.zeros((100, 10)), splits=1)[0] == pytest.approx(1.0)
    confident = np.eye(10)[np.arange(100) % 10] * 50.0
    assert inception_score(confident, splits=1)[0] == pytest.approx(10.0, rel=1e-6)


def test_precision_recall_extremes():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5))
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0) == (0.0, 0.0)
    p, r = precision_recall(x, x[:, :] * 0.1)  # collapsed samples: precise but low recall
    assert p > 0.9 and r < 0.5


@pytest.fixture(scope="module")
def fmnist_uint8():
    train, _ = load_mnist_like("fmnist", "train")
    test, _ = load_mnist_like("fmnist", "test")
    rng = np.random.default_rng(0)
    pick = lambda a: to_uint8(to_model_range(torch.from_numpy(a[rng.choice(len(a), 2000, replace=False)]), 32))  # noqa: E731
    return pick(train), pick(test)


def test_classifier_fid_sanity_on_real_data(fmnist_uint8):
    train, test = fmnist_uint8
    extract = ClassifierFeatures("fmnist")
    f_train, f_test = extract(train)[0], extract(test)[0]
    f_self = f_test
    noise = torch.randint(0, 256, test.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    blurred = to_uint8(F.avg_pool2d(to_model_range(test, 32), 3, stride=1, padding=1, count_include_pad=False))
    f_noise, f_blur = extract(noise)[0], extract(blurred)[0]
    fids = {name: fid(f_test, f) for name, f in
            [("self", f_self), ("train", f_train), ("blur", f_blur), ("noise", f_noise)]}
    assert abs(fids["self"]) < 1e-6
    assert fids["self"] < fids["train"] < fids["blur"] < fids["noise"], fids
    kids = {name: kid(f_test, f, num_subsets=10, subset_size=500)[0] for name, f in
            [("train", f_train), ("blur", f_blur), ("noise", f_noise)]}
    assert kids["train"] < kids["blur"] < kids["noise"], kids


def test_packaged_classifier_accuracy_on_the_test_split():
    images, labels = load_mnist_like("fmnist", "test")
    test = InMemoryImages(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype("int64")))
    assert accuracy(load_classifier(packaged_weights("fmnist")), test) >= 0.91


def test_class_agreement_is_high_for_true_labels_and_low_for_wrong_ones():
    """Real test images "asked for" as their own class agree as often as the classifier is right; the
    same images asked for the next class almost never agree."""
    from spikediff.metrics.evaluate import class_agreement

    images, labels = load_mnist_like("fmnist", "test")
    pick = np.random.default_rng(1).choice(len(images), 500, replace=False)
    x = to_uint8(to_model_range(torch.from_numpy(images[pick].copy()), 32))
    logits = ClassifierFeatures("fmnist")(x)[1]
    truth = labels[pick].astype("int64")
    right, wrong = class_agreement(logits, truth, "fmnist"), class_agreement(logits, (truth + 1) % 10, "fmnist")
    assert right["overall"] >= 0.85 and wrong["overall"] <= 0.1
    assert set(right["per_class"]) == set(CLASS_NAMES["fmnist"]) and min(right["per_class"].values()) >= 0.4


def test_inception_path_end_to_end_with_random_weights(tmp_path, small_fmnist_dir, capsys):
    import torchvision

    weights = tmp_path / "random_inception.pth"
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    torch.save(net.state_dict(), weights)
    samples = torch.randint(0, 256, (12, 32, 32, 1), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    np.savez(tmp_path / "samples.npz", images=samples.numpy())
    code = main(["evaluate", str(tmp_path / "samples.npz"), "--dataset", "fmnist", "--features", "inception",
                 "--inception-weights", str(weights), "--data-dir", str(small_fmnist_dir), "--resize",
                 "--no-progress"])
    assert code == 0
    result = json.loads((tmp_path / "metrics-inception.json").read_text())
    assert all(np.isfinite(v) for v in result["scores"].values())
    assert "FID (inception-v3)" in result["scores"]
    assert result["protocol"]["num_samples"] == 12 and len(result["protocol"]["weights_sha256"]) == 64
    assert "FID (inception-v3)" in capsys.readouterr().out
    # the file's weights are the ones used: the same file gives the same features, another file others
    other = tmp_path / "other_inception.pth"
    torch.manual_seed(1)
    torch.save(torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                               num_classes=1008).state_dict(), other)
    images = samples.permute(0, 3, 1, 2)[:2]
    first, again, different = (InceptionFeatures(w)(images)[0] for w in (weights, weights, other))
    assert np.array_equal(first, again) and not np.allclose(first, different)


def test_missing_inception_weights_say_where_to_get_them(monkeypatch):
    monkeypatch.delenv("SPIKEDIFF_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        find_inception_weights(None)


def test_evaluate_command_with_classifier_features(tmp_path, small_fmnist_dir, capsys):
    images, labels = load_mnist_like("fmnist", "test")
    samples = to_uint8(to_model_range(torch.from_numpy(images[:50].copy()), 32))
    np.savez(tmp_path / "s.npz", images=samples.permute(0, 2, 3, 1).numpy())
    assert main(["evaluate", str(tmp_path / "s.npz"), "--dataset", "fmnist", "--data-dir", str(small_fmnist_dir),
                 "--out", str(tmp_path / "m.json"), "--resize", "--no-progress"]) == 0
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["protocol"]["extractor"] == "fmnist-classifier"
    assert set(result["scores"]) >= {"FID (fmnist-classifier)", "KID (fmnist-classifier)",
                                     "precision (fmnist-classifier, k=3)", "recall (fmnist-classifier, k=3)"}
    scores = result["scores"]
    assert score(scores, "KID") == scores["KID (fmnist-classifier)"] != score(scores, "KID std")
    assert score(scores, "recall") == scores["recall (fmnist-classifier, k=3)"]
    recipe = list((tmp_path / "cache" / "reference").glob("*.json"))
    assert len(recipe) == 1 and json.loads(recipe[0].read_text())["num_images"] == 64
    shares = result["classes"]["shares"]  # class coverage: real test images spread over every class
    assert list(shares) == list(CLASS_NAMES["fmnist"]) and abs(sum(shares.values()) - 1) < 1e-3
    assert sum(share > 0 for share in shares.values()) >= 8
    assert "classes the fmnist-classifier sees in the samples: T-shirt" in capsys.readouterr().out
    # a set of trousers only: the coverage names the one class and the missing ones
    trousers = to_uint8(to_model_range(torch.from_numpy(images[labels == 1][:50].copy()), 32))
    np.savez(tmp_path / "t.npz", images=trousers.permute(0, 2, 3, 1).numpy())
    assert main(["evaluate", str(tmp_path / "t.npz"), "--dataset", "fmnist", "--data-dir", str(small_fmnist_dir),
                 "--out", str(tmp_path / "t.json"), "--resize", "--no-progress"]) == 0
    classes = json.loads((tmp_path / "t.json").read_text())["classes"]
    assert classes["shares"]["trouser"] >= 0.9 and classes["smallest_share"] == 0


def test_our_scores_equal_torch_fidelitys_on_the_same_features():
    """spikediff computes FID, KID, IS and precision/recall itself (KID on fewer samples than
    torch-fidelity's subset size, one float64 pass over features computed once for all four scores),
    so it is held to torch-fidelity's results on the same features."""
    import torch_fidelity.metric_fid as tf_fid
    import torch_fidelity.metric_isc as tf_isc
    import torch_fidelity.metric_kid as tf_kid
    import torch_fidelity.metric_prc as tf_prc


    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 16))
    fake = rng.normal(0.3, 1.2, size=(200, 16))
    ours = fid(fake, real)
    stats = [tf_fid.fid_features_to_statistics(torch.from_numpy(f)) for f in (fake, real)]
    assert ours == pytest.approx(tf_fid.fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"],
                                 rel=1e-6)
    # one subset holding every sample: the unbiased MMD^2 does not depend on the draw
    their_kid = tf_kid.kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real[:200]), kid_subsets=1,
                                              kid_subset_size=200, verbose=False)
    assert kid(fake, real[:200], num_subsets=1, subset_size=200)[0] == pytest.approx(
        their_kid["kernel_inception_distance_mean"], rel=1e-6)
    logits = rng.normal(size=(100, 10)) * 3
    their_is = tf_isc.isc_features_to_metric(torch.from_numpy(logits), splits=1, shuffle=False)
    assert inception_score(logits, splits=1)[0] == pytest.approx(their_is["inception_score_mean"], rel=1e-5)
    their_prc = tf_prc.prc_features_to_metric(torch.from_numpy(fake).float(), torch.from_numpy(real).float(),
                                              prc_neighborhood=3, prc_batch_size=64, save_cpu_ram=False, verbose=False)
    precision, recall = precision_recall(real, fake, k=3)
    # theirs compute in float32
    assert (precision, recall) == pytest.approx((their_prc["precision"], their_prc["recall"]), abs=1e-6)
