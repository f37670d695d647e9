"""``python -m roommon`` entry point."""

from roommon.cli import main

raise SystemExit(main())
