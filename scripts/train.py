"""Train one run from a YAML config, on one process or many.

    accelerate launch scripts/train.py --config scripts/configs/bbc_lora.yaml [key=value ...]
    python scripts/train.py --config scripts/configs/bbc_probe.yaml epochs=10 output=runs/p
"""

import argparse
import sys

from adapters_kit import AdapterTrainer, UserError, load_config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (see scripts/configs/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of config fields")
    args = parser.parse_args()
    try:
        cfg = load_config(args.config, args.overrides)             # config
        trainer = AdapterTrainer(cfg)                              # accelerator, resolved defaults
        metrics = trainer.train()                                  # data -> model -> train -> evaluate -> save
    except UserError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    trainer.accelerator.print({s: round(m["accuracy"], 4) for s, m in metrics.items() if "accuracy" in m})
    return 0


if __name__ == "__main__":
    sys.exit(main())
