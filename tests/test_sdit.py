"""SDiT: the WKV recurrence, shapes and parameter counts, class conditioning and classifier-free
guidance for every Gaussian backbone, training steps, and the CLI path (train, sample a class, energy)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

import spikediff
from spikediff.cli import main
from spikediff.config import ModelConfig, NeuronConfig
from spikediff.data import load_mnist_like, match_channels, to_model_range
from spikediff.diffusion import ClassGuided, Denoiser, NoiseSchedule, q_sample, sample_ddpm
from spikediff.diffusion.learned_variance import variational_bound_bits
from spikediff.models import build_model
from spikediff.models.rwkv import wkv
from spikediff.objectives import gaussian_objective
from spikediff.sample import class_labels, generate

from .conftest import TINY_ANN, TINY_SNN

TINY_SDIT = ModelConfig(arch="sdit", image_size=28, img_ch=1, ch=32, depth=2, patch_size=4, spike_steps=4,
                        neuron=NeuronConfig(kind="lif", tau=2.0), num_classes=10)


def naive_wkv(w, u, k, v):
    """The WKV definition as a direct sum over earlier tokens: O(L^2), no recurrence."""
    out = torch.empty_like(k)
    for t in range(k.shape[1]):
        weights = [torch.exp(-(t - 1 - i) * w + k[:, i]) for i in range(t)] + [torch.exp(u + k[:, t])]
        values = [v[:, i] for i in range(t + 1)]
        out[:, t] = sum(a * b for a, b in zip(weights, values, strict=True)) / sum(weights)
    return out


def two_way_naive_wkv(w, u, k, v):
    """The mean of the direct sums from the first token and from the last."""
    return (naive_wkv(w, u, k, v) + naive_wkv(w, u, k.flip(1), v.flip(1)).flip(1)) / 2


def assert_gradients_match(fn, reference, inputs, gen):
    """``fn`` and ``reference`` back-propagate the same random output gradient to the same input gradients
    (in float64)."""
    ours = [a.detach().double().requires_grad_() for a in inputs]
    ref = [a.detach().double().requires_grad_() for a in inputs]
    y, expected = fn(*ours), reference(*ref)
    grad_out = torch.randn(y.shape, generator=gen, dtype=torch.double)
    (y * grad_out).sum().backward()
    (expected * grad_out).sum().backward()
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-9)


def test_wkv_recurrence_and_its_gradients_match_the_direct_sum():
    gen = torch.Generator().manual_seed(0)
    w = torch.rand(5, generator=gen, dtype=torch.double) * 2 + 0.05
    u = torch.randn(5, generator=gen, dtype=torch.double)
    k, v = (torch.randn(3, 9, 5, generator=gen, dtype=torch.double) * 2 for _ in range(2))
    torch.testing.assert_close(wkv(w, u, k, v), naive_wkv(w, u, k, v), rtol=1e-10, atol=1e-10)
    assert_gradients_match(wkv, naive_wkv, (w, u, k, v), gen)
    assert wkv(w.float(), u.float(), k.float(), v.float()).dtype == torch.float32


def test_two_way_wkv_and_its_gradients_are_the_mean_of_both_directions_direct_sums():
    gen = torch.Generator().manual_seed(1)
    w = torch.rand(4, generator=gen, dtype=torch.double) + 0.05
    u = torch.randn(4, generator=gen, dtype=torch.double)
    k, v = (torch.randn(2, 7, 4, generator=gen, dtype=torch.double) for _ in range(2))
    torch.testing.assert_close(wkv(w, u, k, v, two_way=True), two_way_naive_wkv(w, u, k, v), rtol=1e-10, atol=1e-10)
    assert_gradients_match(lambda *a: wkv(*a, two_way=True), two_way_naive_wkv, (w, u, k, v), gen)


def test_wkv_falls_back_to_the_float64_recurrence_where_float32_would_underflow():
    from spikediff.models.rwkv import _wkv_as_matrix_product, _wkv_as_scan

    gen = torch.Generator().manual_seed(2)
    w = torch.rand(3, generator=gen) + 0.05
    u = torch.randn(3, generator=gen)
    k, v = (torch.randn(2, 6, 3, generator=gen) for _ in range(2))
    k[0, 4, 1] = 120.0  # e^(k - max) of every other key of that channel underflows in float32
    assert _wkv_as_matrix_product(w, u, k, v, two_way=False) is None
    expected = naive_wkv(w.double(), u.double(), k.double(), v.double())
    torch.testing.assert_close(wkv(w, u, k, v), expected.float(), rtol=1e-5, atol=1e-5)
    # the fallback's written-out backward, against autograd through the direct sum
    assert_gradients_match(_wkv_as_scan, naive_wkv, (w, u, k, v), gen)


def test_wkv_under_bf16_autocast_sums_in_float32():
    gen = torch.Generator().manual_seed(3)
    w = torch.rand(8, generator=gen) + 0.05
    u = torch.randn(8, generator=gen)
    k, v = (torch.randn(2, 40, 8, generator=gen).bfloat16() for _ in range(2))
    expected = naive_wkv(w.double(), u.double(), k.double(), v.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = wkv(w, u, k, v)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.double(), expected, rtol=1e-2, atol=1e-2)  # bf16's rounding of the result only


@pytest.mark.slow
def test_paper_presets_have_the_reference_parameter_counts():
    # counted on foolLain/SDiT's Diffusion_RWKV(input_size=28, patch_size=2, in_channels=3, num_classes=10,
    # learn_sigma=False); with its default learned-variance head: 11,667,259 and 36,052,047
    for name, count in (("sdit-fmnist", 11_662_393), ("sdit-cifar10", 36_045_645)):
        model = spikediff.build(spikediff.get_preset(name))
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count, name


def test_cpu_lever_preset_is_the_small_preset_with_the_levers_and_only_them():
    from dataclasses import asdict

    small, cpu = spikediff.get_preset("fmnist-sdit-small"), spikediff.get_preset("fmnist-sdit-cpu-small")
    differs = {f"{part}.{k}" for part in ("model", "diffusion", "train", "data")
               for k, v in asdict(getattr(cpu, part)).items() if asdict(getattr(small, part))[k] != v}
    assert differs == {"model.zero_gate", "model.condition_every_block", "model.two_way_scan",
                       "diffusion.min_snr_gamma", "train.ema_decay", "train.ema_warmup"}
    twin = spikediff.get_preset("fmnist-sdit-cpu-ann-small")
    assert replace(twin.model, arch="sdit") == cpu.model and twin.train == cpu.train
    counts = [sum(p.numel() for p in spikediff.build(c).parameters() if p.requires_grad) for c in (cpu, twin)]
    assert counts[0] == counts[1]


def test_learned_variance_head_has_the_reference_count_and_twice_the_channels():
    config = replace(spikediff.get_preset("sdit-fmnist").model, learn_sigma=True)
    model = build_model(config)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 11_667_259  # Diffusion_RWKV's default
    out = build_model(replace(TINY_SDIT, learn_sigma=True))(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]))
    assert out.shape == (2, 2, 28, 28)
    with pytest.raises(ValueError, match="SDiT option"):
        build_model(replace(TINY_SNN, learn_sigma=True))


def test_learned_variance_spans_ddpms_two_fixed_variances():
    schedule = NoiseSchedule.linear(1000)
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def fixed_eps(x, t):
        return 0.5 * x

    def learned(v):
        return lambda x, t: torch.cat([fixed_eps(x, t), torch.full_like(x, v)], dim=1)

    def run(model, variance, learned_variance=False):
        return sample_ddpm(Denoiser(model, learned_variance=learned_variance), schedule, noise, 10,
                           torch.Generator().manual_seed(1), variance=variance)

    torch.testing.assert_close(run(learned(-1.0), "learned", True), run(fixed_eps, "fixedsmall"))
    torch.testing.assert_close(run(learned(1.0), "learned", True), run(fixed_eps, "fixedlarge"))
    with pytest.raises(ValueError, match="learn_sigma"):
        run(fixed_eps, "learned")
    with pytest.raises(ValueError, match="output has 2 channels; a network that predicts without a variance has 1"):
        run(learned(1.0), "fixedlarge")


def test_variational_bound_vanishes_for_the_true_posterior_only():
    schedule = NoiseSchedule.linear(1000)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1
    t = torch.tensor([1, 10, 500, 999])
    x_t = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=gen))
    posterior = variational_bound_bits(schedule, x0, x_t, t, x0, torch.full_like(x0, -1.0))
    torch.testing.assert_close(posterior, torch.zeros(4), atol=1e-6, rtol=0)
    too_wide = variational_bound_bits(schedule, x0, x_t, t, x0, torch.full_like(x0, 1.0))
    assert (too_wide[:2] > 1e-3).all() and too_wide[3] < 1e-6  # late in the chain beta ~ posterior variance
    wrong_mean = variational_bound_bits(schedule, x0, x_t, t, x0 * 0.5, torch.full_like(x0, -1.0))
    assert (wrong_mean[:2] > 1).all() and wrong_mean[2] > 1e-5  # the mean matters less as noise grows
    # t = 0 scores the decoder: a sharp decoder centred on the image beats a shifted one
    t0 = torch.zeros(4, dtype=torch.long)
    sharp = variational_bound_bits(schedule, x0, x0, t0, x0, torch.full_like(x0, -1.0))
    shifted = variational_bound_bits(schedule, x0, x0, t0, x0 + 0.05, torch.full_like(x0, -1.0))
    assert (sharp < shifted).all()


@pytest.mark.parametrize("config", [
    TINY_SDIT,
    replace(TINY_SDIT, img_ch=3, patch_size=2, depth=4, num_classes=0),
    replace(TINY_SDIT, image_size=32, patch_size=2),
])
def test_sdit_maps_images_to_predictions_of_the_same_shape(config):
    model = build_model(config)
    x = torch.randn(2, config.img_ch, config.image_size, config.image_size)
    y = torch.tensor([1, 2]) if config.num_classes else None
    assert model(x, torch.tensor([0, 999]), y).shape == x.shape
    with pytest.raises(ValueError, match="patch_size"):
        build_model(replace(config, image_size=30, patch_size=4))


def test_spiking_mixer_outputs_are_firing_rates():
    block = build_model(TINY_SDIT).mid_block
    rates = block._spiking(block.neuron1, torch.randn(2, 5, 32) * 3)
    assert set(rates.unique().tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert 0 < rates.mean() < 1


def _nontrivial(model: torch.nn.Module) -> torch.nn.Module:
    """Randomise the (near-)zero-initialised heads, and widen the class embedding (init N(0, 0.02)), so
    that predictions depend on the input and the label: in SDiT the label reaches the patches only
    through spikes, which a small change may not flip."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.abs().max() < 1e-3:
                p.normal_(0, 0.1)
        model.class_embedding.table.weight.normal_(0, 1)
    return model.eval()


