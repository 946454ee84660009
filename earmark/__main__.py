"""`python -m earmark`: the same as the `earmark` command."""

from earmark.cli import main

raise SystemExit(main())
