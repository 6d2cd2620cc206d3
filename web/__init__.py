"""The HTTP surfaces of the backend, over the protocol layer: the app factory (:mod:`web.app`), the policy API,
the export, ``/metrics`` and the dashboard, and the one parser of the references routes name (:mod:`web.refs`).

Importing this package imports nothing: ``web.refs`` is used by the CLI without loading Flask.
"""
