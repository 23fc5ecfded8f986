"""Tokenizer training (byte-level BPE, WordPiece, Unigram), encoding, packing into fixed-length token shards."""
