"""The built-in backbones and data sets that ship inside installable packages (``catalog``), and the conversion of
packaged weights in other formats into transformers checkpoint folders (``convert``)."""
