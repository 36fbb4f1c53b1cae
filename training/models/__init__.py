"""Student models: where the weights come from, loading them (NF4, adapters), hardware and precision, token counts."""
