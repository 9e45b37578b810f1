"""The plugin scan: the installed packages are imported and checked in a child process, never in the kernel's.

(Not the discovery service, ``services/discovery.py``, which tells plugins each other's URLs.)

A plugin's module may do anything when it is imported: exit, hang, crash the interpreter.
So the ``kernel`` command (``serve``, ``plugins``, ``config``) never imports one: it runs
``python -m kernel.plugin_scan`` (``child``), which imports every entry point of
``kernel.plugins``, checks the service graph and the plugins' config schemas, and reports
back as data (``report``). The command (``parent``) watches it step by step: a package whose
code kills or hangs the child is named in a ``LoadFailure`` (handled by the boot-failure
policy like any other) and the scan runs again without it. The command then imports only
the hook providers the report names: trusted kernel extensions (see the README's trust model).

``spawn`` starts the child and imports only the standard library, so the command starts it
before importing anything else: import from the submodules (this package imports nothing).
"""
