"""The two pictures of an energy report: energy by layer (MAC vs AC) and firing rate by layer and t."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from spikediff.energy.report import EnergyReport  # noqa: E402


def _save_layer_plot(fig, ax, names: list[str], ylabel: str, title: str, path: str | Path) -> Path:
    """Label a per-layer plot (one tick per layer), add the legend and write it as a PNG."""
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_energy_by_layer(report: EnergyReport, path: str | Path) -> Path:
    """Stacked bars per layer: energy of real-valued MACs and of spike-driven ACs, in nJ."""
    names = [layer.name for layer in report.layers]
    mac = [layer.macs * report.energy_model.e_mac_pj * 1e-3 for layer in report.layers]
    ac = [layer.acs * report.energy_model.e_ac_pj * 1e-3 for layer in report.layers]
    fig, ax = plt.subplots(figsize=(max(8, len(names) * 0.22), 4.5))
    ax.bar(range(len(names)), mac, label=f"MAC ({report.energy_model.e_mac_pj} pJ)", color="tab:red")
    ax.bar(range(len(names)), ac, bottom=mac, label=f"AC ({report.energy_model.e_ac_pj} pJ)", color="tab:blue")
    title = f"{report.model}: {report.energy_mj:.3f} mJ per evaluation ({report.energy_model.name})"
    return _save_layer_plot(fig, ax, names, "energy per image and evaluation (nJ)", title, path)


def firing_rate_rows(report: EnergyReport) -> tuple[list, str]:
    """What ``firing_rates.png`` draws: every spiking neuron layer (its share of nonzero outputs per
    step), so a network whose spikes never reach a weight layer (SDiT averages them before the residual
    add) still shows its neurons; for a network without neuron modules, the input rate of its
    spike-driven layers. Returns the rows and what their rate is."""
    if report.neurons:
        return report.neurons, "neuron firing rate"
    return [layer for layer in report.layers if layer.input == "spikes"], "input firing rate"


def plot_firing_rates(report: EnergyReport, path: str | Path) -> Path:
    """The rates of :func:`firing_rate_rows`, one line per measured diffusion step t."""
    rows, what = firing_rate_rows(report)
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.25), 4.5))
    for t in report.diffusion_steps_measured:
        ax.plot(range(len(rows)), [row.firing_rate_by_t[t] for row in rows], marker="o", ms=3, label=f"t={t}")
    ax.set_ylim(0, max([0.05] + [max(row.firing_rate_by_t.values()) for row in rows]) * 1.1)
    title = f"{report.model}: {what} by layer and diffusion step"
    return _save_layer_plot(fig, ax, [row.name for row in rows], what, title, path)
