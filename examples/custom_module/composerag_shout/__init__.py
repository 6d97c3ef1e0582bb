"""An example composerag plugin: the ``shout`` module and the ``shout_text`` tool.

Nothing is imported here: composerag imports ``composerag_shout.shout`` when a graph names
``shout`` and ``composerag_shout.tools`` when an agent's allow-list names ``shout_text``
(the entry points in pyproject.toml say so), and each file registers its name on import.
"""
