"""Fingerprint transforms: signal-space distances, the K-nearest-RP feature, MMD, histogram intersection."""
