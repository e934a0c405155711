"""Data sets read into tensors: COVID-CT, COVID-SemiSeg, COVID-CT-MD, phantoms, packs, any slice or series a user hands in."""
