"""``python -m sklearn_ssse``: see :func:`sklearn_ssse._cli.main`."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
