"""Interoperability with other libraries (HF transformers in `lmforge.interop.hf`, imported lazily)."""
