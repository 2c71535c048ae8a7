"""``python -m sol.fault_injection``: the ``sol faults`` command on its own."""

from sol.fault_injection.cli import main

raise SystemExit(main())