@pytest.mark.parametrize("config", [TINY_SDIT, replace(TINY_SNN, num_classes=10), replace(TINY_ANN, num_classes=10)])
def test_guidance_scale_one_is_the_conditional_prediction(config):
    model = _nontrivial(build_model(config))
    size = config.image_size
    x, t = torch.randn(4, config.img_ch, size, size), torch.tensor([5, 200, 600, 990])
    y, null = torch.tensor([0, 3, 3, 9]), torch.full((4,), 10)
    with torch.no_grad():
        cond, uncond = model(x, t, y), model(x, t, null)
        assert not torch.allclose(cond, uncond)  # the label matters
        torch.testing.assert_close(model(x, t), uncond)  # no label = the "no class" label
        torch.testing.assert_close(ClassGuided(model, y, 1.0, 10)(x, t), cond)
        torch.testing.assert_close(ClassGuided(model, y, 0.0, 10)(x, t), uncond, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ClassGuided(model, y, 2.5, 10)(x, t), uncond + 2.5 * (cond - uncond),
                                   rtol=1e-4, atol=1e-5)


def test_unconditional_models_refuse_labels_and_default_labels_cover_every_class():
    model = build_model(TINY_SNN)
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(1, 1, 32, 32), torch.tensor([3]), torch.tensor([1]))
    config = replace(spikediff.get_preset("fmnist-sdit-small"), model=TINY_SDIT)
    assert class_labels(config, 25, None).tolist() == [i % 10 for i in range(25)]
    assert class_labels(config, 3, 7).tolist() == [7, 7, 7]
    with pytest.raises(ValueError, match="0..9"):
        class_labels(config, 3, 10)
    with pytest.raises(ValueError, match="unconditional"):
        class_labels(spikediff.get_preset("fmnist-snn-small"), 3, 1)
    with pytest.raises(ValueError, match="class conditioning"):
        build_model(replace(spikediff.get_preset("sd-vq-fmnist").model, num_classes=10))
    with pytest.raises(ValueError, match="guidance needs a class-conditional"):
        class_labels(spikediff.get_preset("fmnist-snn-small"), 3, None, guidance=2.0)
    never_dropped = replace(config, model=replace(TINY_SDIT, class_dropout=0.0))
    with pytest.raises(ValueError, match="class_dropout = 0"):
        class_labels(never_dropped, 3, None, guidance=2.0)
    with pytest.raises(ValueError, match="0..9"):
        build_model(TINY_SDIT).eval()(torch.randn(1, 1, 28, 28), torch.tensor([3]), torch.tensor([11]))


