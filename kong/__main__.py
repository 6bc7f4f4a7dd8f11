"""``python -m kong``: the same command line as the ``kong`` entry point."""

from kong.cli import main

if __name__ == "__main__":
    main()
