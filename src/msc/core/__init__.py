"""Bottom layer: what every other layer uses, with no third-party ML library."""
