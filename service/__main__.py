"""`python -m service` is the `analytics` command."""

from service.cli import main

raise SystemExit(main())
