"""Datasets: encoding presets into the paper's vectors, and (later) the npy_data layout."""
