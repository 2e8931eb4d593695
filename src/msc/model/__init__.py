"""Backbone families, fusion heads, the head spec and the MLflow pyfunc: what a logged model ships."""
