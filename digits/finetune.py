"""`python -m digits.finetune`: the command line the model cards record (digits.training.finetune)."""

from digits.training.finetune import main

if __name__ == "__main__":
    main()