def test_label_dropout_feeds_the_null_class_at_the_configured_rate():
    config = replace(spikediff.get_preset("fmnist-sdit-small"), model=replace(TINY_SDIT, class_dropout=0.25))
    objective = gaussian_objective(config)
    draws = objective.draws(torch.Size([4000, 1, 28, 28]), torch.Generator().manual_seed(0))
    assert abs(draws["drop"].float().mean().item() - 0.25) < 0.03
    seen = {}

    def recorder(x, t, y):
        seen["y"] = y
        return torch.zeros_like(x)

    d = {k: v[:64] for k, v in draws.items()} | {"y": torch.arange(64) % 10}
    objective.loss(recorder, torch.zeros(64, 1, 28, 28), d)
    expected = torch.where(d["drop"], 10, d["y"])
    assert torch.equal(seen["y"], expected) and (expected == 10).any() and (expected < 10).any()


def test_a_few_training_steps_lower_the_loss_on_real_images():
    images, labels = load_mnist_like("fmnist", "train")
    x0 = to_model_range(torch.from_numpy(images[:64].copy()), 28)
    y = torch.from_numpy(labels[:64].astype("int64"))
    config = replace(spikediff.get_preset("fmnist-sdit-small"), model=TINY_SDIT)
    torch.manual_seed(0)
    model = build_model(config.model)
    objective = gaussian_objective(config)
    fixed = objective.draws(x0.shape, torch.Generator().manual_seed(1)) | {"y": y}

    def held_loss() -> float:
        with torch.no_grad():
            return objective.loss(model, x0, fixed).item()

    before = held_loss()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(2)
    for _ in range(30):
        loss = objective.loss(model, x0, objective.draws(x0.shape, gen) | {"y": y})
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_loss() < 0.8 * before


