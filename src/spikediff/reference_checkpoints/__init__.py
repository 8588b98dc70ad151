"""Import of other codebases' checkpoints (``spikediff convert``)."""
