"""`python -m digits.train`: the command line the model cards record (digits.training.train)."""

from digits.training.train import main

if __name__ == "__main__":
    main()
