"""The search index: dense vectors in FAISS, BM25 over jieba tokens, fused per script."""
