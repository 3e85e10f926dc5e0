"""Harmful and private content steps: word/domain blocklists, PII masking, a trained classifier.

Importing a submodule registers its step (see ``lmforge.data.steps``):

- ``blocklist``  (:mod:`.blocklist`): drop documents with blocked words or links to blocked domains;
- ``pii``        (:mod:`.pii`): mask e-mails, phone numbers, IPs, card numbers and API keys;
- ``classifier`` (:mod:`.classifier`): drop or tag documents a hashed n-gram logistic regression
  flags; ``train_classifier`` trains one on labelled JSONL.
"""
