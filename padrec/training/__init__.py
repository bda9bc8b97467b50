"""Training: the target recommender and its drafts."""
