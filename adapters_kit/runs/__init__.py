"""The run folder layer: written atomically (``atomic``) under the folder rules (``output``), saved and loaded
(``checkpoint``), reported (``report``, ``plots``), described (``card``) and called (``inference``)."""
