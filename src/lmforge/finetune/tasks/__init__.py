"""The registered fine-tuning tasks, one file each: ``sft``, ``sequence_classification``,
``token_classification`` and ``seq2seq`` (listed in `lmforge.train.tasks.registry`'s ``_TASKS``)."""
