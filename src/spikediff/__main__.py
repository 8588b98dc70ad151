"""``python -m spikediff`` runs the CLI."""

import sys

from spikediff.cli import main

sys.exit(main())
