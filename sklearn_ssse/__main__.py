"""``python -m sklearn_ssse``: the command line (``sklearn-ssse``).

``main(argv)`` runs it with a list of arguments and returns the exit status; ``build_parser()``
returns its :class:`argparse.ArgumentParser`.
"""

from ._cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
