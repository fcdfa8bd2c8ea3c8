"""One module per study: Config, PRESETS, run, CLAIMS, PAPER."""