def test_grey_data_feeds_rgb_models_and_rgb_samples_score_against_grey_data():
    grey = torch.rand(2, 1, 4, 4)
    assert torch.equal(match_channels(grey, 3), grey.expand(-1, 3, -1, -1))
    assert match_channels(grey, 1) is grey
    with pytest.raises(ValueError, match="img_ch"):
        match_channels(torch.rand(2, 3, 4, 4), 1)
    from spikediff.metrics.extractors import make_extractor

    extractor = make_extractor("classifier", "fmnist")
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    feats_grey, _ = extractor(images)
    feats_rgb, _ = extractor(images.expand(-1, 3, -1, -1))
    torch.testing.assert_close(feats_rgb, feats_grey)


def test_conditional_training_sampling_a_class_and_energy_from_the_cli(tmp_path, small_fmnist_dir):
    run = tmp_path / "sdit"
    sets = ["model.ch=32", "model.depth=2", "train.batch_size=8", "train.total_steps=3", "train.sample_every=0",
            "train.compile=off", "train.precision=fp32", "train.log_every=1"]
    assert main(["train", "--preset", "fmnist-sdit-small", "--out", str(run), "--data-dir", str(small_fmnist_dir),
                 "--no-progress", "--set", "model.learn_sigma=true", *[a for s in sets for a in ("--set", s)]]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in log if "loss" in r)
    out = tmp_path / "class3"
    assert main(["sample", str(run), "--out", str(out), "--num", "4", "--steps", "2", "--class", "3", "--cfg", "2.0",
                 "--sampler", "ddpm", "--no-png", "--no-progress", "--compile", "off", "--evaluate",
                 "--data-dir", str(small_fmnist_dir)]) == 0
    meta = json.loads((out / "sampling.json").read_text())
    assert meta["classes"] == 3 and meta["cfg"] == 2.0
    agreement = json.loads((out / "metrics-classifier.json").read_text())["class_agreement"]
    assert list(agreement["per_class"]) == ["dress"] and agreement["overall"] == agreement["per_class"]["dress"]
    assert spikediff.metrics.load_images(out).shape == (4, 1, 28, 28)
    energy = tmp_path / "energy"
    assert main(["energy", str(run), "--num-images", "4", "--steps", "2", "--out", str(energy),
                 "--data-dir", str(small_fmnist_dir)]) == 0
    report = json.loads((energy / "energy.json").read_text())
    layers = report["report"]["layers"]
    # the spikes of SDiT are averaged before any weight layer: every layer is a MAC layer, and its
    # neurons are reported (and drawn) themselves: two per block
    assert layers and all(layer["input"] == "real" for layer in layers)
    neurons = report["report"]["neurons"]
    assert len(neurons) == 2 * 3 and all(n["kind"] == "LIFNeuron" for n in neurons)
    # the training log carries every neuron's firing rate on each logged step, by the same names
    logged = [r["firing_rates"] for r in log if "loss" in r]
    assert len(logged) == 3 and all(set(rates) == {n["name"] for n in neurons} for rates in logged)
    assert all(0.0 <= rate <= 1.0 for rates in logged for rate in rates.values())
    # a conditional Spiking U-Net trains from the same flags; an unconditional one refuses --class
    unet = tmp_path / "unet"
    assert main(["train", "--preset", "fmnist-snn-small", "--out", str(unet), "--data-dir", str(small_fmnist_dir),
                 "--no-progress", "--set", "model.num_classes=10", "--set", "model.ch=16",
                 *[a for s in sets[2:] for a in ("--set", s)]]) == 0
    assert spikediff.load(unet).class_embedding is not None
    plain = tmp_path / "plain"
    assert main(["train", "--preset", "fmnist-snn-small", "--out", str(plain), "--data-dir", str(small_fmnist_dir),
                 "--no-progress", "--set", "model.ch=16", *[a for s in sets[2:] for a in ("--set", s)]]) == 0
    assert main(["sample", str(plain), "--out", str(tmp_path / "x"), "--num", "2", "--steps", "1", "--class", "1",
                 "--no-progress"]) != 0


