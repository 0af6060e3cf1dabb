"""The model layer: a backbone becomes an adapted model (``modeling``: backbone + pooler + head from ``heads``),
frozen-backbone features are cached for probes (``features``), and ``dropout`` holds the opt-in CPU dropout."""
