"""Module tuning: training data from typed modules, LoRA training, export to llama.cpp."""
