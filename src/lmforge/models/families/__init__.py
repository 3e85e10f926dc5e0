"""The model families: one module each, registering a `lmforge.models.registry.Family`.

`lmforge.models.registry.families()` imports every module here whose name does not start
with an underscore, so a new family is a new file in this package (modules starting with
``_`` hold helpers the families share).
"""
