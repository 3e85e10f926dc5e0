"""Fill-mask inference for a masked LM: the tokens a BERT-style model predicts at each ``<mask>``.

The cloze use of BERT's pretraining objective (Devlin et al. 2019, arXiv 1810.04805, sec. 3.1):
the model reads the text with ``<mask>`` in place of some tokens and its softmax at each masked
position ranks the vocabulary.
"""

from __future__ import annotations

import torch

from lmforge.tokenize.base import SPECIAL_TOKENS, Tokenizer


@torch.no_grad()
def fill_mask(model: torch.nn.Module, tokenizer: Tokenizer, text_with_mask: str, top_k: int = 5,
              add_special_tokens: bool = False) -> list[list[tuple[str, float]]]:
    """For each mask token in ``text_with_mask`` (``<mask>``; an imported tokenizer's own, e.g.
    ``[MASK]``), left to right, the ``top_k`` most probable tokens as ``(token text,
    probability)``, most probable first. A tokenizer without a mask token: TokenizerError.

    ``model(input_ids_BT) -> logits_BTV`` (e.g. `BertForMaskedLM`). Tokenizers do not parse
    special tokens out of text, so the text is split on the literal mask token, each piece is
    encoded on its own and the mask id goes between the pieces (a piece's edge may therefore
    tokenize differently than inside the whole sentence, e.g. a trailing space in byte-level
    BPE). ``add_special_tokens`` frames the ids as the tokenizer does (`Tokenizer.frame`: bos ...
    eos for lmforge's kinds, [CLS] ... [SEP] for an imported BERT tokenizer), for models
    pretrained that way (lmforge's masked-LM pretraining packs documents separated by eos and adds no bos).
    """
    mask_id = tokenizer.require_id("mask", "fill_mask")
    mask_token = tokenizer.special_tokens.get("mask", SPECIAL_TOKENS["mask"])
    pieces = text_with_mask.split(mask_token)
    if len(pieces) < 2:
        raise ValueError(f"no {mask_token} in the text: put one where a token should be predicted")
    ids: list[int] = []
    for index, piece in enumerate(pieces):
        if index:
            ids.append(mask_id)
        if piece:
            ids.extend(tokenizer.encode(piece))
    if add_special_tokens:  # the tokenizer's own framing: <s> ... </s>, [CLS] ... [SEP]
        ids = tokenizer.frame(ids)
    max_seq_len = getattr(getattr(model, "config", None), "max_seq_len", len(ids))
    if len(ids) > max_seq_len:
        raise ValueError(f"the text is {len(ids)} tokens but the model reads at most {max_seq_len}: shorten it")

    device = next(model.parameters()).device
    input_ids_1T = torch.tensor([ids], dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        logits_TV = model(input_ids_1T)[0]
    finally:
        model.train(was_training)
    mask_positions_M = (input_ids_1T[0] == mask_id).nonzero().squeeze(1)
    probs_MV = logits_TV[mask_positions_M].float().softmax(dim=-1)
    top_probs_MK, top_ids_MK = probs_MV.topk(min(top_k, probs_MV.shape[-1]), dim=-1)
    return [[(tokenizer.decode([token_id], skip_special=False), prob)
             for token_id, prob in zip(ids_K.tolist(), probs_K.tolist())]
            for ids_K, probs_K in zip(top_ids_MK, top_probs_MK)]
