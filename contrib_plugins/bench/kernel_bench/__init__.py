"""The benchmark plugin and its handlers.

``kernel_bench.handlers`` holds plain Starlette handlers with no kernel import,
so the in-process baseline app serves exactly the same code the plugin does.
``kernel_bench.plugin`` mounts them as plugin ``bench``.
"""
