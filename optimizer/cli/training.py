"""CLI commands for production retraining: ``worker`` and ``policies ...``.

They work on Redis directly (the same objects the HTTP API uses), so they need ``REDIS_URL`` and
``REDIS_NAMESPACE`` like the service, not the web service's address or credentials.

    python -m optimizer worker [--burst] [--queues train,bulk]
    python -m optimizer policies list     --project 12
    python -m optimizer policies show     --project 12 --version pv-...
    python -m optimizer policies diff     --project 12 [--from pv-...] [--to pv-...]
    python -m optimizer policies rollback --project 12 --version pv-... [--pin]
    python -m optimizer policies pin      --project 12 [--version pv-...]
    python -m optimizer policies unpin    --project 12
    python -m optimizer policies train    --project 12
    python -m optimizer policies publish  --project 12 --from out/ [--live] [--expected pv-...]
    python -m optimizer policies job      JOB_ID
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from optimizer.jobs.kinds import QueueRole
from optimizer.jobs.queue import JobQueue
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.learning.loop_config import LoopConfig
from optimizer.learning.publishing import PublishRefused, check_published
from optimizer.project_settings import ProfileGone
from optimizer.runtime.services import Services
from optimizer.runtime.startup import start
from optimizer.serving.policy import Policy, load_prompt
from optimizer.state.history import HistoryError, StaleLive
from web.refs import JobRef, ProjectRef, RefError, VersionRef


def register(subparsers) -> None:
    worker = subparsers.add_parser("worker", help="run an RQ worker for training and bulk pre-annotation jobs")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.add_argument("--name", help="worker name (default: RQ's)")
    worker.add_argument(
        "--queues",
        type=_roles,
        default=(QueueRole.TRAINING, QueueRole.BULK),
        help="queues to listen to, in order: train,bulk (default), train or bulk",
    )
    worker.set_defaults(func=_worker)

    policies = subparsers.add_parser("policies", help="list, diff, roll back and pin a project's policies")
    actions = policies.add_subparsers(dest="action", required=True)

    def action(name: str, help: str, *, version: str | None = None):
        parser = actions.add_parser(name, help=help)
        parser.add_argument("--project", required=True, help="Label Studio project id or uid")
        if version:
            parser.add_argument("--version", required=version == "required", help="policy version (pv-...)")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(func=_policies)
        return parser

    action("list", "every version, newest first")
    action("show", "one version in full", version="required")
    diff = action("diff", "what changed between two versions (default: live vs its parent)")
    diff.add_argument("--from", dest="old", help="older version (default: the newer one's parent)")
    diff.add_argument("--to", dest="new", help="newer version (default: live)")
    rollback = action("rollback", "make an earlier version live again", version="required")
    rollback.add_argument("--pin", action="store_true", help="also pin the project (no auto-promotion)")
    action("pin", "stop automatic promotion (optionally rolling back first)", version="optional")
    action("unpin", "allow automatic promotion again")
    action("train", "queue a training run (coalesced like START_TRAINING)")
    action("settings", "the project's effective LLM settings (its Extra params over the defaults; no secrets)")
    publish = action("publish", "add a policy (optimize's --out folder, or an instruction) to the history")
    source = publish.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from", dest="source", help="a folder `python -m optimizer optimize --out` wrote (policy.json)"
    )
    source.add_argument("--instruction", help="an instruction: text, or @FILE")
    publish.add_argument("--live", action="store_true", help="make it the live policy (a compare-and-set)")
    publish.add_argument("--expected", help="the live version you expect (refused with exit 1 if it changed)")
    job = actions.add_parser("job", help="a job's status, progress and result")
    job.add_argument("job_id")
    job.add_argument("--json", action="store_true", help="print JSON")
    job.set_defaults(func=_policies, project=None)


def _roles(text: str) -> tuple[QueueRole, ...]:
    roles = tuple(QueueRole.of(part.strip()) for part in text.split(","))
    if not roles or None in roles or len(set(roles)) != len(roles):
        raise argparse.ArgumentTypeError(f"{text!r}: give train, bulk or both (train,bulk), each once")
    return roles


def _worker(args: argparse.Namespace) -> int:
    from optimizer.jobs.worker import run_worker

    run_worker(start("worker"), burst=args.burst, name=args.name, roles=args.queues)
    return 0


class _Missing(HistoryError):
    """The job or project the command names does not exist (exit status 2, like an unknown version)."""


def _policies(args: argparse.Namespace) -> int:
    services = Services(start("cli"))
    try:
        result = _run(services, args)
    except (HistoryError, RefError) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1 if isinstance(exc, StaleLive) else 2
    if args.json or not isinstance(result, dict) or "policies" not in result:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    else:
        _print_table(result)
    return 0


def _run(services: Services, args: argparse.Namespace):
    jobs = JobQueue(services)
    if args.action == "job":
        view = jobs.view(JobRef.parse(args.job_id, "JOB_ID").text)
        if view is None:
            raise _Missing(f"no job {args.job_id!r}")
        return view.to_dict()
    project = services.projects.resolve(ProjectRef.parse(args.project, "--project").text)
    if not services.projects.known(project):
        raise _Missing(f"unknown project {args.project!r}")
    history = services.history
    if args.action == "list":
        entries = history.entries(project)
        return {"project": project, "pinned": history.pinned(project), "policies": [e.to_dict() for e in entries]}
    if args.action == "show":
        return history.show(project, args.version)
    if args.action == "diff":
        return history.diff(project, args.old, args.new)
    if args.action == "rollback":
        return history.rollback(project, args.version, pin=args.pin)
    if args.action == "pin":
        return history.pin(project, args.version)
    if args.action == "unpin":
        return history.unpin(project)
    if args.action == "publish":
        return _publish(services, project, args)
    if args.action == "settings":
        try:
            return {"project": project, **services.project_settings(project).public()}
        except ProfileGone as exc:
            raise _Missing(str(exc)) from None
    return jobs.train_now(project, reason="cli")


def _published_policy(args: argparse.Namespace) -> Policy:
    if args.source:
        path = Path(args.source)
        path = path / "policy.json" if path.is_dir() else path
        try:
            return Policy.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _Missing(f"--from {args.source}: no readable policy.json ({exc.__class__.__name__}: {exc})") from None
    return Policy(load_prompt(args.instruction))


def _publish(services: Services, project: str, args: argparse.Namespace) -> dict:
    """The same checks and the same history entry as ``POST /projects/<p>/policies``, with source ``cli``."""
    policy = _published_policy(args)
    config = services.projects.label_config(project)
    if not config:
        raise _Missing(f"project {project} has no label config yet: connect the backend to it in Label Studio")
    try:
        check_published(policy, parse_label_config(config), max_chars=LoopConfig().max_instruction_chars,
                        secrets=services.settings.secret_values())  # fmt: skip
    except PublishRefused as exc:
        raise _Missing(exc.message) from None
    expected = VersionRef.parse(args.expected, "--expected").text if args.expected else None
    return services.history.publish(project, policy, source="cli", live=args.live, expected=expected)


def _print_table(result: dict) -> None:
    pinned = " (pinned)" if result.get("pinned") else ""
    print(f"project {result['project']}{pinned}")
    for entry in result["policies"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.get("at") or 0))
        mark = "*" if entry["live"] else " "
        scores = entry.get("scores") or {}
        score = f"val={scores['val_score']:.3f}" if isinstance(scores.get("val_score"), int | float) else ""
        source = entry.get("source") or ""
        status = entry.get("status") or ("live" if entry["live"] else "")
        print(f"{mark} {entry['version']}  {when}  {source:<8} {status:<9} {score}  job={entry.get('job') or '-'}")
