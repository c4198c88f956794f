"""Fine-tuning: Q/A derivation, training samples, LoRA / QLoRA / P-Tuning v2, evaluation."""
