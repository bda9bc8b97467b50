"""Models: the target recommender (a Llama-style decoder) and the drafts that speed it up."""
