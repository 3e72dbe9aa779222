"""``python -m facekit`` runs the ``facekit`` command line."""

import sys

from facekit.cli import main

sys.exit(main())
