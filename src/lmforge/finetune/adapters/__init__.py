"""Parameter-efficient fine-tuning: adapters registered by name with typed options
(`registry`), LoRA/rsLoRA with merge and unmerge (`lora`), a frozen 4-bit NF4 base for QLoRA
(`nf4`), the PEFT adapter format (`peft_format`) and the base-model fingerprint that guards
loading an adapter onto the wrong base (`fingerprint`)."""

from lmforge.finetune.adapters.fingerprint import base_fingerprint, check_base_fingerprint
from lmforge.finetune.adapters.lora import (LoRALinear, LoraOptions, adapter_state_dict, load_adapter_state_dict,
                                            merge_adapters, remove_adapters, unmerge_adapters)
from lmforge.finetune.adapters.nf4 import NF4Linear, dequantize_nf4, nf4_levels, quantize_base, quantize_nf4
from lmforge.finetune.adapters.peft_format import export_peft, import_peft
from lmforge.finetune.adapters.registry import (adapter_options, adapter_spec, apply_adapter, register_adapter,
                                                registered_adapters)

__all__ = ["LoRALinear", "LoraOptions", "NF4Linear", "adapter_options", "adapter_spec", "adapter_state_dict",
           "apply_adapter", "base_fingerprint", "check_base_fingerprint", "dequantize_nf4", "export_peft",
           "import_peft", "load_adapter_state_dict", "merge_adapters", "nf4_levels", "quantize_base",
           "quantize_nf4", "register_adapter", "registered_adapters", "remove_adapters", "unmerge_adapters"]
