"""Sharing a run: push to and fetch from the Hugging Face Hub (``hub``), export merged / ONNX / int8 artefacts
(``export``, with the ``remote_code`` modeling file the exported checkpoints carry)."""
