"""BERT (Devlin et al. 2019, arXiv 1810.04805): a bidirectional post-norm encoder and its heads.

Word + learned position + token-type embeddings, an embedding LayerNorm, post-norm blocks
(`PostNormBlock`: x = LN(x + attn(x)), x = LN(x + mlp(x))) with exact-GELU MLPs and biases
everywhere, no causal mask. `attention_mask_BT` (1 = real token, 0 = padding) keeps padded
keys out of attention, `document_ids_BT` keys of other documents packed into the same row.
The classes share one parameter layout (heads subclass the encoder), so an MLM checkpoint
loads into a classifier with `load_state_dict(..., strict=False)`. Constructors take a
resolved config (`lmforge.models.build_model` resolves it).

Shape legend: B batch, T positions, D width (dim), V vocabulary, C classes (num_labels).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models.blocks import BlockSpec, PostNormBlock, make_dropout, make_norm

BLOCKS = BlockSpec(norm="layernorm", mlp="gelu", positions="learned")


class BertModel(nn.Module):
    """The encoder (and, with `add_pooler`, BERT's pooler: tanh(dense(h of the first token))).

    `forward(input_ids_BT, attention_mask_BT=None, token_type_ids_BT=None, **inputs) -> h_BTD`,
    the other inputs as `hidden_states` takes them.
    """

    def __init__(self, cfg: ModelConfig, add_pooler: bool = True):
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_embeddings = nn.Embedding(cfg.max_seq_len, cfg.dim)
        self.type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.dim) if cfg.type_vocab_size else None
        self.embed_norm = make_norm(BLOCKS.norm, cfg.dim, cfg.norm_eps, cfg.bias)
        self.embed_dropout = make_dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            PostNormBlock(BLOCKS, cfg.dim, cfg.num_heads, cfg.hidden_dim, cfg.norm_eps, cfg.bias, cfg.dropout)
            for _ in range(cfg.num_layers))
        self.pooler = nn.Linear(cfg.dim, cfg.dim, bias=cfg.bias) if add_pooler else None
        self.init_weights()  # the heads below call it again once they exist

    @torch.no_grad()
    def init_weights(self) -> None:
        """BERT's init: Normal(0, init_std) for every matrix and embedding (no depth scaling),
        zero biases, unit LayerNorm gains."""
        for name, param in self.named_parameters():
            if param.dim() >= 2:
                nn.init.normal_(param, 0.0, self.config.init_std)
            elif name.endswith("bias"):
                nn.init.zeros_(param)
            else:
                nn.init.ones_(param)

    def hidden_states(self, input_ids_BT: Optional[torch.Tensor] = None,
                      attention_mask_BT: Optional[torch.Tensor] = None,
                      token_type_ids_BT: Optional[torch.Tensor] = None, *,
                      inputs_embeds_BTD: Optional[torch.Tensor] = None, position_ids_BT: Optional[torch.Tensor] = None,
                      document_ids_BT: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The last layer's h_BTD. `inputs_embeds_BTD` replaces the word embedding of
        `input_ids_BT` (one of the two); token types default to 0 (one segment), positions to
        0..T-1 (`position_ids_BT` restart them for packed documents)."""
        if (input_ids_BT is None) == (inputs_embeds_BTD is None):
            raise ValueError("pass exactly one of input_ids_BT and inputs_embeds_BTD")
        x_BTD = self.tok_embeddings(input_ids_BT) if inputs_embeds_BTD is None else inputs_embeds_BTD
        T = x_BTD.shape[1]
        if T > self.config.max_seq_len:
            raise ValueError(f"{T} positions requested but the model supports {self.config.max_seq_len}")
        # Tables read through their modules' calls, so wrappers see every use.
        positions = position_ids_BT if position_ids_BT is not None else torch.arange(T, device=x_BTD.device)
        x_BTD = x_BTD + self.pos_embeddings(positions)
        if self.type_embeddings is not None:  # one segment by default: type 0's row, broadcast
            types = token_type_ids_BT if token_type_ids_BT is not None else torch.zeros(1, dtype=torch.long,
                                                                                          device=x_BTD.device)
            x_BTD = x_BTD + self.type_embeddings(types)
        x_BTD = self.embed_dropout(self.embed_norm(x_BTD))
        for layer in self.layers:
            x_BTD = layer(x_BTD, attention_mask_BT, document_ids_BT)
        return x_BTD

    def pooled(self, h_BTD: torch.Tensor) -> torch.Tensor:
        """BERT's sentence vector h_BD: tanh(W h_first + b), the first token being <s>/[CLS]."""
        return torch.tanh(self.pooler(h_BTD[:, 0]))

    def forward(self, input_ids_BT: Optional[torch.Tensor] = None, attention_mask_BT: Optional[torch.Tensor] = None,
                token_type_ids_BT: Optional[torch.Tensor] = None, **inputs: Optional[torch.Tensor]) -> torch.Tensor:
        return self.hidden_states(input_ids_BT, attention_mask_BT, token_type_ids_BT, **inputs)


class BertForMaskedLM(BertModel):
    """Encoder + BERT's MLM head: dense, GELU, LayerNorm, then the decoder (tied to the word
    embeddings when `tie_embeddings`) with its own output bias. No pooler (no next-sentence
    prediction: RoBERTa, Liu et al. 2019, found it unnecessary).

    `forward(input_ids_BT, attention_mask_BT=None, token_type_ids_BT=None) -> logits_BTV`.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, add_pooler=False)
        cfg = self.config
        self.head_dense = nn.Linear(cfg.dim, cfg.dim, bias=cfg.bias)
        self.head_norm = make_norm(BLOCKS.norm, cfg.dim, cfg.norm_eps, cfg.bias)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=True)
        if cfg.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self.init_weights()

    def forward(self, input_ids_BT: Optional[torch.Tensor] = None, attention_mask_BT: Optional[torch.Tensor] = None,
                token_type_ids_BT: Optional[torch.Tensor] = None, **inputs: Optional[torch.Tensor]) -> torch.Tensor:
        h_BTD = self.hidden_states(input_ids_BT, attention_mask_BT, token_type_ids_BT, **inputs)
        return self.output(self.head_norm(F.gelu(self.head_dense(h_BTD))))


class _BertClassifier(BertModel):
    """Dropout -> linear over the pooled first token (`per_token = False`) or every token."""

    per_token: bool

    def __init__(self, cfg: ModelConfig):
        if cfg.num_labels <= 0:
            raise ConfigError("a BERT classification head needs model.num_labels > 0 (the number of classes)")
        super().__init__(cfg, add_pooler=not self.per_token)
        self.classifier_dropout = make_dropout(self.config.dropout)
        self.classifier = nn.Linear(self.config.dim, self.config.num_labels)
        self.init_weights()

    def forward(self, input_ids_BT: Optional[torch.Tensor] = None, attention_mask_BT: Optional[torch.Tensor] = None,
                token_type_ids_BT: Optional[torch.Tensor] = None, **inputs: Optional[torch.Tensor]) -> torch.Tensor:
        h_BTD = self.hidden_states(input_ids_BT, attention_mask_BT, token_type_ids_BT, **inputs)
        return self.classifier(self.classifier_dropout(h_BTD if self.per_token else self.pooled(h_BTD)))


class BertForSequenceClassification(_BertClassifier):
    """Pooler -> dropout -> linear (BERT sec. 4.1, GLUE). `forward(...) -> logits_BC`."""

    per_token = False


class BertForTokenClassification(_BertClassifier):
    """Per-token dropout -> linear (BERT sec. 4.3, NER). `forward(...) -> logits_BTC`."""

    per_token = True
