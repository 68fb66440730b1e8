"""``python -m lossensemble``: same as the ``lossensemble`` command."""

import sys

from lossensemble.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
