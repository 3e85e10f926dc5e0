"""Fine-tuning: registered fine-tuning tasks and their JSONL data (``tasks/``, ``examples.py``,
``chat.py``), adapters (``adapters/``) and the ``lmforge finetune`` run."""
