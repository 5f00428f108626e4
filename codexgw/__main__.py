"""C{python -m codexgw}: the same operator command as C{codexgw}."""

from codexgw.cli import main

raise SystemExit(main())
