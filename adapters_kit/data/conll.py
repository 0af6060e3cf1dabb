"""Word-per-line data files (CoNLL, CoNLL-U) read as sentences of words with their tags, for token classification."""

from __future__ import annotations

from datasets import Dataset

from adapters_kit.errors import UserError

CONLL_FORMATS = {".conll": -1, ".conllu": 3}
"""Word-per-line files (blank line between sentences, ``-DOCSTART-`` lines skipped) and the column holding the
tag: the last one (CoNLL-2003 style), or UPOS in CoNLL-U (whose comment lines and multi-word ranges are skipped).
They read as the columns ``tokens`` and ``tags``."""

def read_conll(path: str, tag_column: int) -> Dataset:
    """A word-per-line file (:data:`CONLL_FORMATS`) as sentences: columns ``tokens`` and ``tags``."""
    sentences, words, tags = [], [], []
    conllu = tag_column != -1
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip() or line.startswith("-DOCSTART-"):
                if words:
                    sentences.append((words, tags))
                    words, tags = [], []
                continue
            cells = line.rstrip("\n").split("\t" if conllu or "\t" in line else None)
            if conllu and (line.startswith("#") or not cells[0].isdigit()):
                continue  # comments, multi-word token ranges (3-4) and empty nodes (3.1)
            if len(cells) < 2 or (conllu and len(cells) <= tag_column):
                raise UserError(f"data file {path} line {number}: {line.strip()[:40]!r} has no tag column; write a "
                                f"word and its tag on each line (CoNLL-U: the 10 tab-separated fields)")
            words.append(cells[1] if conllu else cells[0])
            tags.append(cells[tag_column])
    if words:
        sentences.append((words, tags))
    if not sentences:
        raise UserError(f"data file {path} has no sentences; give one word and its tag per line")
    return Dataset.from_dict({"tokens": [w for w, _ in sentences], "tags": [t for _, t in sentences]})