def test_firing_rate_plot_shows_the_neurons_of_a_network_that_fires(fmnist_batch):
    """SDiT's spikes never reach a weight layer; the plot must still show its neurons, firing."""
    from spikediff.energy.plots import firing_rate_rows
    from spikediff.energy.report import measure_energy

    torch.manual_seed(0)
    model = spikediff.build(replace(spikediff.get_preset("fmnist-sdit-small"), model=replace(TINY_SDIT, num_classes=0)))
    with torch.no_grad():
        for block in [*model.in_blocks, model.mid_block, *model.out_blocks]:
            block.time_mix.output.weight.mul_(30)  # well above the threshold: a network that fires
            block.channel_mix.value.weight.normal_(0, 1)
    report = measure_energy(model, fmnist_batch[:4, :, 2:30, 2:30], [100, 900])
    rows, what = firing_rate_rows(report)
    assert what == "neuron firing rate" and len(rows) == 2 * (len(model.in_blocks) * 2 + 1)
    assert all(row.firing_rate > 0.01 for row in rows), [(row.name, row.firing_rate) for row in rows]


def test_sampling_in_pieces_equals_one_run_labels_included():
    config = replace(spikediff.get_preset("fmnist-sdit-small"), model=TINY_SDIT)
    model = _nontrivial(build_model(config.model))
    kwargs = dict(sampler="ddpm", steps=2, seed=3, batch_size=2, guidance=1.5)  # ancestral noise, guidance
    whole = generate(model, config, 6, **kwargs)
    pieces = torch.cat([generate(model, config, 4, **kwargs), generate(model, config, 2, first=4, **kwargs)])
    assert torch.equal(whole, pieces)
    assert class_labels(config, 3, None, first=8).tolist() == [8, 9, 0]


