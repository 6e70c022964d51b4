"""Experiments that reproduce a paper's comparison at demo scale, built from the public commands' functions."""
