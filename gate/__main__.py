"""`python -m gate` runs the same CLI as the `gate` console script."""

from gate.cli.main import main

if __name__ == "__main__":
    main()
