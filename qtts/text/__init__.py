"""Text front end: languages, the Qwen2 BPE tokenizer, special ids and ChatML templates."""
