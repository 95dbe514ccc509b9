"""``python -m coffea_f4f.cli``: the same as the ``coffea-f4f`` console script."""

import sys

from .parser import main

sys.exit(main())