def test_ann_twin_is_the_same_transformer_without_neurons():
    from spikediff.snn.neurons import Neuron

    sdit, twin = build_model(TINY_SDIT), build_model(replace(TINY_SDIT, arch="ann_sdit"))
    assert sdit.state_dict().keys() == twin.state_dict().keys()  # the same weights, so the same checkpoints
    assert not any(isinstance(m, Neuron) for m in twin.modules()) and any(isinstance(m, Neuron) for m in sdit.modules())
    h = torch.randn(2, 5, 32)
    assert torch.equal(twin.mid_block._spiking(twin.mid_block.neuron1, h), h)  # real outputs, unbounded
    assert spikediff.families.family_of("ann_sdit").counts_as_ann(replace(spikediff.get_preset(
        "fmnist-sdit-ann-small"), model=replace(TINY_SDIT, arch="ann_sdit")))


def test_zero_gate_starts_every_block_as_the_identity_gate():
    """With ``model.zero_gate`` the reconstruction gate's scale is 0 at init: a block returns its patch
    tokens plus the mixers' outputs, not a random multiple of them."""
    torch.manual_seed(0)
    block = build_model(replace(TINY_SDIT, zero_gate=True)).mid_block
    x, cond = torch.randn(2, 50, 32) * 3, torch.randn(2, 32)
    joined = torch.cat([x, block.recon_tokens.expand(2, -1, -1)], dim=1)
    joined = joined + block._spiking(block.neuron1, block.time_mix(block.norm1(joined)))
    joined = joined + block._spiking(block.neuron2, block.channel_mix(block.norm2(joined)))
    with torch.no_grad():
        torch.testing.assert_close(block(x, cond), joined[:, :50])
    plain = build_model(TINY_SDIT).mid_block
    assert plain.recon_out.weight.abs().sum() > 0  # the paper's gate: random multiplications at init


def test_sdit_compiled_gives_the_eager_output_and_its_gradients(caplog):
    """compile=auto may now compile SDiT (its WKV is a matrix product): the compiled network, breaking
    its graph only at the WKV's underflow check, computes what the eager one does, silently."""
    torch.manual_seed(0)
    model = build_model(replace(TINY_SDIT, two_way_scan=True, condition_every_block=True))
    x, t, y = torch.randn(4, 1, 28, 28), torch.tensor([1, 200, 600, 999]), torch.tensor([0, 3, 5, 9])
    eager = model(x, t, y)
    eager.square().sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    compiled = torch.compile(model)(x, t, y)
    compiled.square().sum().backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    for got, want in zip([p.grad for p in model.parameters() if p.grad is not None], eager_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)
    assert "Graph break" not in caplog.text


