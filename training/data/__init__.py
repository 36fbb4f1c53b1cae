"""Problems (GSM8K, SVAMP, ASDiv) and their splits, compression levels and prompts, reference solutions
and their renderers."""
