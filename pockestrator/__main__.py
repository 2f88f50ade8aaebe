"""``python -m pockestrator`` is the same as the ``pockestrator`` console script."""

from pockestrator.cli import main

raise SystemExit(main())
