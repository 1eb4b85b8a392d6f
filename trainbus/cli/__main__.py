"""``python -m trainbus.cli``: the ``trainbus`` command without its console script."""

from trainbus.cli import main

raise SystemExit(main())
