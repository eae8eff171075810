"""Entry point for `python -m kefu`."""

from kefu.cli import main

if __name__ == "__main__":
    main()
