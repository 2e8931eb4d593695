"""The feature cache: its schema (manifest), how it is built and how it is read."""
