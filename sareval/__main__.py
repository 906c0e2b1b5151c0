"""``python -m sareval``: the same CLI as the ``sareval`` console script."""

from sareval.cli import main

if __name__ == "__main__":
    main()
