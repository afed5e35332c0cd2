"""``python -m syncsim.cli``: the ``syncsim`` command."""

import sys

from syncsim.cli import main

sys.exit(main())
