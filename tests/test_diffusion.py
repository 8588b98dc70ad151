"""Schedules, objectives and samplers, checked on a closed-form data distribution."""

from __future__ import annotations

import pytest
import torch

from spikediff.diffusion import (
    Denoiser,
    NoiseSchedule,
    diffusion_loss,
    estimate_gamma,
    q_sample,
    respaced_coefficients,
    sample_analytic_dpm,
    sample_ddim,
    sample_ddpm,
    sample_dpm_solver_pp,
    sampling_timesteps,
    snr_weight,
    to_x0_eps,
    training_target,
)

MU, STD = 0.3, 0.25  # data ~ N(MU, STD^2) per pixel: the optimal predictions are known in closed form


def gaussian_oracle(schedule: NoiseSchedule, prediction: str = "eps"):
    """The exact E[target | x_t] for Gaussian data, as a model function."""
    abar_all = schedule.alphas_cumprod

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = abar_all[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        a, s = abar.sqrt(), (1 - abar).sqrt()
        var = abar * STD**2 + 1 - abar
        eps = s * (x - a * MU) / var
        x0 = MU + a * STD**2 * (x - a * MU) / var
        return training_target(prediction, x0, eps, abar)

    return model_fn


def test_linear_and_cosine_schedules():
    lin = NoiseSchedule.linear()
    assert lin.num_steps == 1000 and lin.betas.dtype == torch.float64
    assert lin.betas[0].item() == pytest.approx(1e-4) and lin.betas[-1].item() == pytest.approx(0.02)
    cos = NoiseSchedule.cosine(1000)
    abar = cos.alphas_cumprod
    assert bool((abar[1:] < abar[:-1]).all()) and abar[0] > 0.999 and abar[-1] < 1e-4
    with pytest.raises(ValueError):
        NoiseSchedule(torch.tensor([0.5, 1.5], dtype=torch.float64))


def test_sampling_timesteps():
    assert sampling_timesteps(1000, 1000) == list(range(999, -1, -1))
    ts = sampling_timesteps(1000, 7)
    assert len(ts) == 7 and ts[0] == 999 and ts[-1] == 0 and ts == sorted(set(ts), reverse=True)
    assert sampling_timesteps(1000, 1) == [999]
    assert sampling_timesteps(1000, [500, 20, 0]) == [500, 20, 0]
    for bad in (0, 1001, [3, 5], [1000, 0]):
        with pytest.raises(ValueError):
            sampling_timesteps(1000, bad)


def test_full_respacing_gives_ddpm_coefficients():
    sch = NoiseSchedule.linear()
    b = sch.betas
    abar = sch.alphas_cumprod
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    c = respaced_coefficients(sch, list(range(999, -1, -1)))
    flip = lambda v: v.flip(0)  # noqa: E731 - coefficients come in sampling (descending) order
    torch.testing.assert_close(flip(c["beta"]), b, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(flip(c["posterior_var"]), b * (1 - abar_prev) / (1 - abar), rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(flip(c["coef_x0"]), abar_prev.sqrt() * b / (1 - abar), rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(flip(c["coef_xt"]), (1 - b).sqrt() * (1 - abar_prev) / (1 - abar), rtol=1e-9, atol=1e-14)


def test_respacing_composes_jumps():
    sch = NoiseSchedule.linear()
    c = respaced_coefficients(sch, [999, 500, 0])
    abar = sch.alphas_cumprod
    assert c["beta"][1].item() == pytest.approx(1 - (abar[500] / abar[0]).item(), rel=1e-12)
    assert c["abar_prev"][-1].item() == 1.0


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_prediction_conversions_invert_targets(prediction):
    sch = NoiseSchedule.linear()
    x0, noise = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.randn(4, 1, 8, 8, dtype=torch.float64)
    t = torch.tensor([0, 100, 500, 999])
    abar = sch.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = q_sample(sch, x0, t, noise)
    got_x0, got_eps = to_x0_eps(prediction, training_target(prediction, x0, noise, abar), x_t, abar)
    torch.testing.assert_close(got_x0, x0, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(got_eps, noise)


@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_the_oracle_loss_is_the_posterior_variance_and_a_zero_prediction_the_second_moment(prediction):
    """For Gaussian data the best prediction (the oracle) leaves exactly the posterior variance of the
    target as loss; predicting 0 leaves the target's second moment."""
    sch = NoiseSchedule.linear()
    gen = torch.Generator().manual_seed(0)
    x0 = MU + STD * torch.randn(4096, 1, 4, 4, generator=gen, dtype=torch.float64)
    t, noise = torch.full((4096,), 300), torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    abar = float(sch.alphas_cumprod[300])
    var = abar * STD**2 + 1 - abar
    posterior = {"eps": 1 - (1 - abar) / var, "x0": STD**2 - abar * STD**4 / var}[prediction]
    oracle = diffusion_loss(gaussian_oracle(sch, prediction), sch, x0, prediction, t=t, noise=noise)
    assert oracle.item() == pytest.approx(posterior, rel=0.03)
    zero = diffusion_loss(lambda x, t: torch.zeros_like(x), sch, x0, prediction, t=t, noise=noise)
    assert zero.item() == pytest.approx({"eps": 1.0, "x0": MU**2 + STD**2}[prediction], rel=0.03)


def unclipped(model_fn) -> Denoiser:
    """An eps-predicting network whose x0 is not clipped to [-1, 1] (Gaussian data may leave it)."""
    return Denoiser(model_fn, clip=False)


def _moments(x: torch.Tensor) -> tuple[float, float]:
    return x.mean().item(), x.std().item()


@pytest.mark.parametrize(
    "sampler,kwargs",
    [
        (sample_ddim, {"steps": 250, "eta": 0.0}),
        (sample_ddim, {"steps": 250, "eta": 1.0}),
        (sample_ddpm, {"steps": 1000, "variance": "fixedlarge"}),
        (sample_ddpm, {"steps": 1000, "variance": "fixedsmall"}),
        (sample_dpm_solver_pp, {"steps": 100}),
    ],
)
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_samplers_recover_gaussian_data(sampler, kwargs, prediction):
    sch = NoiseSchedule.linear()
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(4000, 1, 2, 2, generator=gen, dtype=torch.float64)
    out = sampler(Denoiser(gaussian_oracle(sch, prediction), prediction, clip=False), sch, noise, generator=gen,
                  **kwargs)
    mean, std = _moments(out)
    assert mean == pytest.approx(MU, abs=0.02)
    assert std == pytest.approx(STD, rel=0.05)


def test_respaced_ddpm_variances_bracket_the_data_spread():
    """With 100 respaced steps, the posterior variance (fixedsmall) under-disperses and the jump's beta
    (fixedlarge) over-disperses: the optimal reverse variance lies between them (Analytic-DPM)."""
    sch = NoiseSchedule.linear()
    stds = {}
    for variance in ("fixedsmall", "fixedlarge"):
        gen = torch.Generator().manual_seed(1)
        noise = torch.randn(4000, 1, 2, 2, generator=gen, dtype=torch.float64)
        out = sample_ddpm(unclipped(gaussian_oracle(sch)), sch, noise, 100, gen, variance=variance)
        assert out.mean().item() == pytest.approx(MU, abs=0.02)
        stds[variance] = out.std().item()
    assert 0.8 * STD < stds["fixedsmall"] < STD < stds["fixedlarge"] < 1.1 * STD


def test_respaced_ddpm_with_all_steps_equals_textbook_ddpm():
    """DDPM's Algorithm 2, written out here, against sample_ddpm(steps=1000) with the same noise."""
    sch = NoiseSchedule.linear()
    model_fn = gaussian_oracle(sch)
    noise = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = sample_ddpm(unclipped(model_fn), sch, noise, 1000, torch.Generator().manual_seed(3))

    gen = torch.Generator().manual_seed(3)
    x, b, abar = noise, sch.betas, sch.alphas_cumprod
    for t in range(999, -1, -1):
        eps = model_fn(x, torch.full((64,), t))
        x = (x - b[t] / (1 - abar[t]).sqrt() * eps) / (1 - b[t]).sqrt()
        if t > 0:
            x = x + b[t].sqrt() * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    torch.testing.assert_close(ours, x, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("sampler", [sample_ddpm, sample_ddim, sample_dpm_solver_pp, sample_analytic_dpm])
@pytest.mark.parametrize("steps", [1, 10, 37])
def test_samplers_call_the_model_once_per_step(sampler, steps):
    sch = NoiseSchedule.linear()
    calls, seen = [], []

    def model_fn(x, t):
        calls.append(int(t[0]))
        return torch.zeros_like(x)

    extra = {"gamma": [0.5] * steps} if sampler is sample_analytic_dpm else {}
    sampler(model_fn, sch, torch.randn(2, 1, 2, 2), steps, callback=lambda i, t, x: seen.append(i), **extra)
    assert calls == sampling_timesteps(1000, steps)
    assert seen == list(range(steps))


def test_ddim_eta0_is_deterministic_and_clips():
    sch = NoiseSchedule.linear()
    noise = torch.randn(8, 1, 4, 4)
    a = sample_ddim(gaussian_oracle(sch), sch, noise * 5, 20)
    b = sample_ddim(gaussian_oracle(sch), sch, noise * 5, 20)
    assert torch.equal(a, b)
    assert a.abs().max() <= 1.0 + 1e-6


def test_analytic_dpm_recovers_gaussian_data_in_few_steps():
    """With few steps both DDPM variances miss the data spread (test above); Analytic-DPM's does not."""
    sch = NoiseSchedule.linear()
    data = MU + STD * torch.randn(2000, 1, 2, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for steps in (20, 50):
        ts = sampling_timesteps(1000, steps)
        gamma = estimate_gamma(gaussian_oracle(sch), sch, data, ts, generator=torch.Generator().manual_seed(0))
        assert all(0 < g < 1.05 for g in gamma)  # E||E[eps | x_t]||^2 / d <= 1, up to Monte-Carlo noise
        gen = torch.Generator().manual_seed(1)
        noise = torch.randn(4000, 1, 2, 2, generator=gen, dtype=torch.float64)
        out = sample_analytic_dpm(unclipped(gaussian_oracle(sch)), sch, noise, steps, gen, gamma=gamma)
        mean, std = _moments(out)
        assert mean == pytest.approx(MU, abs=0.02)
        assert std == pytest.approx(STD, rel=0.02)


def test_dpm_solver_pp_converges_faster_than_ddim():
    sch = NoiseSchedule.linear()
    noise = torch.randn(4000, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    oracle = gaussian_oracle(sch)
    err_dpm = abs(sample_dpm_solver_pp(unclipped(oracle), sch, noise, 50).std().item() - STD)
    err_ddim = abs(sample_ddim(unclipped(oracle), sch, noise, 50).std().item() - STD)
    assert err_dpm < 0.5 * err_ddim


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_min_snr_weights_are_the_x0_weight_min_snr_gamma_in_each_target(prediction):
    """Every target's weighted error equals min(snr, gamma) times the x0 error: the same weighting
    whatever the network predicts (Hang et al., 2023)."""
    schedule = NoiseSchedule.linear(1000)
    t = torch.tensor([0, 50, 300, 999])
    abar = schedule.alphas_cumprod[t]
    x0, noise, err = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4) * 0.1
    target = training_target(prediction, x0, noise, abar.view(-1, 1, 1, 1))
    x_t = q_sample(schedule, x0, t, noise)
    x0_hat, _ = to_x0_eps(prediction, target + err, x_t, abar.view(-1, 1, 1, 1))
    weighted = snr_weight(prediction, abar, 5.0) * err.square().flatten(1).mean(1)
    snr = abar / (1 - abar)
    expected = snr.clamp(max=5.0) * (x0_hat - x0).square().flatten(1).mean(1)
    torch.testing.assert_close(weighted, expected, rtol=1e-3, atol=1e-6)
    assert snr[0] > 5 > snr[-1]  # the clip bites at low noise and not at high noise


def test_min_snr_loss_downweights_eps_at_low_noise_and_weights_x0_errors_by_the_snr_below_gamma():
    schedule = NoiseSchedule.linear(1000)
    x0, noise = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731
    low_noise = torch.full((8,), 5)
    plain = diffusion_loss(model, schedule, x0, "eps", t=low_noise, noise=noise)
    weighted = diffusion_loss(model, schedule, x0, "eps", t=low_noise, noise=noise, min_snr_gamma=5.0)
    assert weighted < 0.01 * plain  # at t=5 the snr is ~1e3: eps errors there count 5/snr
    t = torch.randint(0, 1000, (8,), generator=torch.Generator().manual_seed(0))
    snr = (schedule.alphas_cumprod[t] / (1 - schedule.alphas_cumprod[t])).float()
    per_image = x0.square().flatten(1).mean(1)
    huge = diffusion_loss(model, schedule, x0, "x0", t=t, noise=noise, min_snr_gamma=1e9)
    torch.testing.assert_close(huge, (snr * per_image).mean())
