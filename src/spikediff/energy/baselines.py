"""The energy of one report by the conventions a reviewer checks beside the field's (``report.py``).

The field's figure (E_MAC x MACs + E_AC x ACs, zero-padding taps counted as ptflops / syops count
them) flatters a T-step SNN twice: it compares it with an fp32 ANN, whose multiplies are dear, and it
charges no memory traffic, which a T-step network repeats T times. So each report also gets:

- ``neurobench``: NeuroBench's synaptic operations (its ``Effective_MACs`` / ``Effective_ACs``: only
  nonzero inputs times nonzero weights, no padding taps), at the same per-operation energies.
- ``quantised_ann``: the same network with ceil(log2(T+1))-bit activations, which carry what a
  T-step rate code carries (Yan et al., arXiv 2409.08290); ceil(log2(L+1)) bits where slack steps
  cap the counts at L < T levels. Cost model (this project's, stated so it
  can be argued with): a b-bit activation times an fp32 weight is computed bit-serially, one fp32 add
  (E_AC) per set bit of the activation, zero activations skipped: the SNN's own zero-skipping applied
  to bits (``bit_serial``); ``dense`` charges b adds per MAC whatever the activation. Layers fed by
  real values cost their MACs once per evaluation (a quantised ANN has no T).
- ``memory``: SRAM traffic at batch 1, 45 nm: 10 pJ per 64-bit access of an 8 KB SRAM (Horowitz,
  ISSCC 2014), so 0.156 pJ per bit moved. Charged: every weight layer reads its fp32 weights once
  per spiking step it runs, reads its input (1 bit per spike, 2 per signed spike, b bits per
  quantised activation, 32 per real value) and writes its fp32 output; every spiking neuron reads and
  writes its fp32 membrane once per step. The ANN and the quantised ANN pay the same rules at T = 1.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spikediff.energy.report import EnergyReport

# A ratio this close to 1 is a tie: a phase-coded SNN costs exactly its bit-serial quantised ANN (its spikes
# are that network's set bits), up to the float sums of the two counts
TIE = 1e-6
SRAM_PJ_PER_BIT = 10.0 / 64  # Horowitz 2014, 45 nm: 8 KB SRAM, 10 pJ per 64-bit access
WORD_BITS = 32


def count_bits(spike_steps: int) -> int:
    """Bits of the quantised ANN equivalent to a T-step rate code: ceil(log2(T + 1))."""
    return max(1, math.ceil(math.log2(spike_steps + 1)))


def neurobench_mj(report: EnergyReport) -> float:
    """Effective operations (NeuroBench's rule) at the report's per-operation energies."""
    e = report.energy_model
    return sum(layer.neurobench_effective * (e.e_ac_pj if layer.input == "spikes" else e.e_mac_pj)
               for layer in report.layers) * 1e-9


def quantised_ann_mj(report: EnergyReport, bits: int) -> dict[str, float]:
    """The same network with ``bits``-bit activations: ``bit_serial`` and ``dense`` costs, in mJ."""
    e = report.energy_model
    serial = dense = 0.0
    for layer in report.layers:
        once = layer.dense_macs / max(layer.steps, 1.0)  # a quantised ANN runs each layer once
        if layer.input == "spikes":
            serial += layer.count_bit_ops * e.e_ac_pj
            dense += bits * once * e.e_ac_pj
        else:
            serial += once * e.e_mac_pj
            dense += once * e.e_mac_pj
    return {"bit_serial": serial * 1e-9, "dense": dense * 1e-9}


def memory_bits(report: EnergyReport, quantised_bits: int | None = None) -> float:
    """Bits moved per image and evaluation by the rules above; with ``quantised_bits``, those of the
    same network as a quantised ANN (each layer once, activations at that width, no membranes)."""
    total = 0.0
    for layer in report.layers:
        if quantised_bits is None:
            steps, in_bits = layer.steps, layer.input_bits
        else:
            steps, in_bits = 1.0, (quantised_bits if layer.input == "spikes" else WORD_BITS)
        share = steps / max(layer.steps, 1.0)  # of the observed elements, those a run of `steps` moves
        total += layer.weights * WORD_BITS * steps
        total += (layer.input_elements * in_bits + layer.output_elements * WORD_BITS) * share
    if quantised_bits is None:
        total += sum(n.elements * 2 * WORD_BITS for n in report.neurons)
    return total


def conventions(report: EnergyReport) -> dict[str, dict]:
    """The report's energy per image and evaluation by every convention above (mJ), with what each charges."""
    T = report.spike_steps
    result: dict[str, dict] = {
        "field": {"energy_mj": report.energy_mj, "charges": "E_MAC x MACs + E_AC x ACs, padding taps counted "
                  f"(ptflops / syops), {report.energy_model.name}"},
        "neurobench": {"energy_mj": neurobench_mj(report), "charges": "NeuroBench effective MACs / ACs: nonzero "
                       "inputs x nonzero weights, no padding taps"},
        "memory": {"energy_mj": memory_bits(report) * SRAM_PJ_PER_BIT * 1e-9,
                   "charges": "SRAM bits moved at batch 1, 0.156 pJ/bit (Horowitz 2014, 8 KB SRAM)"},
    }
    if T > 1 and any(layer.input == "spikes" for layer in report.layers):
        bits = count_bits(report.count_levels or T)
        costs = quantised_ann_mj(report, bits)
        memory = memory_bits(report, bits) * SRAM_PJ_PER_BIT * 1e-9
        result["quantised_ann"] = {
            "bits": bits, "energy_mj_bit_serial": costs["bit_serial"], "energy_mj_dense": costs["dense"],
            "memory_mj": memory, "charges": f"the same network with {bits}-bit activations (T = {T}"
            + (f", counts up to {report.count_levels}" if report.count_levels else "") + "); a set bit "
            "of an activation costs one E_AC (bit-serial, zeros skipped), or every MAC costs bits x E_AC (dense)"}
    return result


def verdicts(snn: EnergyReport, ann: EnergyReport | None) -> list[dict]:
    """Where the spiking network wins and where it does not: its energy per evaluation against its ANN
    twin's and against its own quantised-ANN baseline, convention by convention (ratio < 1: it wins)."""
    mine = snn.conventions()
    rows = []

    def add(against: str, convention: str, snn_mj: float, other_mj: float) -> None:
        ratio = snn_mj / other_mj if other_mj else float("inf")
        outcome = "ties" if abs(ratio - 1) < TIE else "wins" if ratio < 1 else "loses"
        rows.append({"against": against, "convention": convention, "snn_mj": snn_mj, "other_mj": other_mj,
                     "ratio": ratio, "snn_wins": outcome == "wins", "outcome": outcome})

    if ann is not None:
        theirs = ann.conventions()
        add("ANN twin", "field", mine["field"]["energy_mj"], theirs["field"]["energy_mj"])
        add("ANN twin", "neurobench", mine["neurobench"]["energy_mj"], theirs["neurobench"]["energy_mj"])
        add("ANN twin", "field + memory", mine["field"]["energy_mj"] + mine["memory"]["energy_mj"],
            theirs["field"]["energy_mj"] + theirs["memory"]["energy_mj"])
    if quantised := mine.get("quantised_ann"):
        name = f"itself as a {quantised['bits']}-bit ANN"
        add(name, "bit-serial", mine["field"]["energy_mj"], quantised["energy_mj_bit_serial"])
        add(name, "dense", mine["field"]["energy_mj"], quantised["energy_mj_dense"])
        add(name, "bit-serial + memory", mine["field"]["energy_mj"] + mine["memory"]["energy_mj"],
            quantised["energy_mj_bit_serial"] + quantised["memory_mj"])
    return rows
