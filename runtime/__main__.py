"""`python -m runtime …` mirrors the `flightrec` command."""

from __future__ import annotations

from runtime.cli import main

raise SystemExit(main())
