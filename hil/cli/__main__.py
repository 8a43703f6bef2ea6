"""``python -m pcm_hil.cli``: the ``pcm-hil`` command."""

from pcm_hil.cli.main import main

raise SystemExit(main())
