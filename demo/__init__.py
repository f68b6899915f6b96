"""`make run`: the product end to end on a local control plane, as a story (see demo/story.py)."""