def test_two_way_scan_lets_early_tokens_see_later_ones():
    from spikediff.models.rwkv import TimeMix

    torch.manual_seed(0)
    x = torch.randn(1, 6, 16)
    later = x.clone()
    later[0, 5] += 1.0  # change only the last token
    for two_way, first_token_moves in [(False, False), (True, True)]:
        mix = TimeMix(16, 0, 4, two_way=two_way)
        with torch.no_grad():
            moved = (mix(later) - mix(x))[0, 0].abs().max() > 1e-6
        assert bool(moved) == first_token_moves


def test_grid_shift_brings_each_patch_its_four_neighbours_and_leaves_the_other_tokens_their_predecessor():
    from spikediff.models.rwkv import grid_shift

    grid, dim = 3, 10  # quarters of 2, 2, 2 and 4 channels
    x = torch.randn(2, 1 + grid * grid + 2, dim)
    shifted = grid_shift(x, grid)

    def cell(r: int, c: int) -> torch.Tensor:
        return x[:, 1 + r * grid + c] if 0 <= r < grid and 0 <= c < grid else torch.zeros(2, dim)

    for r in range(grid):
        for c in range(grid):
            got = shifted[:, 1 + r * grid + c]
            torch.testing.assert_close(got[:, 0:2], cell(r, c - 1)[:, 0:2], rtol=0, atol=0)  # from the left
            torch.testing.assert_close(got[:, 2:4], cell(r, c + 1)[:, 2:4], rtol=0, atol=0)  # from the right
            torch.testing.assert_close(got[:, 4:6], cell(r - 1, c)[:, 4:6], rtol=0, atol=0)  # from above
            torch.testing.assert_close(got[:, 6:], cell(r + 1, c)[:, 6:], rtol=0, atol=0)  # from below
    assert torch.equal(shifted[:, 0], torch.zeros(2, dim))  # the condition token: nothing before it
    assert torch.equal(shifted[:, 10:], x[:, 9:11])  # the reconstruction tokens: their predecessors


def test_grid_shift_lets_a_patch_see_the_patch_below_it_through_a_one_way_scan():
    """One way and with the 1D shift, the first patch token sees nothing after it; with the grid shift
    it sees the patch below it (``grid`` tokens later) in one time-mix."""
    from functools import partial

    from spikediff.models.rwkv import TimeMix, grid_shift

    torch.manual_seed(0)
    grid = 3
    x = torch.randn(1, 1 + grid * grid, 16)
    below = x.clone()
    below[0, 1 + grid] += 1.0  # the patch under the first one
    for shift, first_patch_moves in [({}, False), ({"shift": partial(grid_shift, grid=grid)}, True)]:
        mix = TimeMix(16, 0, 4, **shift)
        with torch.no_grad():
            moved = (mix(below) - mix(x))[0, 1].abs().max() > 1e-6
        assert bool(moved) == first_patch_moves


def test_sincos_positions_start_every_patch_token_at_its_own_2d_code():
    from spikediff.models.sdit import sincos_positions

    code = sincos_positions(32, 7)
    assert code.shape == (49, 32) and code.abs().max() <= 1.0
    assert torch.cdist(code, code).add(torch.eye(49) * 1e3).min() > 0.1  # every position its own code
    # the row's half depends on the row only, the column's half on the column only
    grid = code.view(7, 7, 32)
    assert torch.equal(grid[:, :1, :16].expand(-1, 7, -1), grid[..., :16])
    assert torch.equal(grid[:1, :, 16:].expand(7, -1, -1), grid[..., 16:])
    model = build_model(replace(TINY_SDIT, sincos_positions=True))
    assert torch.equal(model.pos_embed[0, 1:], code) and torch.equal(model.pos_embed[0, 0], torch.zeros(32))
    assert build_model(TINY_SDIT).pos_embed.abs().sum() == 0  # the paper's: zero at start
    assert model.pos_embed.requires_grad  # learned from there
    with pytest.raises(ValueError, match="divisible by 4"):
        build_model(replace(TINY_SDIT, ch=30, sincos_positions=True))


