"""The scenario-script knowledge base: store, curation, index and search."""
