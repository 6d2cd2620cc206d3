"""gunicorn settings, read from the same validated :class:`Settings` as everything else.

gunicorn loads ``./gunicorn.conf.py`` by itself, so ``gunicorn _wsgi:app`` from the project root (as ``make run``
and the container do) gets:

- the settings checked in the master, before any worker forks: a bad value prints one line naming the setting and
  exits with status 2 (a worker failing at import would instead be respawned forever);
- ``PORT``, ``WORKERS``, ``THREADS`` (flags on the command line still win);
- a ``PROMETHEUS_MULTIPROC_DIR`` shared by the workers, emptied at start and cleaned of dead workers' files, so
  ``/metrics`` from any worker reports the whole service;
- JSON (or text, ``LOG_FORMAT``) log lines for gunicorn's own messages; requests are logged by the app itself.
"""

import glob
import os
import shutil
import tempfile

from gunicorn.glogging import Logger

from optimizer.exposure import exposure_warning
from optimizer.logconfig import make_handler
from optimizer.settings import load_settings

_settings = load_settings()

_metrics_dir = _settings.prometheus_multiproc_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_own_metrics_dir = not _metrics_dir
if _own_metrics_dir:
    _metrics_dir = tempfile.mkdtemp(prefix="lsml-metrics-")
os.makedirs(_metrics_dir, exist_ok=True)
# Must be set before any worker imports prometheus_client: the value store is chosen at import time.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.workers
threads = _settings.threads
worker_class = "gthread"
# A /predict batch may run for PREDICT_DEADLINE seconds; gunicorn must not kill the worker before it answers.
timeout = int(_settings.predict_deadline) + 30
graceful_timeout = 30
keepalive = 5
control_socket_disable = True  # nothing here uses gunicornc, and $HOME may be read-only in a container
accesslog = None  # the app writes one structured line per request, with its request id
errorlog = "-"
loglevel = _settings.log_level.lower()


class JsonLogger(Logger):
    """gunicorn's own messages in the app's format (JSON or text, scrubbed).

    A logger class rather than ``logconfig_dict``: any ``logconfig_dict`` makes gunicorn build access-log data for
    every request even with no access log (~6% of a /health request's CPU, profiled with py-spy).
    """

    def setup(self, cfg):
        super().setup(cfg)
        ours = make_handler(_settings.log_format)
        for handler in self.error_log.handlers:
            handler.setFormatter(ours.formatter)
            for log_filter in ours.filters:  # the text format names the request id
                handler.addFilter(log_filter)


logger_class = JsonLogger


def on_starting(server):
    """Counters left by a previous run would be summed into this one's: start from an empty directory. Say once, in
    the master, when the service is open to the network without auth (``make run`` and the containers)."""
    for path in glob.glob(os.path.join(_metrics_dir, "*.db")):
        os.remove(path)
    server.log.info(_settings.llm_limits.line())  # the start-up line says which limits are in force, and why
    for address in server.cfg.bind:
        warning = exposure_warning(_settings, address.rsplit(":", 1)[0])
        if warning:
            server.log.warning(warning)
            break


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
