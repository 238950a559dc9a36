"""Model access: the LLM client (cache, retries, usage), endpoint pools and the gate that paces them,
budgets and prices, and the bundled local model with its llama.cpp server."""
