"""C{python -m codexgw}: the same operator command as C{codexgw}."""

from codexgw.ops.cli import main

raise SystemExit(main())
