"""Strategies of the micro-problems (``summarize``, ``pairwise``): see :mod:`.base`.

One module per strategy family, one class per problem in each; they are registered in
``strategies/__init__.py`` under ``<problem>-<family>`` names.
"""
