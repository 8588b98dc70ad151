"""ANN-to-SNN conversion for diffusion (SDM): quantised ANN -> signed IF SNN, block-wise fine-tuning.

Not to be confused with ``spikediff.reference_checkpoints`` (``spikediff convert``), which imports
other codebases' checkpoints.
"""

from spikediff.ann2snn.conversion import activation_consumers, convert, default_spike_steps, output_error
from spikediff.ann2snn.finetune import blockwise_finetune, res_blocks
from spikediff.ann2snn.pipeline import ann2snn

__all__ = ["activation_consumers", "ann2snn", "blockwise_finetune", "convert", "default_spike_steps", "output_error",
           "res_blocks"]
