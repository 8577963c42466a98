"""devhost: runs a Functions app (v2 Python model) as ``func start`` would, where Core Tools are missing.

Its wiring comes from ``app.get_functions()`` alone, so it runs exactly the triggers and bindings
that Azure would. Not deployed (see .funcignore).
"""
