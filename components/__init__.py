"""KFP components of r1ov: a typed signature and one call into the library each."""
