"""Data sets read into tensors: COVID-CT, COVID-SemiSeg, phantoms, packs, any slice a user hands in."""
