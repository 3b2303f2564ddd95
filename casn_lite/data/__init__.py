"""Data: the SynthPeople generator, re-ID dataset loaders, transforms and samplers."""
