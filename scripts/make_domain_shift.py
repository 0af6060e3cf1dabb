"""Build a source -> target domain-shift pair from packaged corpora (for the DANN / joint table in
docs/guides/domain-shift.md).

Source: BBC News articles (edited news prose) of three topics. Target: 20 Newsgroups posts (lower-cased, letters
only, informal) mapped onto the same labels: rec.sport.* -> sports, comp.* -> tech, talk.politics.* -> politics.
Writes CSVs (text,label) into the output folder: source_train.csv, target_unlabelled.csv (20NG train posts; their
labels are kept for reference but DANN never reads them), target_train_small.csv (a few labelled target posts, for
``joint``) and target_test.csv (20NG test posts).

    python scripts/make_domain_shift.py runs/domain_shift [--per-class 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import os

import pandas as pd

from adapters_kit import DATASETS

MAP = {"rec.sport.": "sports", "comp.": "tech", "talk.politics.": "politics"}


def _mapped(df: pd.DataFrame) -> pd.DataFrame:
    label = df["label"].map(lambda g: next((v for k, v in MAP.items() if g.startswith(k)), None))
    return pd.DataFrame({"text": df["text"], "label": label}).dropna()


def _per_class(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return pd.concat([g.sample(min(n, len(g)), random_state=seed) for _, g in df.groupby("label")])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output")
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.output, exist_ok=True)
    bbc = DATASETS["bbc-news"].load()["train"].drop_duplicates("text")
    source = bbc[bbc["label"].isin(set(MAP.values()))]
    ng = DATASETS["20newsgroups"].load()
    target_train, target_test = _mapped(ng["train"]), _mapped(ng["test"])
    files = {"source_train": _per_class(source, a.per_class, a.seed),
             "target_unlabelled": _per_class(target_train, a.per_class, a.seed),
             "target_train_small": _per_class(target_train, max(5, a.per_class // 10), a.seed + 1),
             "target_test": _per_class(target_test, a.per_class, a.seed)}
    for name, df in files.items():
        df.sample(frac=1.0, random_state=a.seed).to_csv(os.path.join(a.output, f"{name}.csv"), index=False)
        print(f"{name}: {len(df)} rows, {df['label'].value_counts().to_dict()}")


if __name__ == "__main__":
    main()
