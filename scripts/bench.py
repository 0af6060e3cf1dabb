"""Benchmark adapters_kit against a transformers Trainer + PEFT script; the same as `adapters-kit bench`.

    python scripts/bench.py --quick
    python scripts/bench.py --scenarios train-lora,roofline --data bbc-news --max-length 128 --output bench.json
"""

import sys

from adapters_kit.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
