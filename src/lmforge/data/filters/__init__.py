"""Quality filters of the data pipeline, each a registered ``DocStep`` (see ``lmforge.data.steps``).

- ``heuristics.py``: ``length`` and ``heuristics`` (character and line heuristics)
- ``gopher.py``: ``gopher_quality`` and ``gopher_repetition`` (Rae et al. 2021)
- ``c4.py``: ``c4`` (Raffel et al. 2020), which also rewrites text (keeps good lines)
- ``fineweb.py``: ``fineweb_quality`` (Penedo et al. 2024)
- ``words.py``: the shared regex word splitter and per-document ``TextStats``

Steps are imported by ``lmforge.data.steps`` when the registry is first listed, so this
package's ``__init__`` stays empty of imports.
"""