def test_input_skip_adds_a_conv_of_the_noisy_input_that_starts_at_zero():
    """``model.input_skip``: the output conv reads the noisy input beside the transformer's output; its
    weights on the input start at 0 (the network's first outputs are the plain ones) and add exactly a
    3x3 convolution of the input once trained."""
    torch.manual_seed(0)
    model = build_model(replace(TINY_SDIT, input_skip=True)).eval()
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([10, 900]), torch.tensor([2, 7])
    skip_weights = model.conv.weight[:, 1:]
    assert model.conv.in_channels == 2 and skip_weights.abs().sum() == 0
    with torch.no_grad():
        before = model(x, t, y)
        kernel = torch.randn_like(skip_weights)
        skip_weights.copy_(kernel)
        after = model(x, t, y)
    torch.testing.assert_close(after - before, torch.nn.functional.conv2d(x, kernel, padding=1), rtol=1e-4, atol=1e-5)


def test_fast_preset_is_the_cpu_preset_with_its_measured_lever_only():
    from dataclasses import asdict

    cpu, fast = spikediff.get_preset("fmnist-sdit-cpu-small"), spikediff.get_preset("fmnist-sdit-fast-small")
    differs = {f"{part}.{k}" for part in ("model", "diffusion", "train", "data")
               for k, v in asdict(getattr(fast, part)).items() if asdict(getattr(cpu, part))[k] != v}
    assert differs == {"train.lr"} and fast.train.lr == 2 * cpu.train.lr
    twin = spikediff.get_preset("fmnist-sdit-fast-ann-small")
    assert replace(twin.model, arch="sdit") == fast.model and twin.train == fast.train


def test_condition_every_block_reaches_every_patch_token():
    """Added at every block (zero-initialised, so the model starts as the plain one), the class moves
    every patch token's features once the projection has learned anything."""
    torch.manual_seed(0)
    config = replace(TINY_SDIT, condition_every_block=True)
    model = build_model(config).eval()
    x, t = torch.randn(1, 1, 28, 28), torch.tensor([500])
    block = model.in_blocks[0]
    assert block.condition.weight.abs().sum() == 0
    with torch.no_grad():
        block.condition.weight.normal_(0, 0.5)
    features = {}
    block.register_forward_hook(lambda m, a, out: features.__setitem__(len(features), out))
    with torch.no_grad():
        model(x, t, torch.tensor([1]))
        model(x, t, torch.tensor([7]))
    change = (features[0] - features[1])[0, 1:].abs().amax(-1)  # per patch token
    assert (change > 1e-4).all(), change


def test_probe_sees_that_the_first_patch_is_denoised_alone_unless_the_scan_runs_both_ways(fmnist_batch):
    """benchmarks/sdit_probe.py on the ANN twin with identity gates: one way, the first patch token sees
    only the condition token and itself (swapping every other patch changes it by exactly 0), the last
    sees the others; both ways, the first sees them too."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        from sdit_probe import probe
    finally:
        sys.path.pop(0)
    x, other = fmnist_batch[:4, :, 2:30, 2:30], fmnist_batch[4:8, :, 2:30, 2:30]
    y = torch.arange(4) % 10
    for two_way in (False, True):
        torch.manual_seed(0)
        model = build_model(replace(TINY_SDIT, arch="ann_sdit", zero_gate=True, two_way_scan=two_way))
        result = probe(model, x, other, 500, 100, y)
        swap = result["swap_the_other_patches"]
        assert (swap["first"] > 1e-3) == two_way and swap["last"] > 1e-3, swap
        assert result["step_change"] > 0 and result["class_change"] > 0 and result["firing_rates"] == {}
    spiking = probe(build_model(TINY_SDIT), x, other, 500, 100, y)
    assert len(spiking["firing_rates"]) == 6
