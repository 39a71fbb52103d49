"""The shadow-operator demo: two recommendation models, a week of production-like traffic, and the story.

`python -m shadow_demo` (what `make demo` runs) trains the models, starts them with the builtin
router and Prometheus on loopback, replays a compressed week, and prints the verdicts.
"""
