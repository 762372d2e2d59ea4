"""What a scenario is, from its YAML: agents in LangGraph-style super-steps, or a user's own graph.

    schema.py        the scenario schema (steps, agents, prompts, expectations, ``graph:``), loaded and validated
    graph_source.py  a user's app from ``graph: FILE.py:ATTR`` (or ``langgraph.json:NAME``): the file imported
                     pytest-style with the endpoint in its environment, a graph had from what ATTR is

Independent of the proxy and the runners: a scenario is data until a runner takes it.
"""
