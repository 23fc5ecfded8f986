"""Byte-level BPE training, encoding, packing into fixed-length token shards."""
