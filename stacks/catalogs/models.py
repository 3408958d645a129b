"""Open models the platform knows the size of, as their Hugging Face `config.json` files state it.

Fields map to config.json: layers = num_hidden_layers, attention_heads = num_attention_heads,
kv_heads = num_key_value_heads, head_dim = hidden_size / num_attention_heads (or head_dim where set),
context_length = max_position_embeddings. Parameter counts are the model cards' safetensors totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    id: str
    parameters_b: float
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    context_length: int
    license: str
    gated: bool
    source: str
    dtype_bytes: int = 2

    @property
    def short_name(self) -> str:
        """A DNS-1123 label for the model (used in Kubernetes names)."""
        label = "".join(c if c.isalnum() else "-" for c in self.id.rsplit("/", 1)[-1].lower())
        return "-".join(part for part in label.split("-") if part)[:40].rstrip("-")


# id, parameters (billions), layers, attention heads, KV heads, head dim, context length, license, gated
_CATALOG = (
    ("mistralai/Mistral-7B-Instruct-v0.2", 7.24, 32, 32, 8, 128, 32768, "Apache-2.0", True),
    ("meta-llama/Llama-3.1-8B-Instruct", 8.03, 32, 32, 8, 128, 131072, "Llama 3.1 Community", True),
    ("meta-llama/Llama-3.1-70B-Instruct", 70.6, 80, 64, 8, 128, 131072, "Llama 3.1 Community", True),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", 46.7, 32, 32, 8, 128, 32768, "Apache-2.0", True),
    ("Qwen/Qwen2.5-7B-Instruct", 7.62, 28, 28, 4, 128, 32768, "Apache-2.0", False),
)

MODELS: Mapping[str, ModelSpec] = {
    row[0]: ModelSpec(*row, source=f"huggingface.co/{row[0]}/blob/main/config.json") for row in _CATALOG
}
