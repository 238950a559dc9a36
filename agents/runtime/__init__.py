"""The runtime an exported package carries: standard library and langchain-core only, its modules
importing each other relatively, because ``agentopt export`` copies them flat into
``<package>/_agentopt/``. The sandbox (parent and child sides), the prompt, graph and program runtimes,
the code-agent framework, the tools, the wire format and the errors every layer raises."""
