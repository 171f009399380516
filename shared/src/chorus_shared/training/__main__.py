"""``python -m chorus_shared.training``: see :mod:`chorus_shared.training.cli`."""

import sys

from chorus_shared.training.cli import main

sys.exit(main())
